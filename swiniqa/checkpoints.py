"""Checkpoints are data, not code: safetensors weights + JSON config/metrics + a weights-only state file.

A checkpoint folder holds::

    model.safetensors       weights of this epoch (always)
    best_model.safetensors  weights of the best epoch so far, when that is not this epoch
    model.json              what rebuilds the model: the ModelConfig ("model") and the settings predict/eval
                            use ("inference": dataset, resize, resize_short, test_patches, seed)
    config.json             the resolved TrainConfig (for people, resume checks and tools; never needed to load)
    metrics.json            this epoch's metrics (val_srcc, best_val_srcc, ...)
    environment.json        what made it: versions, git commit, CPU/GPU, nodes and workers (swiniqa.provenance)
    dataset.json            the fingerprint of the data it was trained on (label file + image list hashes)
    state.pt                optimizer/scheduler/epoch state, loaded with torch.load(weights_only=True)
    manifest.json           name, size and sha256 of every file above; written last

A checkpoint is complete only when its manifest is there and every file matches it: each file is written
under a temporary name and renamed, and the manifest goes last, so a writer that dies (full disk, killed
worker, a copy cut short) leaves a folder that :func:`verify_checkpoint` names as incomplete and that
resume, ``eval``, ``predict`` and ``pull`` skip or refuse. Folders written before manifests existed
(no ``manifest.json`` and no ``model.json``) are accepted when their files are there and their JSON parses;
:func:`read_model_json` then takes only the architecture keys of their ``config.json``. Turning a checkpoint
into a model (``load_model``, ``import_weights``) is :mod:`swiniqa.models.loading`.

Keys are saved without wrapper prefixes (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``), and a
stray prefix in an older file is stripped on reading.

Nothing is ever unpickled: foreign ``.pt/.pth/.pkl`` files are read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from safetensors.torch import load_file, save_file

from swiniqa.config import ModelConfig, TrainConfig, config_from_dict, save_config, type_hints
from swiniqa.errors import CheckpointError, SwiniqaError
from swiniqa.layout import (BEST_WEIGHTS, CONFIG, DATASET_FINGERPRINT, ENVIRONMENT, MANIFEST,
                            METRICS, MODEL, STATE, WEIGHTS)
from swiniqa.parsing import finite_float

log = logging.getLogger("swiniqa.checkpoint")

#: Every file name a checkpoint folder may hold (the manifest lists the ones written).
PROVENANCE_FILES = (ENVIRONMENT, DATASET_FINGERPRINT)
CHECKPOINT_FILES = (WEIGHTS, BEST_WEIGHTS, MODEL, CONFIG, METRICS, STATE, *PROVENANCE_FILES, MANIFEST)
#: Run-config keys that ``predict``/``eval`` need beside the architecture (saved in model.json).
INFERENCE_KEYS = ("dataset", "resize", "resize_short", "test_patches", "seed")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def clean_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``module.`` (DDP) / ``_orig_mod.`` (``torch.compile``) prefixes wrappers add."""
    out = {}
    for k, v in sd.items():
        while k.startswith(_WRAPPER_PREFIXES):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in clean_state_dict(sd).items()}


