"""Evaluate a trained model on every image of a dataset: patch-averaged scores, all metrics, a CSV.

    from swiniqa.models.loading import load_model
    from swiniqa.data import read_dataset
    from swiniqa.evaluation.evaluate import evaluate_dataset, write_predictions

    model, cfg = load_model("runs/e6")                      # a checkpoint, or the best one under a run folder
    info = read_dataset("spaq", "/data/SPAQ")
    metrics, preds = evaluate_dataset(model, cfg, info)      # metrics["srcc"], preds = [(image, mos, pred), ...]
    write_predictions(preds, "spaq_predictions.csv")

Protocol (the cross-dataset protocol of shared DATASETS.md): every image of the dataset, ``N`` distinct
seeded test crops per image (``cfg.test_patches`` unless ``patches`` is given; the same crops every run),
several images' crops per forward pass, the crops' scores averaged per image. Metrics are those of
:func:`swiniqa.evaluation.metrics.all_metrics`: SRCC, PLCC (raw and after the 4-parameter logistic fit),
KRCC, RMSE (raw RMSE is in the checkpoint's units against the dataset's, so only ``rmse_fit`` is
comparable across datasets).

Scores are compared in the reader's orientation (higher = better: a lower-is-better set's ``Record.score``
is negated), so a good model has a positive SRCC on every dataset. The predictions CSV writes the label
file's original value in ``mos``; for a lower-is-better set, SRCC recomputed from that CSV has the
opposite sign.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch

from swiniqa.config import TrainConfig
from swiniqa.data.images import image_error
from swiniqa.data.records import DatasetInfo, Record, eval_preprocessing_table
from swiniqa.errors import DataError
from swiniqa.evaluation.inference import default_device, default_threads, score_records
from swiniqa.evaluation.metrics import all_metrics

#: Per-dataset preprocessing for evaluation, overriding the checkpoint's ``resize``/``resize_short``.
#: Datasets not listed are preprocessed exactly as the checkpoint was trained (its config's ``resize`` /
#: ``resize_short``; for the reference KonIQ run a (height, width) = (384, 512) resize).
#:
#: * ``spaq``: SPAQ holds full-resolution smartphone photos (several megapixels, landscape *and*
#:   portrait). A fixed (384, 512) resize would squash every portrait photo to landscape, and the
#:   native size would make a 224 crop a tiny texture patch unlike anything the KonIQ model saw
#:   (KonIQ images are 1024x768, trained at 512x384). Scaling the shorter side to 512 keeps the aspect
#:   ratio and is the SPAQ authors' own preprocessing (``Resize(512)`` in their demo). Override with
#:   ``resize_short=`` / ``--resize-short``.
#: * KADID-10k (512x384 PNGs) is unchanged by the KonIQ resize; LIVE-C (500x500) and AGIQA-3K (mixed,
#:   mostly square generator outputs) get the training resize so the model sees images at the
#:   resolution it was trained on, as the reference study did (it resized every cross set like KonIQ).
#:
#: Every image whose shorter side ends below the patch size is scaled up to it (``min_side``).
#: The table is read from each dataset's spec (``register_reader(..., eval_preprocessing=...)``).
EVAL_PREPROCESSING: dict[str, dict[str, Any]] = eval_preprocessing_table()


def preprocessing(cfg: TrainConfig, dataset: str, resize: Any = "default",
                  resize_short: Optional[int] = None) -> tuple[Optional[tuple[int, int]], Optional[int]]:
    """``(resize, resize_short)`` used to evaluate ``dataset`` with a checkpoint of config ``cfg``.

    Order: explicit arguments (``resize_short`` wins over ``resize``; ``resize=None`` means native
    size), then :data:`EVAL_PREPROCESSING`, then the checkpoint's config.
    """
    if resize_short:
        if resize_short < cfg.patch_size:
            raise DataError(f"resize_short={resize_short} is below the model's patch size {cfg.patch_size}; "
                            f"give --resize-short >= {cfg.patch_size}")
        return None, int(resize_short)
    if resize != "default":
        if resize is not None:
            resize = tuple(int(v) for v in resize)
            if len(resize) != 2 or min(resize) < cfg.patch_size:
                raise DataError(f"resize={resize} must be height,width, both >= the patch size {cfg.patch_size}")
        return resize, None
    d = EVAL_PREPROCESSING.get(dataset)
    if d is not None:
        return d.get("resize"), d.get("resize_short")
    return (tuple(cfg.resize) if cfg.resize else None), cfg.resize_short


class Progress:
    """One updating stderr line, ``<label>: 123/2224 images`` (throttled; the last state always shown)."""

    def __init__(self, label: str, total: int, enabled: bool = True, bar: bool = False):
        self.label, self.total, self.enabled, self.bar = label, total, enabled, bar
        self.done, self.last, self.t0 = 0, 0.0, time.monotonic()
        self.shown = False

    def _line(self) -> str:
        text = f"{self.label}: {self.done}/{self.total} images"
        if self.bar and self.total:
            w = 24
            fill = int(w * self.done / self.total)
            rate = self.done / max(time.monotonic() - self.t0, 1e-9)
            text = f"{self.label} [{'#' * fill}{'.' * (w - fill)}] {self.done}/{self.total} images, {rate:.1f}/s"
        return text

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and self.done < self.total and now - self.last >= 0.2:
            self.last = now
            self.shown = True
            sys.stderr.write("\r" + self._line())
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + self._line() + "\n")
            sys.stderr.flush()


def _display_path(path: str, root: str) -> str:
    """``path`` relative to the dataset root when it lies below it (as in the label file), else as is."""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel.replace(os.sep, "/")


def _precheck_files(records: Sequence[Record], dataset: str) -> None:
    """Cheap pass (stat only) before the long run: every image exists and is non-empty."""
    bad = []
    for r in records:
        try:
            if os.path.getsize(r.path) == 0:
                bad.append((r.path, "file is empty (0 bytes)"))
        except OSError:
            bad.append((r.path, "file not found"))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        path, why = bad[0]
        raise DataError(f"eval {dataset}: image {path}: {why}{more}; fix the data root, or run "
                        f"`swiniqa data check --dataset {dataset} --root ROOT` for the full list")


def evaluate_dataset(model: torch.nn.Module, cfg: TrainConfig, info: DatasetInfo, patches: Optional[int] = None,
                     batch_size: int = 64, device: Optional[str | torch.device] = None, resize: Any = "default",
                     resize_short: Optional[int] = None, progress: bool = True, threads: Optional[int] = None,
                     check: bool = False) -> tuple[dict[str, Any], list[tuple[str, float, float]]]:
    """Score every image of ``info`` and compare with its labels.

    Args:
        model: the IQA model (e.g. from :func:`swiniqa.models.loading.load_model`).
        cfg: its config (patch size, test patches, seed, preprocessing).
        info: the dataset (:func:`swiniqa.data.records.read_dataset`).
        patches: crops per image (default ``cfg.test_patches``).
        batch_size: patches per forward pass.
        device: default CUDA when available.
        resize, resize_short: override :func:`preprocessing`'s per-dataset defaults (``resize=None`` =
            native size).
        progress: one updating stderr line.
        threads: decode threads.
        check: decode every image first with :func:`swiniqa.data.check.check_dataset` (remembered in its
            cache) so a broken file fails in seconds.

    Returns:
        ``(metrics, predictions)``: ``metrics`` holds srcc, plcc, plcc_fit, krcc, rmse, rmse_fit, n_images
        plus what was done (dataset, patches, resize, resize_short, seconds); ``predictions`` is one
        ``(image, mos, pred)`` per image in label-file order, ``image`` relative to the dataset root,
        ``mos`` the label file's original value (not negated), ``pred`` the model's score (checkpoint
        units, higher = better).

    Raises:
        DataError: no images, bad ``patches``/``resize``, or a missing, empty or undecodable image.
    """
    name = info.name
    if not info.records:
        raise DataError(f"eval {name}: the dataset at {info.root} has no images")
    n = int(patches or cfg.test_patches)
    if n < 1:
        raise DataError(f"eval {name}: patches={n}; give --patches >= 1")
    rs, rshort = preprocessing(cfg, name, resize, resize_short)
    _precheck_files(info.records, name)
    if check:
        from swiniqa.data.check import check_dataset

        rep = check_dataset(info, resize=rs, resize_short=rshort, min_side=cfg.patch_size, progress=progress)
        if rep.errors:
            e = rep.errors[0]
            more = f" (and {len(rep.errors) - 1} more)" if len(rep.errors) > 1 else ""
            raise image_error(e["image"], e["why"] + more)
    t0 = time.monotonic()
    bar = Progress(f"eval {name}", len(info.records), enabled=progress)
    pred = score_records(model, info.records, patch_size=cfg.patch_size, patches=n, batch_size=batch_size,
                         device=device, resize=rs, resize_short=rshort, seed=cfg.seed, threads=threads,
                         progress=bar)
    seconds = time.monotonic() - t0
    oriented = np.array([r.score for r in info.records], dtype=np.float64)
    metrics: dict[str, Any] = dict(all_metrics(pred, oriented))
    metrics.update({"dataset": name, "root": str(info.root), "patches": n, "patch_size": cfg.patch_size,
                    "resize": list(rs) if rs else None, "resize_short": rshort,
                    "higher_is_better": bool(info.higher_is_better), "seconds": round(seconds, 3),
                    "images_per_s": round(len(pred) / max(seconds, 1e-9), 3)})
    sign = 1.0 if info.higher_is_better else -1.0
    preds = [(_display_path(r.path, info.root), sign * float(r.score), float(p))
             for r, p in zip(info.records, pred)]
    return metrics, preds


def write_predictions(predictions: Sequence[tuple[str, float, float]], path: str | os.PathLike) -> str:
    """Write ``image,mos,pred`` rows (one per image) to ``path``, atomically (folders created).

    Args:
        predictions: ``(image, mos, pred)`` rows, as :func:`evaluate_dataset` returns them.
        path: the CSV file.

    Returns:
        ``path`` as a string.

    Raises:
        DataError: the file cannot be written.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image", "mos", "pred"])
            for image, mos, pred in predictions:
                w.writerow([image, repr(float(mos)), repr(float(pred))])
        os.replace(tmp, path)
    except OSError as e:
        from swiniqa.storage import os_error_why

        raise DataError(f"cannot write predictions file {path}: {os_error_why(e, path)}; pick a writable path") from None
    return path


__all__ = ["EVAL_PREPROCESSING", "preprocessing", "evaluate_dataset", "score_records", "write_predictions",
           "default_device", "default_threads", "Progress"]
