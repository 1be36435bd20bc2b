"""Export a checkpoint to ONNX: the whole model, verified in onnxruntime against torch.

    from swiniqa.serving.export import export_onnx
    info = export_onnx("runs/e6/best", "e6.onnx", verify_images=["a.jpg", "b.jpg"])
    info["max_abs_diff"]   # onnxruntime vs torch on the images' crops, e.g. 4e-06

The graph takes what predict feeds the model, a uint8 batch of crops (B, 3, P, P) named ``patches``,
and returns ``scores`` (B,) in the checkpoint's units: ImageNet normalisation, the Swin backbone, the
hyper-network and the batched per-image target network are all inside, and B is dynamic. The run's
config is stored in the file's metadata (``swiniqa.config``), so ``predict``/``score``/``serve`` given
the ``.onnx`` file crop and resize exactly as with the checkpoint.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript); the TorchScript exporter
cannot trace the backbone's dynamic-batch window reshapes. Opset 18 runs on onnxruntime's CPU
provider from 1.14 on.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from typing import Any, Optional, Sequence

import numpy as np
import torch

from swiniqa.errors import CheckpointError, DataError
from swiniqa.storage import check_output, created_parents, write_atomic

log = logging.getLogger("swiniqa.serving.export")

#: Opset of the exported graph: supported by onnxruntime's CPU provider since 1.14 (the installed one is newer).
OPSET = 18
#: Largest |onnxruntime - torch| score difference accepted on the verification crops.
TOLERANCE = 1e-4


class _Exported(torch.nn.Module):
    """The model with the call predict makes: uint8 crops in, scores out (one named input)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.model(patches)


def synthetic_crops(n: int, patch_size: int, seed: int = 0) -> np.ndarray:
    """``n`` image-like uint8 crops (smooth gradients, edges and noise) for verifying without files."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:patch_size, 0:patch_size] / patch_size
    out = np.empty((n, patch_size, patch_size, 3), np.uint8)
    for k in range(n):
        base = np.stack([np.sin(6 * xx * (k + 1) + c) * 0.5 + 0.5 for c in range(3)], -1) * 200
        base[patch_size // 2:, : patch_size // 3] = 30 * k % 255
        out[k] = np.clip(base + rng.normal(0, 8 * (k % 4), base.shape), 0, 255).astype(np.uint8)
    return out


def _torch_scores(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    from swiniqa.data.loader import to_tensor

    with torch.no_grad():
        return model(to_tensor(np.ascontiguousarray(crops))).float().numpy()


def verify_onnx(path: str, model: torch.nn.Module, crops: np.ndarray) -> float:
    """Largest |onnxruntime - torch| score over ``crops``, run as one batch and as batches of 1.

    Two batch sizes check that the batch dimension really is dynamic.
    """
    from swiniqa.data.loader import to_tensor
    from swiniqa.models.loading import OnnxModel

    ort_model = OnnxModel(path)
    ref = _torch_scores(model, crops)
    whole = ort_model(to_tensor(np.ascontiguousarray(crops))).numpy()
    single = np.concatenate([ort_model(to_tensor(np.ascontiguousarray(crops[i:i + 1]))).numpy()
                             for i in range(min(len(crops), 3))])
    return float(max(np.abs(whole - ref).max(), np.abs(single - ref[:len(single)]).max()))


def _verification_crops(spec, verify_images: Optional[Sequence[str]]) -> tuple[np.ndarray, str]:
    from swiniqa.serving.runtime import image_crops

    if not verify_images:
        return synthetic_crops(8, spec.patch_size), "8 synthetic crops"
    crops = [image_crops(p, spec) for p in verify_images]
    return np.concatenate(crops), f"{sum(len(c) for c in crops)} crops of {len(crops)} images"


def _write_graph(model: torch.nn.Module, example: torch.Tensor, out: str, opset: int, config: dict) -> None:
    """torch.export the model with a dynamic batch, store the config as metadata, write ``out`` atomically."""
    import onnx

    from swiniqa.models.loading import META_CONFIG

    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(_Exported(model).eval(), (example,), dynamo=True, opset_version=opset,
                                 input_names=["patches"], output_names=["scores"],
                                 dynamic_shapes={"patches": {0: batch}}, verbose=False)
    graph = prog.model_proto
    graph.doc_string = "swiniqa IQA model: uint8 crops (B, 3, P, P) -> scores (B,)"
    for key, value in ((META_CONFIG, json.dumps(config, sort_keys=True)), ("swiniqa.input", "uint8 NCHW crops"),
                       ("swiniqa.output", "scores in the checkpoint's units, higher = better")):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    write_atomic(str(out), lambda tmp: onnx.save(graph, tmp))


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, opset: int = OPSET,
                verify_images: Optional[Sequence[str]] = None, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Export a checkpoint to an ONNX file and check it in onnxruntime.

    Args:
        checkpoint: a checkpoint folder, or a run/experiment folder (its best checkpoint).
        out: the ``.onnx`` file to write (folders created).
        opset: ONNX opset (default :data:`OPSET`).
        verify_images: image files whose crops (predict's) are scored by both runtimes; default:
            :func:`synthetic_crops`.
        tolerance: largest accepted |onnxruntime - torch| score difference.

    Returns:
        ``{"onnx", "checkpoint", "opset", "patch_size", "bytes", "max_abs_diff", "verified_on", "seconds"}``.

    Raises:
        CheckpointError: the checkpoint cannot be loaded, or the exported graph disagrees with torch.
        DataError: ``out`` is not writable or a verification image cannot be decoded.
    """
    from swiniqa.serving.runtime import crop_spec
    from swiniqa.models.loading import load_model

    out = os.fspath(out)
    if not out.lower().endswith(".onnx"):
        raise DataError(f"--out {out}: the file name must end in .onnx")
    check_output(out, "--out")  # before minutes of export: proven writable, nothing left behind
    t0 = time.monotonic()
    model, cfg = load_model(checkpoint, device="cpu")
    spec = crop_spec(cfg)
    crops, what = _verification_crops(spec, verify_images)
    example = torch.from_numpy(np.ascontiguousarray(synthetic_crops(2, spec.patch_size))).permute(0, 3, 1, 2)
    log.info("exporting %s to %s (opset %d)", checkpoint, out, opset)
    with created_parents(out):  # a failed export removes the file and the folders it created
        _write_graph(model, example, out, opset, cfg.to_dict())
        diff = verify_onnx(out, model, crops)
        if not diff <= tolerance:
            raise CheckpointError(f"exported {out} disagrees with torch by {diff:.3g} (> {tolerance:g}) on {what}; "
                                  "report this with the checkpoint's config")
    return {"onnx": out, "checkpoint": str(checkpoint), "opset": opset, "patch_size": spec.patch_size,
            "bytes": os.path.getsize(out), "max_abs_diff": diff, "verified_on": what,
            "seconds": round(time.monotonic() - t0, 2)}


__all__ = ["export_onnx", "verify_onnx", "synthetic_crops", "OPSET", "TOLERANCE"]