def model_json(cfg: TrainConfig) -> dict[str, Any]:
    """The ``model.json`` of a run: its architecture and the settings scoring needs."""
    run = cfg.to_dict()
    return {"format": 1, "model": cfg.model_config().to_dict(), "inference": {k: run[k] for k in INFERENCE_KEYS}}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_checkpoint(directory: str | os.PathLike, model_state: dict[str, torch.Tensor], cfg: TrainConfig,
                     metrics: dict[str, Any], state: Optional[dict[str, Any]] = None,
                     best_state: Optional[dict[str, torch.Tensor]] = None,
                     provenance: Optional[dict[str, dict[str, Any]]] = None) -> Path:
    """Write a checkpoint into ``directory``: every file under a temporary name, renamed into place, then
    ``manifest.json`` (sizes + sha256) last.

    Args:
        directory: the checkpoint folder (created; an older checkpoint there is replaced).
        model_state: this epoch's weights; best_state: the best epoch's, when not this one.
        cfg: the run config; metrics: this epoch's metrics; state: optimizer/scheduler/epoch state.
        provenance: ``{file name: JSON object}`` of what made the weights (``environment.json``,
            ``dataset.json``; :mod:`swiniqa.provenance`), written and listed in the manifest like the rest.
    Returns:
        The folder.
    Raises:
        OSError: the disk is full or not writable; the folder is then left without a manifest
        (incomplete), and removed when this call created it.
    """
    d = Path(directory)
    created = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    (d / MANIFEST).unlink(missing_ok=True)  # from here until the end the folder is incomplete
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=d))
    try:
        save_file(_contiguous(model_state), str(tmp / WEIGHTS))
        if best_state is not None:
            save_file(_contiguous(best_state), str(tmp / BEST_WEIGHTS))
        (tmp / MODEL).write_text(json.dumps(model_json(cfg), indent=2, sort_keys=True) + "\n")
        save_config(cfg, tmp / CONFIG)
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
        if state is not None:
            torch.save(state, tmp / STATE)
        for name, obj in (provenance or {}).items():
            if name not in PROVENANCE_FILES:
                raise ValueError(f"not a provenance file name: {name}")
            (tmp / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        files = {}
        for name in CHECKPOINT_FILES:
            if (tmp / name).exists():
                _fsync(tmp / name)
                files[name] = {"size": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
        for name in (BEST_WEIGHTS, STATE):  # stale files of an older checkpoint in the same folder
            if name not in files:
                (d / name).unlink(missing_ok=True)
        for name in files:
            os.replace(tmp / name, d / name)
        (tmp / MANIFEST).write_text(json.dumps({"format": 1, "files": files}, indent=2, sort_keys=True) + "\n")
        _fsync(tmp / MANIFEST)
        os.replace(tmp / MANIFEST, d / MANIFEST)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(d, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return d


def read_manifest(d: str | os.PathLike) -> Optional[dict[str, dict[str, Any]]]:
    """``{file name: {"size", "sha256"}}`` from a checkpoint's manifest; None when it has none.

    Raises:
        CheckpointError: the manifest exists but cannot be read or is malformed.
    """
    p = Path(d) / MANIFEST
    if not p.is_file():
        return None
    try:
        files = json.loads(p.read_text())["files"]
        if not isinstance(files, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("size"), int) and isinstance(v.get("sha256"), str)
                for v in files.values()):
            raise ValueError("malformed file list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"cannot read {p}: {e}") from None
    return files


def manifest_problems(manifest: dict[str, dict[str, Any]], sizes: dict[str, int],
                      hashes: Optional[dict[str, str]] = None) -> list[str]:
    """Compare a manifest with the files found (``sizes``, and ``hashes`` when computed).

    Also what ``pull`` uses on a remote listing, where hashing every file first would mean downloading it.
    Returns one line per problem (empty when everything matches).
    """
    problems = []
    for name, want in sorted(manifest.items()):
        if name not in sizes:
            problems.append(f"{name} is missing")
        elif sizes[name] != want["size"]:
            problems.append(f"{name} has {sizes[name]} bytes, the manifest says {want['size']}")
        elif hashes is not None and name in hashes and hashes[name] != want["sha256"]:
            problems.append(f"{name} differs from the manifest (sha256)")
    for name in (WEIGHTS, CONFIG, METRICS):
        if name not in manifest:
            problems.append(f"the manifest lists no {name}")
    return problems


def _legacy_problems(d: Path) -> list[str]:
    """Checks for a folder written before manifests: required files there, JSON files parse. A folder
    with ``model.json`` was written by a version with manifests, so without one it is unfinished."""
    if (d / MODEL).exists():
        return [f"no {MANIFEST}: the checkpoint was not finished writing"]
    problems = [f"{n} is missing" for n in (WEIGHTS, CONFIG, METRICS) if not (d / n).is_file()]
    for name in (CONFIG, METRICS):
        if (d / name).is_file():
            try:
                json.loads((d / name).read_text())
            except (OSError, ValueError):
                problems.append(f"{name} is empty or not valid JSON")
    return problems


def verify_checkpoint(path: str | os.PathLike, hashes: bool = True) -> list[str]:
    """What is wrong with a checkpoint folder: an empty list when it is complete.

    A folder with ``manifest.json`` must hold every file it lists, at the listed size and (with
    ``hashes``) sha256. A folder without one is complete only if it was written before manifests
    existed (no file of this version's format missing) and its files are there and parse.

    Args:
        path: the checkpoint folder.
        hashes: also compare sha256 (reads every file); False checks presence and sizes only.
    Returns:
        One line per problem, e.g. ``"model.safetensors has 1024 bytes, the manifest says 4783720"``.
    """
    d = Path(path)
    if not d.is_dir():
        return [f"{d} is not a folder"]
    try:
        manifest = read_manifest(d)
    except CheckpointError as e:
        return [str(e)]
    if manifest is None:
        problems = _legacy_problems(d)
        if problems and not (d / MODEL).exists() and any((d / n).exists() for n in CHECKPOINT_FILES):
            problems.append(f"no {MANIFEST}: the checkpoint was not finished writing")
        return problems
    sizes = {n: (d / n).stat().st_size for n in manifest if (d / n).is_file()}
    digests = {n: sha256_file(d / n) for n in sizes if sizes[n] == manifest[n]["size"]} if hashes else None
    return manifest_problems(manifest, sizes, digests)


def is_complete(path: str | os.PathLike, hashes: bool = False) -> bool:
    """True when :func:`verify_checkpoint` finds nothing wrong (by default sizes only: cheap enough to
    run on every folder of a run)."""
    return not verify_checkpoint(path, hashes=hashes)


def read_metrics(d: str | os.PathLike) -> dict[str, Any]:
    p = Path(d) / METRICS
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {p}: {e}") from None


def _read_json(p: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {what} {p}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {p} does not hold a JSON object")
    return data


def read_config(d: str | os.PathLike) -> TrainConfig:
    """The run config saved with a checkpoint (``config.json``).

    Keys this version does not know (renamed or dropped since) are ignored with a logged note.

    Raises:
        CheckpointError: the file is missing, does not parse, or a known key holds an invalid value.
    """
    p = Path(d) / CONFIG
    data = _read_json(p, "checkpoint config")
    known = type_hints()
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        log.warning("%s: ignoring key(s) this version does not know: %s", p, ", ".join(unknown))
    try:
        return config_from_dict({k: v for k, v in data.items() if k in known})
    except SwiniqaError as e:
        raise CheckpointError(f"checkpoint config {p} is not valid for this version: {e}") from None


def read_model_json(d: str | os.PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """``(architecture, inference settings)`` of a checkpoint: from ``model.json``, or for a checkpoint
    written before it existed, from the architecture (and inference) keys of its ``config.json``.

    Raises:
        CheckpointError: neither file is readable, or an architecture value is invalid.
    """
    d = Path(d)
    if (d / MODEL).is_file():
        data = _read_json(d / MODEL, "model description")
        arch, inference, source = data.get("model"), data.get("inference") or {}, d / MODEL
        if not isinstance(arch, dict) or not isinstance(inference, dict):
            raise CheckpointError(f"model description {source} has no 'model' object; the file is damaged")
        note = logging.WARNING
    elif (d / CONFIG).is_file():
        arch = inference = _read_json(d / CONFIG, "checkpoint config")
        source, note = d / CONFIG, logging.INFO
    else:
        raise CheckpointError(f"{d} has neither {MODEL} nor {CONFIG}, so its architecture is unknown")
    try:
        mcfg = ModelConfig.from_dict(arch, source=str(source), note_level=note)
    except SwiniqaError as e:
        raise CheckpointError(f"model description {source} is not valid for this version: {e}") from None
    return mcfg, {k: inference[k] for k in INFERENCE_KEYS if k in inference}


def read_model_config(d: str | os.PathLike) -> ModelConfig:
    """The architecture a checkpoint was written with (see :func:`read_model_json`)."""
    return read_model_json(d)[0]


def read_state(d: str | os.PathLike) -> Optional[dict[str, Any]]:
    p = Path(d) / STATE
    if not p.is_file():
        return None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"refusing to load {p}: not a plain weights-only state file ({str(e).splitlines()[0]})") from None


def read_weights(d: str | os.PathLike, best: bool = False) -> dict[str, torch.Tensor]:
    """This epoch's weights (or, with ``best``, the best epoch's when saved apart), wrapper prefixes stripped.

    Raises:
        CheckpointError: the file is missing or not a safetensors file.
    """
    d = Path(d)
    p = d / BEST_WEIGHTS if best and (d / BEST_WEIGHTS).is_file() else d / WEIGHTS
    try:
        return clean_state_dict(load_file(str(p)))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read weights {p}: {str(e).splitlines()[0]}") from None


def check_resume(d: str | os.PathLike, cfg: TrainConfig) -> None:
    """Refuse to resume from checkpoint ``d`` unless it is complete and of the model ``cfg`` asks for.

    Reusing ``--name`` resumes that run; with another architecture the weights cannot fit, so say that
    instead of a tensor size mismatch.

    Raises:
        CheckpointError: naming the checkpoint and, for another model, the keys that differ.
    """
    require_complete(d)
    saved = read_model_config(d)
    diffs = cfg.model_config().differences(saved)
    if diffs:
        raise CheckpointError(
            f"this run's folder already holds a different model (checkpoint {d}; asked now vs saved: "
            f"{', '.join(diffs)}); reusing a name resumes that run, so give a new --name (for `tune --resume`, a "
            "new experiment name) or the same model settings")


def _looks_like_checkpoint(d: Path) -> bool:
    """A folder holding any checkpoint file but the provenance ones (a run folder has those too)."""
    return any((d / n).exists() for n in CHECKPOINT_FILES if n not in PROVENANCE_FILES)


def checkpoint_folders(files: Iterable[str]) -> list[str]:
    """The checkpoint folders of a tree, from the relative paths of its files (any storage: a local walk or an
    object-store listing): each folder holding a checkpoint file other than the provenance ones (a run folder
    has those too), hidden entries skipped, the top-most only (never one inside another); ``""`` is the root.

    This is the one scanner: :func:`scan_checkpoints` (local folders) and ``swiniqa pull`` (any storage) use it.
    """
    marks = {n for n in CHECKPOINT_FILES if n not in PROVENANCE_FILES}
    found = set()
    for rel in files:
        parts = str(rel).strip("/").split("/")
        if parts[-1] in marks and not any(p.startswith(".") for p in parts):
            found.add("/".join(parts[:-1]))
    out: list[str] = []
    for d in sorted(found):
        if not any(c == "" or d.startswith(c + "/") for c in out):
            out.append(d)
    return out


def scan_checkpoints(root: str | os.PathLike) -> tuple[list[Path], list[tuple[Path, list[str]]]]:
    """Checkpoint folders at or below ``root`` (:func:`checkpoint_folders`: hidden temp folders skipped, not
    descending into one).

    Returns:
        ``(complete, incomplete)``: sorted complete folders, and ``(folder, problems)`` for the others.
    """
    root = Path(root)
    files = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [n for n in dirnames if not n.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        files += [n if rel == "." else f"{rel}/{n}" for n in names]
    complete: list[Path] = []
    incomplete: list[tuple[Path, list[str]]] = []
    for rel in checkpoint_folders(files):
        p = root / rel if rel else root
        problems = verify_checkpoint(p, hashes=False)
        if problems:
            incomplete.append((p, problems))
        else:
            complete.append(p)
    return sorted(complete), incomplete


def find_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Every complete checkpoint folder at or below ``root``; incomplete ones are skipped with a logged
    warning naming them."""
    complete, incomplete = scan_checkpoints(root)
    for p, problems in incomplete:
        log.warning("skipping incomplete checkpoint %s (%s)", p, "; ".join(problems))
    return complete


def require_complete(d: str | os.PathLike, hashes: bool = True) -> Path:
    """``d`` when it is a complete checkpoint folder (sha256 checked by default).

    Raises:
        CheckpointError: naming the folder and what is wrong with it.
    """
    problems = verify_checkpoint(d, hashes=hashes)
    if problems:
        raise CheckpointError(f"checkpoint {d} is incomplete or damaged ({'; '.join(problems[:3])}); it was not "
                              "finished writing or was cut short: use another checkpoint of the run, or copy it again")
    return Path(d)


def resolve_checkpoint(path: str | os.PathLike, metric: str = "val_srcc") -> Path:
    """A checkpoint folder, or the best (by ``metric``, from each epoch's metrics) complete one under a
    run folder.

    The selected folder's *own-epoch* weights are what ``model.safetensors`` holds; we pick the folder
    whose epoch was the best, so its weights are the best weights.

    Raises:
        CheckpointError: nothing there, ``path`` is an incomplete checkpoint, or no complete one is below it.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}; give a checkpoint folder or a run/experiment folder")
    if p.is_file():
        if (p.parent / CONFIG).is_file() and p.name in (WEIGHTS, BEST_WEIGHTS, METRICS, CONFIG):
            return require_complete(p.parent, hashes=False)
        raise CheckpointError(f"{p} is a file; give the checkpoint folder (with {WEIGHTS} and {CONFIG}), or "
                              "convert foreign weights with `swiniqa import-weights FILE --preset paper --out DIR`")
    if _looks_like_checkpoint(p):
        return require_complete(p, hashes=False)
    cands, incomplete = scan_checkpoints(p)
    for c, problems in incomplete:
        log.warning("skipping incomplete checkpoint %s (%s)", c, "; ".join(problems))
    if not cands:
        skipped = f"; skipped incomplete {', '.join(str(c) for c, _ in incomplete[:3])}" if incomplete else ""
        raise CheckpointError(f"no complete checkpoint under {p} (expected a folder with {WEIGHTS}, {CONFIG}, "
                              f"{METRICS}){skipped}")

    def score(c: Path) -> float:
        v = finite_float(read_metrics(c).get(metric))
        return float("-inf") if v is None else v

    return max(cands, key=score)


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
    return clean_state_dict(obj)


