"""The one inference path: per-image mean scores over fixed crops, and split evaluation.

Used by the training loop (validation and the final test), ``eval`` (:mod:`~swiniqa.evaluation.evaluate`),
``predict``, the cross-dataset suite and Tune's post-hoc test, so every score in the project is the mean
of the same seeded crops computed the same way. Nothing here imports the training loop.

Crop seeds: a record's crops are seeded by its position in the split (``EvalPatches``: the training
loop and ``eval``, so a split's crops never change), or, for ``predict``, by the image file's content
(:func:`content_seed`): identical bytes under two names get the same crops and the same score.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from swiniqa.config import TrainConfig
from swiniqa.data.loader import EvalPatches, ImageCache, SeededPatches
from swiniqa.data.records import Record
from swiniqa.evaluation.metrics import all_metrics


@torch.no_grad()
def mean_scores(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                device: torch.device, amp: bool) -> dict[int, float]:
    """Mean score per owner over its crops.

    Args:
        model: the IQA model (put in eval mode here).
        batches: ``(patches, owner)`` pairs, e.g. an :class:`~swiniqa.data.loader.EvalPatches`; ``owner[i]``
            is the image index crop ``i`` belongs to.
        device: where the forward passes run.
        amp: bf16 autocast (CUDA).

    Returns:
        ``{owner: mean score}`` in the model's units.
    """
    model.eval()
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for patches, owner in batches:
        x = patches.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            y = model(x).float().cpu().numpy()
        for i, v in zip(owner.tolist(), y.tolist()):
            sums[i] = sums.get(i, 0.0) + v
            counts[i] = counts.get(i, 0) + 1
    return {i: sums[i] / counts[i] for i in sums}


def gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj`` (all-gather over torch.distributed); ``[obj]`` on one process."""
    import torch.distributed as dist

    if world == 1 or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def evaluate_split(model: torch.nn.Module, records: list[Record], cfg: TrainConfig, cache: ImageCache,
                   device: torch.device, amp: bool = False, threads: int = 1, rank: int = 0, world: int = 1
                   ) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of a split: each rank scores its shard of ``records``, predictions are gathered once.

    Args:
        model: the IQA model (DDP-wrapped is fine).
        records: the split; crops are seeded by ``cfg.seed`` and each record's index.
        cfg: the run's config (``patch_size``, ``test_patches``, ``batch_size``, ``seed``).
        cache: decoded images (shared with training).
        device, amp, threads: where it runs, bf16 autocast, decode threads.
        rank, world: this worker's rank and the number of workers.

    Returns:
        ``(metrics, predictions)``: :func:`~swiniqa.evaluation.metrics.all_metrics` of the split and the
        per-record mean scores in record order.
    """
    loader = EvalPatches(records, patch_size=cfg.patch_size, patches_per_image=cfg.test_patches,
                         batch_size=max(cfg.batch_size, cfg.test_patches) * 2, seed=cfg.seed, cache=cache,
                         rank=rank, world=world, threads=threads)
    merged: dict[int, float] = {}
    for part in gather(mean_scores(model, loader, device, amp), world):
        merged.update(part)
    idx = sorted(merged)
    pred = np.array([merged[i] for i in idx])
    mos = np.array([records[i].score for i in idx])
    return all_metrics(pred, mos), pred


def content_seed(seed: int, path: str) -> int:
    """Crop seed of an image from its file's bytes (CRC-32): the same image under any name, in any
    company, gets the same crops. An unreadable file gets ``seed`` (its decode error is reported)."""
    crc = 0
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                crc = zlib.crc32(block, crc)
    except OSError:
        return seed % (1 << 63)
    return (seed * 1_000_003 + crc) % (1 << 63)


def default_device(device: Optional[str | torch.device] = None) -> torch.device:
    """``device`` as a torch device; CUDA when available if ``None``."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_threads() -> int:
    """Decoding threads: big JPEGs (SPAQ) make decoding the bottleneck, so use the cores there are."""
    return max(1, min(8, os.cpu_count() or 1))


class _Counted:
    """Wraps a (patches, owner) iterable and steps a progress display once per finished image."""

    def __init__(self, loader, progress):
        self.loader, self.progress = loader, progress

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for patches, owner in self.loader:
            yield patches, owner
            self.progress.step(int(torch.unique(owner).numel()))


def score_records(model: torch.nn.Module, records: Sequence[Record], *, patch_size: int, patches: int,
                  batch_size: int = 64, device: Optional[str | torch.device] = None,
                  resize: Optional[tuple[int, int]] = None, resize_short: Optional[int] = None, seed: int = 0,
                  threads: Optional[int] = None, cache: Optional[ImageCache] = None,
                  progress: Any = None, seed_by_content: bool = False) -> np.ndarray:
    """Mean score over ``patches`` fixed distinct crops for each record, in record order.

    Args:
        model: the IQA model.
        records: images to score (``Record.path``; scores unused).
        patch_size, patches: crop size and crops per image.
        batch_size: patches per forward pass (whole images per batch: ``max(1, batch_size // patches)``).
        device: default CUDA when available.
        resize, resize_short: preprocessing (ignored when ``cache`` is given: the cache's wins).
        seed: crop seed; crops are seeded by the record's position, exactly as the training loop's test
            evaluation does, or with ``seed_by_content`` by the file's bytes (:func:`content_seed`).
        threads: decode threads (default :func:`default_threads`).
        cache: an :class:`~swiniqa.data.loader.ImageCache` (default: one pass, nothing kept).
        progress: an object with ``step(n)`` and ``close()`` (e.g. ``evaluate.Progress``), or ``None``.

    Returns:
        float64 array of one mean score per record.

    Raises:
        DataError: a file cannot be decoded (unless ``cache`` swallows it).
    """
    dev = default_device(device)
    model = model.to(dev).eval()
    cache = cache or ImageCache(resize, resize_short, patch_size, budget_bytes=0)  # one pass: nothing kept
    if seed_by_content:
        paths = [r.path for r in records]
        loader = SeededPatches(paths, [content_seed(seed, p) for p in paths], patch_size=patch_size,
                               patches_per_image=patches, batch_size=max(batch_size, patches), cache=cache,
                               threads=threads or default_threads())
    else:
        loader = EvalPatches(list(records), patch_size=patch_size, patches_per_image=patches,
                             batch_size=max(batch_size, patches), seed=seed, cache=cache,
                             threads=threads or default_threads())
    means = mean_scores(model, _Counted(loader, progress) if progress is not None else loader, dev,
                        dev.type == "cuda")
    if progress is not None:
        progress.close()
    return np.array([means[i] for i in range(len(records))], dtype=np.float64)


__all__ = ["mean_scores", "gather", "evaluate_split", "content_seed", "score_records", "default_device",
           "default_threads"]
