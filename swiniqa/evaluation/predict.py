"""Score images with a trained checkpoint: files, folders and glob patterns, in batches.

    from swiniqa.evaluation.predict import predict_images
    rows = predict_images("runs/e6", ["photo.jpg", "more/*.png", "folder/"])
    # [{"image": "photo.jpg", "score": 71.3}, {"image": "folder/broken.jpg", "score": None, "error": "..."}, ...]

Each image gets the mean score of ``patches`` fixed distinct crops (the checkpoint's ``test_patches`` by
default; the crops are seeded by the file's bytes, so an image's score depends only on its pixels, not on its name
or on what else is scored), preprocessed as the checkpoint was trained (its ``resize``/``resize_short``; override with
``resize``/``resize_short``). Scores are in the checkpoint's units (KonIQ MOS_zscore 0-100 for the
reference run), higher = better.

Inputs: a file is scored whatever its extension (the decoder identifies formats by content); a folder
is scanned for ``jpg jpeg png bmp tif tiff webp`` files (any case; sub-folders too with
``recursive=True``); a pattern with ``* ? [`` is expanded like the shell would (``**`` recurses) and
keeps the image files and folders it matches. Files that cannot be read do not stop the others: they
come back with ``score=None`` and an ``error``.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from swiniqa.config import TrainConfig
from swiniqa.data.loader import ImageCache
from swiniqa.data.records import Record
from swiniqa.errors import DataError
from swiniqa.evaluation.evaluate import Progress, preprocessing
from swiniqa.evaluation.inference import score_records

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _scan(folder: str, recursive: bool) -> list[str]:
    out = []
    if recursive:
        for dirpath, dirnames, files in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out += [os.path.join(dirpath, f) for f in sorted(files) if is_image_name(f) and not f.startswith(".")]
    else:
        try:
            names = sorted(os.listdir(folder))
        except OSError as e:
            raise DataError(f"cannot list folder {folder}: {e.strerror or e}") from None
        out = [os.path.join(folder, f) for f in names
               if is_image_name(f) and not f.startswith(".") and os.path.isfile(os.path.join(folder, f))]
    return out


def collect_images(inputs: Sequence[str], recursive: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """Expand files, folders and glob patterns into image paths (input order, duplicates dropped).

    Returns ``(paths, errors)``; ``errors`` are ``{"image": input, "why": reason}`` for inputs that do not
    exist, patterns that match nothing and folders without images.
    """
    paths: list[str] = []
    errors: list[dict[str, str]] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.normpath(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            paths.append(p)

    def add_folder(d: str) -> None:
        found = _scan(d, recursive)
        if not found:
            hint = "" if recursive else " (sub-folders are not scanned; add --recursive)"
            errors.append({"image": d, "why": f"no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} files in this folder{hint}"})
        for p in found:
            add(p)

    for raw in inputs:
        item = os.path.expanduser(str(raw))
        if os.path.isdir(item):
            add_folder(item)
        elif os.path.exists(item):
            add(item)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            kept = [m for m in matches if os.path.isdir(m) or is_image_name(m)]
            if not kept:
                errors.append({"image": raw, "why": "no image file or folder matches this pattern"})
            for m in kept:
                add_folder(m) if os.path.isdir(m) else add(m)
        else:
            errors.append({"image": raw, "why": "file not found"})
    return paths, errors


class _TolerantCache(ImageCache):
    """Decodes like :class:`ImageCache` (nothing kept) but records unreadable files instead of raising;
    they get a blank placeholder (one crop) whose score is discarded."""

    def __init__(self, resize, resize_short, patch_size: int, errors: dict[str, str]):
        super().__init__(resize, resize_short, patch_size, budget_bytes=0)
        self.errors = errors
        self.placeholder = np.zeros((patch_size, patch_size, 3), np.uint8)

    def get(self, path: str) -> np.ndarray:
        try:
            return super().get(path)
        except DataError as e:
            self.errors[path] = getattr(e, "why", None) or str(e)
            return self.placeholder


def predict_images(checkpoint: Union[str, os.PathLike, tuple[torch.nn.Module, TrainConfig]], inputs: Sequence[str],
                   batch_size: int = 64, patches: Optional[int] = None, device: Optional[str] = None,
                   progress: bool = True, resize: Any = "default", resize_short: Optional[int] = None,
                   recursive: bool = False, threads: Optional[int] = None) -> list[dict[str, Any]]:
    """Score every image ``inputs`` names.

    Each image's score is the mean over ``patches`` fixed crops seeded by the file's bytes, so the same
    image scores the same under any name and in any company.

    Args:
        checkpoint: a checkpoint folder, a run/experiment folder (its best checkpoint), or an already loaded
            ``(model, cfg)``.
        inputs: files, folders and glob patterns (see :func:`collect_images`).
        batch_size: patches per forward pass.
        patches: crops per image (default the checkpoint's ``test_patches``).
        device: default CUDA when available.
        progress: a progress bar on stderr.
        resize, resize_short: override the checkpoint's preprocessing (``resize=None`` = native size).
        recursive: scan sub-folders of folder inputs.
        threads: decode threads.

    Returns:
        One ``{"image", "score"}`` per image in input order (inputs that name nothing last); unreadable
        files and inputs that name nothing come back as ``{"image", "score": None, "error": reason}``.

    Raises:
        DataError: nothing at all could be found, or bad ``patches``/``resize``.
        CheckpointError: the checkpoint cannot be found or loaded.
    """
    paths, input_errors = collect_images(inputs, recursive=recursive)
    if not paths:
        listed = "; ".join(f"{e['image']}: {e['why']}" for e in input_errors[:5]) or "no inputs given"
        raise DataError(f"predict: no image to score ({listed}); give image files, folders or patterns")
    if isinstance(checkpoint, tuple):
        model, cfg = checkpoint
    else:
        from swiniqa.models.loading import load_scorer  # a checkpoint, or an exported .onnx

        model, cfg = load_scorer(checkpoint)
    n = int(patches or cfg.test_patches)
    if n < 1:
        raise DataError(f"predict: patches={n}; give --patches >= 1")
    rs, rshort = preprocessing(cfg, "", resize, resize_short)
    decode_errors: dict[str, str] = {}
    cache = _TolerantCache(rs, rshort, cfg.patch_size, decode_errors)
    records = [Record(p, 0.0, p) for p in paths]
    bar = Progress("predict", len(records), enabled=progress, bar=True)
    scores = score_records(model, records, patch_size=cfg.patch_size, patches=n, batch_size=batch_size,
                           device=device, seed=cfg.seed, threads=threads, cache=cache, progress=bar,
                           seed_by_content=True)
    out: list[dict[str, Any]] = []
    for p, s in zip(paths, scores):
        if p in decode_errors:
            out.append({"image": p, "score": None, "error": decode_errors[p]})
        else:
            out.append({"image": p, "score": float(s)})
    out += [{"image": e["image"], "score": None, "error": e["why"]} for e in input_errors]
    return out


def split_results(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """``(predictions, errors)``: scored rows ``{image, score}`` and failures ``{image, why}``."""
    ok = [{"image": r["image"], "score": r["score"]} for r in rows if r.get("score") is not None]
    bad = [{"image": r["image"], "why": r.get("error", "")} for r in rows if r.get("score") is None]
    return ok, bad


def format_table(predictions: list[dict[str, Any]]) -> str:
    """``score  path`` lines (scores right-aligned, 4 decimals)."""
    if not predictions:
        return "(no image scored)"
    width = max(len(f"{r['score']:.4f}") for r in predictions)
    lines = [f"{'score':>{width}}  path"]
    lines += [f"{r['score']:>{width}.4f}  {r['image']}" for r in predictions]
    return "\n".join(lines)


__all__ = ["IMAGE_EXTENSIONS", "collect_images", "predict_images", "split_results", "format_table"]
