"""One model, one way to cut an image: what ``score``, ``serve`` and ``predict`` on a ``.onnx`` share.

    from swiniqa.serving.runtime import load_scorer, crop_spec, image_crops, crop_scores
    model, cfg = load_scorer("runs/e6/best")            # a checkpoint folder/run folder, or an exported .onnx
    spec = crop_spec(cfg)                                # the checkpoint's preprocessing and test_patches
    scores = crop_scores(model, [image_crops(p, spec) for p in ["a.jpg", "b.png"]])

The pieces are predict's own: images are decoded by :func:`swiniqa.data.images.load_rgb` with the
preprocessing :func:`swiniqa.evaluation.evaluate.preprocessing` picks, cut by
:func:`swiniqa.data.loader.fixed_crops` with the seed :func:`swiniqa.evaluation.inference.content_seed`
derives from the file's bytes, and averaged by :func:`swiniqa.evaluation.inference.mean_scores`. So a
file scored here, by ``score`` on Ray Data, or uploaded to ``serve`` gets predict's score.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence

import numpy as np
import torch

from swiniqa.errors import CheckpointError

ONNX_SUFFIX = ".onnx"
#: ONNX metadata key holding the exporting run's config (preprocessing and crop count travel with the file).
META_CONFIG = "swiniqa.config"


@dataclass(frozen=True)
class CropSpec:
    """How one image becomes model input: decode size and crops (predict's defaults from the config)."""

    patch_size: int
    patches: int
    resize: Optional[tuple[int, int]]
    resize_short: Optional[int]
    seed: int


def crop_spec(cfg, patches: Optional[int] = None, resize: Any = "default",
              resize_short: Optional[int] = None) -> CropSpec:
    """The :class:`CropSpec` predict uses for a checkpoint of config ``cfg``.

    Args:
        cfg: the checkpoint's :class:`~swiniqa.config.TrainConfig`.
        patches: crops per image (default ``cfg.test_patches``).
        resize, resize_short: overrides, as for ``predict`` (``"default"``: the checkpoint's own).

    Raises:
        DataError: ``patches`` < 1 or a resize below the patch size.
    """
    from swiniqa.errors import DataError
    from swiniqa.evaluation.evaluate import preprocessing

    n = int(patches or cfg.test_patches)
    if n < 1:
        raise DataError(f"patches={n}; give --patches >= 1")
    rs, rshort = preprocessing(cfg, "", resize, resize_short)
    return CropSpec(int(cfg.patch_size), n, tuple(rs) if rs else None, rshort, int(cfg.seed))


def image_crops(path: str, spec: CropSpec) -> np.ndarray:
    """``spec.patches`` fixed crops of the image file ``path``: (patches, P, P, 3) uint8.

    Raises:
        DataError: the file cannot be decoded (``.why`` says why).
    """
    from swiniqa.data.images import load_rgb
    from swiniqa.data.loader import fixed_crops
    from swiniqa.evaluation.inference import content_seed

    img = load_rgb(path, spec.resize, spec.resize_short, spec.patch_size)
    return fixed_crops(img, spec.patches, spec.patch_size, content_seed(spec.seed, path))


def bytes_crops(data: bytes, spec: CropSpec, name: str = "upload") -> np.ndarray:
    """:func:`image_crops` of an in-memory file (an upload, an object-store read): the bytes go to a
    temporary file so decoding and the content seed are exactly a file's.

    Raises:
        DataError: the bytes are not a decodable image; the message names ``name``.
    """
    from swiniqa.errors import DataError

    fd, tmp = tempfile.mkstemp(prefix="swiniqa-", suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return image_crops(tmp, spec)
        except DataError as e:
            why = getattr(e, "why", None) or str(e)
            what = name if name.startswith("the ") else f"image {name}"  # "the upload" reads as it is
            err = DataError(f"cannot decode {what}: {why}")
            err.path, err.why = name, why  # type: ignore[attr-defined]
            raise err from None
    finally:
        os.unlink(tmp)


def crop_scores(model: torch.nn.Module, crops: Sequence[np.ndarray], device: Optional[str] = None) -> list[float]:
    """Mean score of each image's crops (one forward pass for all of them), in order.

    Args:
        model: a loaded model (:func:`load_scorer`).
        crops: per image, a (patches, P, P, 3) uint8 array (:func:`image_crops`).
        device: where the forward pass runs (default: CUDA when available); bf16 autocast on CUDA as in predict.
    """
    from swiniqa.data.loader import to_tensor
    from swiniqa.evaluation.inference import default_device, mean_scores

    if not crops:
        return []
    dev = default_device(device)
    owner = np.concatenate([np.full(len(c), i) for i, c in enumerate(crops)])
    batch = (to_tensor(np.ascontiguousarray(np.concatenate(crops))), torch.from_numpy(owner))
    means = mean_scores(model.to(dev), [batch], dev, dev.type == "cuda")
    return [float(means[i]) for i in range(len(crops))]


class OnnxModel(torch.nn.Module):
    """An exported model in onnxruntime behind the torch model's call: uint8 (B, 3, P, P) -> (B,) scores.

    It has no parameters, so ``.to(device)``/``.eval()`` are no-ops and predict's scoring loop runs it as is.
    It pickles as the model file's bytes, so it travels to Ray actors like a torch model.
    """

    def __init__(self, path: str | bytes, threads: Optional[int] = None):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        what = "bytes" if isinstance(path, bytes) else path
        try:
            self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"cannot load ONNX model {what}: {str(e).splitlines()[0][:200]}; "
                                  "export it again with `swiniqa export`") from None
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads
        self._data = path if isinstance(path, bytes) else None
        self.path = None if isinstance(path, bytes) else path

    def __reduce__(self):
        data = self._data
        if data is None:
            with open(self.path, "rb") as f:
                data = f.read()
        return (OnnxModel, (data, self.threads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().to("cpu").contiguous().numpy()
        if a.dtype != np.uint8:
            raise TypeError(f"the exported model takes uint8 patches, got {a.dtype}")
        return torch.from_numpy(self.session.run(None, {self.input_name: a})[0])


def onnx_config(path: str):
    """The :class:`~swiniqa.config.TrainConfig` an exported ``.onnx`` file carries in its metadata.

    Keys this version does not know are dropped (the architecture is in the graph; only preprocessing
    and crop settings are read from it).

    Raises:
        CheckpointError: the file is missing, not ONNX, or was not written by ``swiniqa export``.
    """
    import onnx

    from swiniqa.config import TrainConfig, config_from_dict

    if not os.path.isfile(path):
        raise CheckpointError(f"ONNX model not found: {path}")
    try:
        meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    except Exception as e:  # noqa: BLE001 - protobuf decode errors
        raise CheckpointError(f"{path} is not an ONNX model ({str(e).splitlines()[0][:120]})") from None
    if META_CONFIG not in meta:
        raise CheckpointError(f"{path} has no {META_CONFIG} metadata: it was not written by `swiniqa export`, "
                              "so its preprocessing is unknown; export the checkpoint with `swiniqa export`")
    known = {f.name for f in fields(TrainConfig)}
    data = {k: v for k, v in json.loads(meta[META_CONFIG]).items() if k in known}
    return config_from_dict(data).replace(pretrained=False, pretrained_path=None)


def load_scorer(path: str | os.PathLike, device: str = "cpu", threads: Optional[int] = None):
    """``(model, cfg)`` from a checkpoint folder, a run/experiment folder (its best checkpoint) or an
    exported ``.onnx`` file (run in onnxruntime on the CPU).

    Raises:
        CheckpointError: nothing loadable at ``path``.
    """
    p = os.fspath(path)
    if p.lower().endswith(ONNX_SUFFIX):
        cfg = onnx_config(p)
        return OnnxModel(p, threads=threads), cfg
    from swiniqa.models.loading import load_model

    return load_model(p, device=device)


__all__ = ["CropSpec", "crop_spec", "image_crops", "bytes_crops", "crop_scores", "OnnxModel", "onnx_config",
           "load_scorer", "ONNX_SUFFIX"]
