"""From a checkpoint folder, foreign weights or an exported ``.onnx`` to a model: the one place a file becomes one.

:func:`load_model` rebuilds the architecture a checkpoint describes (``model.json``, or an older
checkpoint's ``config.json``) and loads its weights; :func:`import_weights` turns a foreign state dict into a
checkpoint folder; :func:`load_scorer` is what ``predict``, ``score`` and ``serve`` load: a checkpoint, or an
exported ``.onnx`` run in onnxruntime behind the torch model's call (:class:`OnnxModel`). The checkpoint format itself (files, manifest, verification, discovery) is
:mod:`swiniqa.checkpoints`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from swiniqa.checkpoints import (CONFIG, FOREIGN_SUFFIXES, METRICS, MODEL, clean_state_dict, read_foreign_state_dict,
                                 read_model_json, read_weights, require_complete, resolve_checkpoint, write_checkpoint)
from swiniqa.config import ModelConfig, TrainConfig, config_from_dict
from swiniqa.errors import CheckpointError, SwiniqaError
from swiniqa.models.smart_iqa import build_model

log = logging.getLogger("swiniqa.checkpoint")

ONNX_SUFFIX = ".onnx"
#: ONNX metadata key holding the exporting run's config (preprocessing and crop count travel with the file).
META_CONFIG = "swiniqa.config"


def scoring_config(mcfg: ModelConfig, inference: dict[str, Any], source: Path) -> TrainConfig:
    """A TrainConfig for the scoring code: the architecture and inference settings of a checkpoint; its
    training keys are defaults (the run's own are in ``config.json``, see :func:`read_config`)."""
    first = {**mcfg.to_dict(), "pretrained": False, "pretrained_path": None,
             "resize": inference.get("resize"), "resize_short": inference.get("resize_short")}
    try:
        cfg = TrainConfig().replace(**first)
    except SwiniqaError as e:
        raise CheckpointError(f"{source}: resize settings not valid for this version: {e}") from None
    for k in ("dataset", "test_patches", "seed"):
        if k in inference:
            try:
                cfg = cfg.replace(**{k: inference[k]})
            except SwiniqaError as e:
                log.warning("%s: ignoring %s (%s)", source, k, e)
    return cfg


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the model a checkpoint describes and load its weights (no flags need repeating).

    The architecture comes from ``model.json`` alone (an older checkpoint's ``config.json`` otherwise, of
    which only the architecture keys are read), so later changes to training keys never break loading.

    Args:
        path: a checkpoint folder, a run/experiment folder (its best complete checkpoint), or a weights file
            with ``model.json``/``config.json`` beside it.
        device: where to put the model.
    Returns:
        ``(model in eval mode, cfg)``; ``cfg`` holds the architecture and the inference settings saved with
        it (``dataset``, ``resize``, ``resize_short``, ``test_patches``, ``seed``); its other keys are
        defaults (use :func:`read_config` for the run's full config).
    Raises:
        CheckpointError: nothing there, an incomplete or damaged checkpoint, unsafe or mismatched weights.
    """
    p = Path(path)
    if p.is_file() and (p.suffix in FOREIGN_SUFFIXES or (p.suffix == ".safetensors" and not (p.parent / METRICS).is_file())):
        sd = clean_state_dict(read_foreign_state_dict(p))  # weights-only: a code-running pickle is refused here
        if not ((p.parent / MODEL).is_file() or (p.parent / CONFIG).is_file()):
            raise CheckpointError(f"{p} has no {MODEL} or {CONFIG} beside it, so its architecture is unknown; convert "
                                  f"it with `swiniqa import-weights {p} --preset paper --out DIR` (plus --model-size/--set)")
        d = p.parent
    else:
        d = require_complete(resolve_checkpoint(path))
        sd = read_weights(d)
    mcfg, inference = read_model_json(d)
    cfg = scoring_config(mcfg, inference, d)
    model = build_model(mcfg, pretrained=False)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        raise CheckpointError(
            f"checkpoint {d} does not fit the architecture in its config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(shape)} mis-shaped keys, e.g. {(missing + unexpected + shape)[0]})")
    model.load_state_dict(sd)
    return model.to(device).eval(), cfg


def import_weights(path: str | os.PathLike, cfg: TrainConfig, out: str | os.PathLike) -> Path:
    """Convert a foreign state dict (e.g. the reference study's ``.pth``) into a checkpoint folder.

    Keys must match this package's module names (``backbone.net.*``, ``head.*``); when they do not,
    the error names the first unmatched keys rather than guessing a mapping.
    """
    sd = read_foreign_state_dict(path)
    model = build_model(cfg.replace(pretrained=False, pretrained_path=None))
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.startswith("score_")]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        raise CheckpointError(
            f"{path} does not match the {cfg.backbone}/{cfg.model_size} architecture (multiscale={cfg.multiscale}, "
            f"attention={cfg.attention}): {len(missing)} missing, {len(unexpected)} unexpected, {len(shape)} "
            f"mis-shaped keys (e.g. {(missing + unexpected + shape)[:3]}); pick the matching --model-size/--set "
            "flags, or convert its key names first")
    model.load_state_dict(sd, strict=False)
    return write_checkpoint(out, model.state_dict(), cfg, {"imported_from": str(path), "epoch": 0})


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
    return load_model(p, device=device)
