"""From a checkpoint folder (or foreign weights) to a model: the one place a checkpoint becomes a module.

:func:`load_model` rebuilds the architecture a checkpoint describes (``model.json``, or an older
checkpoint's ``config.json``) and loads its weights; :func:`import_weights` turns a foreign state dict into a
checkpoint folder. The checkpoint format itself (files, manifest, verification, discovery) is
:mod:`swiniqa.checkpoints`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from swiniqa.checkpoints import (CONFIG, FOREIGN_SUFFIXES, METRICS, MODEL, clean_state_dict, read_foreign_state_dict,
                                 read_model_json, read_weights, require_complete, resolve_checkpoint, write_checkpoint)
from swiniqa.config import ModelConfig, TrainConfig
from swiniqa.errors import CheckpointError, SwiniqaError
from swiniqa.models.smart_iqa import build_model

log = logging.getLogger("swiniqa.checkpoint")


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
