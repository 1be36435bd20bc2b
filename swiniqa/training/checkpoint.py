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
        raise CheckpointError(f"{p} is a file; give the checkpoint folder (with {WEIGHTS} and {CONFIG}), or "
                              "import foreign weights with `swiniqa import-weights`")
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

    d = resolve_checkpoint(path)
    cfg = read_config(d).replace(pretrained=False, pretrained_path=None)
    model = build_model(cfg)
    sd = read_weights(d)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {d} does not fit the architecture in its config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})")
    return model.to(device).eval(), cfg
