"""The fast patch loader: decode once, crop many, uint8 until the device.

The reference re-opened and re-decoded the full JPEG for every one of the 20 patches of an image.
Here each image is decoded (and resized) once per epoch — or once per run while it fits the
in-memory cache — and all its patches are cut from that array. Patches of a pool of images are
shuffled together so a batch mixes many images, as a global patch shuffle would. Batches are uint8
NHWC arrays viewed as NCHW (channels-last) tensors; normalisation happens on the device, in the model.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from swiniqa.data.images import load_rgb
from swiniqa.data.records import Record


class ImageCache:
    """Decoded, resized uint8 images kept in memory up to a byte budget (per process)."""

    def __init__(self, resize=None, resize_short=None, min_side: int = 224, budget_bytes: int = 2 << 30):
        self.resize, self.resize_short, self.min_side = resize, resize_short, min_side
        self.budget = budget_bytes
        self.used = 0
        self._store: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> np.ndarray:
        arr = self._store.get(path)
        if arr is not None:
            return arr
        arr = load_rgb(path, self.resize, self.resize_short, self.min_side)
        with self._lock:
            if self.used + arr.nbytes <= self.budget:
                self._store[path] = arr
                self.used += arr.nbytes
        return arr


def random_crops(img: np.ndarray, n: int, size: int, rng: np.random.Generator, hflip: bool,
                 content_aug: bool = False) -> np.ndarray:
    """``n`` uniform random ``size`` crops (each flipped horizontally with p=0.5): (n, size, size, 3).

    ``content_aug`` also rotates each crop by a random multiple of 90 degrees and permutes its colour
    channels: new "content" for the same distortion, for small from-scratch runs."""
    h, w = img.shape[:2]
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(0, w - size + 1, n)
    flips = rng.random(n) < 0.5 if hflip else np.zeros(n, bool)
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        c = img[ys[k]:ys[k] + size, xs[k]:xs[k] + size]
        out[k] = c[:, ::-1] if flips[k] else c
    if content_aug:
        rots = rng.integers(0, 4, n)
        for k in range(n):
            c = np.rot90(out[k], rots[k]) if rots[k] else out[k]
            out[k] = c[:, :, rng.permutation(3)]
    return out


def fixed_crop_positions(h: int, w: int, n: int, size: int, seed: int) -> list[tuple[int, int]]:
    """``n`` distinct crop positions, fixed by ``seed`` (fewer when the image has fewer positions).

    The reference's "20 test patches" with a centre crop evaluated one patch 20 times.
    """
    ny, nx = h - size + 1, w - size + 1
    total = ny * nx
    rng = np.random.default_rng(seed)
    idx = rng.choice(total, size=min(n, total), replace=False)
    return [(int(i // nx), int(i % nx)) for i in idx]


def fixed_crops(img: np.ndarray, n: int, size: int, seed: int) -> np.ndarray:
    pos = fixed_crop_positions(img.shape[0], img.shape[1], n, size, seed)
    return np.stack([img[y:y + size, x:x + size] for y, x in pos])


def to_tensor(patches: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 array -> (B, 3, H, W) uint8 tensor in channels-last memory (no copy)."""
    return torch.from_numpy(patches).permute(0, 3, 1, 2)


