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


def plan_crops(h: int, w: int, n: int, size: int, rng: np.random.Generator, hflip: bool):
    """Positions and flips of ``n`` uniform random ``size`` crops of an (h, w) image: (ys, xs, flips).

    The same distribution as torchvision's RandomCrop + RandomHorizontalFlip(p=0.5); cutting is
    separate so a batch can be cut straight into its own buffer (one copy per patch)."""
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(0, w - size + 1, n)
    flips = rng.random(n) < 0.5 if hflip else np.zeros(n, bool)
    return ys, xs, flips


def _content_aug(out: np.ndarray, rng: np.random.Generator) -> None:
    """In place: rotate each crop by a random multiple of 90 degrees and permute its colour channels."""
    rots = rng.integers(0, 4, len(out))
    for k in range(len(out)):
        c = np.rot90(out[k], rots[k]) if rots[k] else out[k]
        out[k] = c[:, :, rng.permutation(3)]


def _flip_rows(t: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
    """Mirror the (B, H, W, 3) uint8 patches marked in ``flips`` along W (torch's flip is several
    times faster than copying through a negative-stride numpy view)."""
    if flips.any():
        idx = torch.from_numpy(np.flatnonzero(flips))
        t[idx] = t[idx].flip(2)
    return t


def random_crops(img: np.ndarray, n: int, size: int, rng: np.random.Generator, hflip: bool,
                 content_aug: bool = False) -> np.ndarray:
    """``n`` uniform random ``size`` crops (each flipped horizontally with p=0.5): (n, size, size, 3).

    ``content_aug`` also rotates each crop by a random multiple of 90 degrees and permutes its colour
    channels: new "content" for the same distortion, for small from-scratch runs."""
    ys, xs, flips = plan_crops(img.shape[0], img.shape[1], n, size, rng, hflip)
    out = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        out[k] = img[ys[k]:ys[k] + size, xs[k]:xs[k] + size]
    out = _flip_rows(torch.from_numpy(out), flips).numpy()
    if content_aug:
        _content_aug(out, rng)
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
        """Batches per epoch: full batches only, or one smaller batch when an epoch holds fewer patches
        than a batch (every rank the same count), so every epoch takes at least one optimizer step."""
        per_rank = -(-len(self.records) // self.world)
        return per_rank * self.n // self.bs or (1 if per_rank * self.n else 0)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch, 1])
        mine = shard_indices(len(self.records), self.rank, self.world, rng)
        crop_rng = np.random.default_rng([self.seed, epoch, 2, self.rank])
        p, bs, total = self.p, self.bs, len(self)

        def plans():
            """Per pool of images: decode (threads), plan every crop, shuffle the plan."""
            with ThreadPoolExecutor(self.threads) as ex:
                for s in range(0, len(mine), self.pool):
                    idx = mine[s:s + self.pool]
                    imgs = list(ex.map(lambda i: self.cache.get(self.records[i].path), idx))
                    plan = []
                    for i, im in zip(idx, imgs):
                        ys, xs, fl = plan_crops(im.shape[0], im.shape[1], self.n, p, crop_rng, self.hflip)
                        score = self.records[i].score
                        plan += [(im, int(y), int(x), bool(f), score) for y, x, f in zip(ys, xs, fl)]
                    perm = crop_rng.permutation(len(plan))
                    yield [plan[k] for k in perm]

        def cut(part: list) -> tuple[torch.Tensor, torch.Tensor]:
            out = np.empty((len(part), p, p, 3), np.uint8)
            for k, (im, y, x, _, _) in enumerate(part):
                out[k] = im[y:y + p, x:x + p]
            t = _flip_rows(torch.from_numpy(out), np.array([e[3] for e in part]))
            if self.content_aug:
                _content_aug(out, crop_rng)  # ``out`` is ``t``'s memory
            return t.permute(0, 3, 1, 2), torch.tensor([e[4] for e in part], dtype=torch.float32)

        def batches():
            """Cut each batch straight into its own buffer; a pool's remainder opens the next batch."""
            left: list = []
            emitted = 0
            for plan in plans():
                plan = left + plan
                nfull = len(plan) // bs
                for b in range(nfull):
                    if emitted == total:
                        return
                    emitted += 1
                    yield cut(plan[b * bs:(b + 1) * bs])
                left = plan[nfull * bs:]
            if emitted < total and left:  # fewer patches than one batch: one smaller batch
                yield cut(left)

        pf = _Prefetch(batches())
        try:
            yield from pf
        finally:
            pf.close()


class SeededPatches:
    """Fixed test crops of whole images, batched: yields (patches, owner) with all crops of several
    images per batch, so per-image averaging is a scatter-add.

    Image ``i`` is cut with ``seeds[i]`` and its crops carry ``owners[i]`` (default ``i``)."""

    def __init__(self, paths: Sequence[str], seeds: Sequence[int], *, patch_size: int, patches_per_image: int,
                 batch_size: int, cache: ImageCache, threads: int = 2, owners: Optional[Sequence[int]] = None):
        self.paths, self.seeds = list(paths), [int(s) for s in seeds]
        self.owners = [int(o) for o in owners] if owners is not None else list(range(len(self.paths)))
        self.p, self.n, self.cache = patch_size, patches_per_image, cache
        self.images_per_batch = max(1, batch_size // patches_per_image)
        self.threads = max(1, threads)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        def batches():
            with ThreadPoolExecutor(self.threads) as ex:
                for s in range(0, len(self.paths), self.images_per_batch):
                    idx = range(s, min(s + self.images_per_batch, len(self.paths)))
                    imgs = list(ex.map(lambda i: self.cache.get(self.paths[i]), idx))
                    crops = [fixed_crops(im, self.n, self.p, self.seeds[i]) for i, im in zip(idx, imgs)]
                    owner = np.concatenate([np.full(len(c), self.owners[i]) for i, c in zip(idx, crops)])
                    yield to_tensor(np.concatenate(crops)), torch.from_numpy(owner)

        pf = _Prefetch(batches())
        try:
            yield from pf
        finally:
            pf.close()


class EvalPatches(SeededPatches):
    """A rank's shard of records with crop seeds derived from ``seed`` and each record's index;
    owners are record indices."""

    def __init__(self, records: Sequence[Record], *, patch_size: int, patches_per_image: int, batch_size: int,
                 seed: int, cache: ImageCache, rank: int = 0, world: int = 1, threads: int = 2):
        self.records = list(records)
        mine = np.arange(len(self.records))[rank::world]
        super().__init__([self.records[i].path for i in mine], [seed * 1_000_003 + int(i) for i in mine],
                         patch_size=patch_size, patches_per_image=patches_per_image, batch_size=batch_size,
                         cache=cache, threads=threads, owners=mine)
