"""Checkpoints are data, not code: safetensors weights + JSON config/metrics + a weights-only state file.

A checkpoint folder holds::

    model.safetensors       weights of this epoch (always)
    best_model.safetensors  weights of the best epoch so far, when that is not this epoch
    config.json             the resolved TrainConfig
    metrics.json            this epoch's metrics (val_srcc, best_val_srcc, ...)
    state.pt                optimizer/scheduler/epoch state, loaded with torch.load(weights_only=True)

Nothing is ever unpickled: foreign ``.pt/.pth/.pkl`` files are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from swiniqa.config import TrainConfig, config_from_dict, save_config
from swiniqa.errors import CheckpointError, SwiniqaError

WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "best_model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
STATE = "state.pt"


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def write_checkpoint(directory: str | os.PathLike, model_state: dict[str, torch.Tensor], cfg: TrainConfig,
                     metrics: dict[str, Any], state: Optional[dict[str, Any]] = None,
                     best_state: Optional[dict[str, torch.Tensor]] = None) -> Path:
    """Write a checkpoint into ``directory`` (created; files written then renamed into place)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=d))
    try:
        save_file(_contiguous(model_state), str(tmp / WEIGHTS))
        if best_state is not None:
            save_file(_contiguous(best_state), str(tmp / BEST_WEIGHTS))
        save_config(cfg, tmp / CONFIG)
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
        if state is not None:
            torch.save(state, tmp / STATE)
        # metrics.json goes last: a folder without it is incomplete and never picked.
        for name in (WEIGHTS, BEST_WEIGHTS, CONFIG, STATE, METRICS):
            if (tmp / name).exists():
                os.replace(tmp / name, d / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d


def is_checkpoint(d: Path) -> bool:
    return (d / WEIGHTS).is_file() and (d / CONFIG).is_file() and (d / METRICS).is_file()


def read_metrics(d: str | os.PathLike) -> dict[str, Any]:
    p = Path(d) / METRICS
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {p}: {e}") from None


def read_config(d: str | os.PathLike) -> TrainConfig:
    p = Path(d) / CONFIG
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint config {p}: {e}") from None
    try:
        return config_from_dict(data)
    except SwiniqaError as e:
        raise CheckpointError(f"checkpoint config {p} is not valid for this version: {e}") from None


def read_state(d: str | os.PathLike) -> Optional[dict[str, Any]]:
    p = Path(d) / STATE
    if not p.is_file():
        return None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"refusing to load {p}: not a plain weights-only state file ({str(e).splitlines()[0]})") from None


def read_weights(d: str | os.PathLike, best: bool = False) -> dict[str, torch.Tensor]:
    d = Path(d)
    p = d / BEST_WEIGHTS if best and (d / BEST_WEIGHTS).is_file() else d / WEIGHTS
    try:
        return load_file(str(p))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read weights {p}: {str(e).splitlines()[0]}") from None


def find_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Every complete checkpoint folder at or below ``root`` (incomplete/hidden temp folders skipped)."""
    r = Path(root)
    if is_checkpoint(r):
        return [r]
    found = []
    for dirpath, dirnames, _ in os.walk(r):
        dirnames[:] = [n for n in dirnames if not n.startswith(".")]
        p = Path(dirpath)
        if is_checkpoint(p):
            found.append(p)
            dirnames[:] = []
    return sorted(found)


def resolve_checkpoint(path: str | os.PathLike, metric: str = "val_srcc") -> Path:
    """A checkpoint folder, or the best (by ``metric``, from each epoch's metrics) one under a run folder.

    The selected folder's *own-epoch* weights are what ``model.safetensors`` holds; we pick the folder
    whose epoch was the best, so its weights are the best weights.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}; give a checkpoint folder or a run/experiment folder")
    if p.is_file():
        if (p.parent / CONFIG).is_file() and p.name in (WEIGHTS, BEST_WEIGHTS, METRICS, CONFIG):
            return p.parent
        raise CheckpointError(f"{p} is a file; give the checkpoint folder (with {WEIGHTS} and {CONFIG}), or "
                              "convert foreign weights with `swiniqa import-weights FILE --preset paper --out DIR`")
    cands = find_checkpoints(p)
    if not cands:
        raise CheckpointError(f"no checkpoint under {p} (expected a folder with {WEIGHTS}, {CONFIG}, {METRICS})")

    def score(c: Path) -> float:
        v = read_metrics(c).get(metric)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return float("-inf")
        return v if v == v else float("-inf")

    return max(cands, key=score)


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the model a checkpoint describes and load its weights (no flags need repeating)."""
    from swiniqa.models import build_model

    p = Path(path)
    if p.is_file() and (p.suffix in FOREIGN_SUFFIXES or (p.suffix == ".safetensors" and not (p.parent / METRICS).is_file())):
        sd = read_foreign_state_dict(p)  # weights-only: a code-running pickle is refused here
        if not (p.parent / CONFIG).is_file():
            raise CheckpointError(f"{p} has no {CONFIG} beside it, so its architecture is unknown; convert it with "
                                  f"`swiniqa import-weights {p} --preset paper --out DIR` (plus --model-size/--set)")
        d = p.parent
    else:
        d = resolve_checkpoint(path)
        sd = read_weights(d)
    cfg = read_config(d).replace(pretrained=False, pretrained_path=None)
    model = build_model(cfg)
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


FOREIGN_SUFFIXES = (".pt", ".pth", ".pkl", ".bin", ".ckpt")


def read_foreign_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a pickle-format ``.pt/.pth/.pkl`` file, loaded with
    ``torch.load(weights_only=True)``: tensors and plain containers only, so a pickle that would run
    code is refused instead of executed."""
    import pickle

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        return load_file(str(p))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"refusing to load {p}: it is not a plain tensor state dict (weights-only load "
                              f"failed: {first[:160]}); nothing in it was executed") from None
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} holds no state dict of tensors; expected a mapping name -> tensor")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def import_weights(path: str | os.PathLike, cfg: TrainConfig, out: str | os.PathLike) -> Path:
    """Convert a foreign state dict (e.g. the reference study's ``.pth``) into a checkpoint folder.

    Keys must match this package's module names (``backbone.net.*``, ``head.*``); when they do not,
    the error names the first unmatched keys rather than guessing a mapping.
    """
    from swiniqa.models import build_model

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