def shard_indices(n: int, rank: int, world: int, rng: Optional[np.random.Generator]) -> np.ndarray:
    """Shuffled (if ``rng``) indices for this rank, wrapped so every rank gets the same count."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    per = -(-n // world)
    order = np.resize(order, per * world)
    return order[rank::world]


class _Prefetch:
    """Runs a generator in a background thread, a few items ahead of the consumer."""

    _END = object()

    def __init__(self, gen: Iterator, depth: int = 2):
        self.q: queue.Queue = queue.Queue(depth)
        self.err: Optional[BaseException] = None
        self.stopped = False

        def run():
            try:
                for item in gen:
                    if self.stopped:
                        return
                    self.q.put(item)
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
                self.err = e
            finally:
                self.q.put(self._END)

        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is self._END:
                if self.err is not None:
                    raise self.err
                return
            yield item

    def close(self):
        self.stopped = True


class TrainPatches:
    """Per-epoch iterator of (patches uint8 (B,3,P,P), scores float32 (B,)) for one rank."""

    def __init__(self, records: Sequence[Record], *, patch_size: int, patches_per_image: int, batch_size: int,
                 seed: int, cache: ImageCache, rank: int = 0, world: int = 1, hflip: bool = True,
                 threads: int = 2, pool_images: Optional[int] = None, content_aug: bool = False):
        self.records = list(records)
        self.content_aug = content_aug
        self.p, self.n, self.bs = patch_size, patches_per_image, batch_size
        self.seed, self.cache, self.rank, self.world = seed, cache, rank, world
        self.hflip, self.threads = hflip, max(1, threads)
        # Enough images per shuffle pool that a batch rarely holds two patches of one image.
        self.pool = pool_images or max(8, 4 * batch_size)

    def __len__(self) -> int:
        per_rank = -(-len(self.records) // self.world)
        return per_rank * self.n // self.bs

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch, 1])
        mine = shard_indices(len(self.records), self.rank, self.world, rng)
        crop_rng = np.random.default_rng([self.seed, epoch, 2, self.rank])

        def pools():
            with ThreadPoolExecutor(self.threads) as ex:
                for s in range(0, len(mine), self.pool):
                    idx = mine[s:s + self.pool]
                    imgs = list(ex.map(lambda i: self.cache.get(self.records[i].path), idx))
                    patches = np.concatenate([random_crops(im, self.n, self.p, crop_rng, self.hflip, self.content_aug)
                                              for im in imgs])
                    scores = np.repeat(np.array([self.records[i].score for i in idx], np.float32), self.n)
                    perm = crop_rng.permutation(len(patches))
                    yield patches[perm], scores[perm]

        pf = _Prefetch(pools())
        left_p = left_s = None
        emitted = 0
        try:
            for patches, scores in pf:
                if left_p is not None:
                    patches, scores = np.concatenate([left_p, patches]), np.concatenate([left_s, scores])
                nfull = len(patches) // self.bs
                for b in range(nfull):
                    if emitted == len(self):
                        return
                    sl = slice(b * self.bs, (b + 1) * self.bs)
                    emitted += 1
                    yield to_tensor(patches[sl]), torch.from_numpy(scores[sl])
                left_p, left_s = patches[nfull * self.bs:], scores[nfull * self.bs:]
        finally:
            pf.close()


class EvalPatches:
    """Fixed test crops for a rank's shard of images: yields (patches, image_index) in batches.

    Batches hold all crops of several images, so per-image averaging is a scatter-add.
    """

    def __init__(self, records: Sequence[Record], *, patch_size: int, patches_per_image: int, batch_size: int,
                 seed: int, cache: ImageCache, rank: int = 0, world: int = 1, threads: int = 2):
        self.records = list(records)
        self.p, self.n, self.seed, self.cache = patch_size, patches_per_image, seed, cache
        self.images_per_batch = max(1, batch_size // patches_per_image)
        self.mine = np.arange(len(self.records))[rank::world]
        self.threads = max(1, threads)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        def batches():
            with ThreadPoolExecutor(self.threads) as ex:
                for s in range(0, len(self.mine), self.images_per_batch):
                    idx = self.mine[s:s + self.images_per_batch]
                    imgs = list(ex.map(lambda i: self.cache.get(self.records[i].path), idx))
                    crops = [fixed_crops(im, self.n, self.p, self.seed * 1_000_003 + int(i)) for i, im in zip(idx, imgs)]
                    owner = np.concatenate([np.full(len(c), i) for i, c in zip(idx, crops)])
                    yield to_tensor(np.concatenate(crops)), torch.from_numpy(owner)

        pf = _Prefetch(batches())
        try:
            yield from pf
        finally:
            pf.close()
