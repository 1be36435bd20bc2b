"""The fast patch loader: decode once, crop many, uint8 until the device.

The reference re-opened and re-decoded the full JPEG for every one of the 20 patches of an image.
Here each image is decoded (and resized) once per epoch — or once per run while it fits the
in-memory cache — and all its patches are cut from that array. Patches of a pool of images are
shuffled together so a batch mixes many images, as a global patch shuffle would.

Training is planned globally (:func:`plan_epoch`): which patch, where, flipped or rotated, in which
global batch, is a function of the seed and the epoch, never of the number of workers; each rank cuts
its share of every global batch (:func:`split_batch`). So 1, 2 or 8 workers run the same optimisation. Batches are uint8
NHWC arrays viewed as NCHW (channels-last) tensors; normalisation happens on the device, in the model.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Sequence

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


#: The six orders of the colour channels content augmentation picks from.
CHANNEL_ORDERS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def _content_aug(out: np.ndarray, rots: np.ndarray, orders: np.ndarray) -> None:
    """In place: rotate crop ``k`` by ``rots[k]`` quarter turns and reorder its colour channels as
    ``CHANNEL_ORDERS[orders[k]]``."""
    for k in range(len(out)):
        c = np.rot90(out[k], rots[k]) if rots[k] else out[k]
        out[k] = c[:, :, CHANNEL_ORDERS[orders[k]]]


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
        _content_aug(out, rng.integers(0, 4, n), rng.integers(0, len(CHANNEL_ORDERS), n))
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


@dataclass(frozen=True)
class EpochPlan:
    """Every training patch of one epoch, in the order the optimizer sees them (one global plan).

    Patch ``k`` is cut from record ``image[k]`` at the relative position ``(uy[k], ux[k])`` in [0, 1)
    (:func:`crop_origin` maps it onto the decoded image, so planning needs no image), then mirrored when
    ``flip[k]``, rotated by ``rot[k]`` quarter turns and its channels reordered as
    ``CHANNEL_ORDERS[order[k]]`` (content augmentation), and colour-jittered by ``jitter[k]`` (three
    uniform draws in [0, 1) for brightness, contrast and saturation, used only when colour jitter is on).
    Global batch ``b`` is patches ``[b * batch_size, (b + 1) * batch_size)``.
    """

    image: np.ndarray
    uy: np.ndarray
    ux: np.ndarray
    flip: np.ndarray
    rot: np.ndarray
    order: np.ndarray
    jitter: np.ndarray
    batch_size: int

    def __len__(self) -> int:
        return len(self.image)

    @property
    def batches(self) -> int:
        """Optimizer steps: full batches only, or one smaller batch when the epoch holds fewer patches
        than a batch, so every epoch steps at least once."""
        return len(self) // self.batch_size or (1 if len(self) else 0)

    def batch(self, b: int) -> np.ndarray:
        """Plan indices of global batch ``b``."""
        return np.arange(b * self.batch_size, min((b + 1) * self.batch_size, len(self)))


def plan_epoch(n_records: int, *, patches_per_image: int, batch_size: int, seed: int, epoch: int, pool: int,
               hflip: bool = True, content_aug: bool = False) -> EpochPlan:
    """The epoch's global plan: a function of (records, seed, epoch) and the batch size only, never of the
    number of workers, so 1, 2 or 8 workers take the same optimizer steps on the same batches.

    Records are shuffled, cut into pools of ``pool`` images, and the patches of each pool shuffled together
    (a batch mixes many images, like a global patch shuffle, while a worker decodes a pool's images once)."""
    order = np.random.default_rng([seed, epoch, 1]).permutation(n_records)
    rng = np.random.default_rng([seed, epoch, 2])
    image = np.concatenate([rng.permutation(np.repeat(order[s:s + pool], patches_per_image))
                            for s in range(0, n_records, pool)] or [np.zeros(0, np.int64)])
    n = len(image)
    uy, ux = rng.random(n), rng.random(n)
    flip = rng.random(n) < 0.5 if hflip else np.zeros(n, bool)
    zeros = np.zeros(n, np.int64)
    rot = rng.integers(0, 4, n) if content_aug else zeros
    order_ = rng.integers(0, len(CHANNEL_ORDERS), n) if content_aug else zeros
    jitter = np.random.default_rng([seed, epoch, 3]).random((n, 3), dtype=np.float32)
    return EpochPlan(image, uy, ux, flip, rot, order_, jitter, batch_size)


def crop_origin(u: np.ndarray, length, size: int) -> np.ndarray:
    """Top (or left) edge of crops at relative positions ``u`` in [0, 1): uniform over the
    ``length - size + 1`` integer positions, like ``rng.integers(0, length - size + 1)``."""
    positions = length - size + 1
    return np.minimum((u * positions).astype(np.int64), positions - 1)


def split_batch(images: np.ndarray, world: int) -> list[np.ndarray]:
    """Which positions of a global batch each rank trains on.

    Shares differ by at most one patch (rank ``r`` gets ``len // world`` plus one when ``r < len % world``),
    so no rank waits for a bigger one; each rank first takes patches of its own images (record index mod
    ``world``), so it mostly decodes and caches its own part of the dataset, and the rest fill the shares
    left short. The loss weights every patch by ``1 / len(batch)`` whatever share it lands in, so the
    averaged gradient is the one-worker gradient of the whole batch.

    Raises:
        ValueError: the batch has fewer patches than there are ranks.
    """
    n = len(images)
    if n < world:
        raise ValueError(f"a batch of {n} patches cannot be split over {world} workers")
    quota = [n // world + (1 if r < n % world else 0) for r in range(world)]
    shares: list[list[int]] = [[] for _ in range(world)]
    spill: list[int] = []
    for k, owner in enumerate(np.asarray(images) % world):
        (shares[owner] if len(shares[owner]) < quota[owner] else spill).append(k)
    for r in range(world):
        take = quota[r] - len(shares[r])
        shares[r] += spill[:take]
        spill = spill[take:]
    return [np.array(sorted(s), dtype=np.int64) for s in shares]


class Batch(NamedTuple):
    """A rank's share of one global batch."""

    patches: torch.Tensor  # uint8 (n, 3, P, P), channels-last memory
    scores: torch.Tensor  # float32 (n,), dataset units
    jitter: torch.Tensor  # float32 (n, 3) uniform draws for colour jitter
    total: int  # patches in the whole global batch (the loss divides by it)
    sizes: tuple[int, ...]  # every rank's share of this batch, by rank
    #: int64 (n,): where this share's patches sit in the global batch (None: the whole batch, in order); the
    #: dropout/drop-path masks of the global batch are drawn once and each rank keeps these rows.
    positions: Optional[torch.Tensor] = None


class TrainPatches:
    """Per-epoch iterator of this rank's :class:`Batch` es: its share of every global batch of the epoch's
    :class:`EpochPlan`. ``batch_size`` is the global batch; ``len()`` is the same at any ``world``."""

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
        smallest = min(batch_size, len(self.records) * patches_per_image)
        if self.records and smallest < world:
            raise ValueError(f"a global batch of {smallest} patches cannot be split over {world} workers: "
                             f"use at most {smallest} workers or a larger batch_size")

    def plan(self, epoch: int) -> EpochPlan:
        return plan_epoch(len(self.records), patches_per_image=self.n, batch_size=self.bs, seed=self.seed,
                          epoch=epoch, pool=self.pool, hflip=self.hflip, content_aug=self.content_aug)

    def __len__(self) -> int:
        """Optimizer steps per epoch (global batches), whatever the number of workers."""
        total = len(self.records) * self.n
        return total // self.bs or (1 if total else 0)

    def shares(self, plan: EpochPlan, start: int = 0) -> Iterator[tuple[np.ndarray, tuple[int, ...], np.ndarray]]:
        """(plan indices of this rank's share, every rank's share size, the share's positions in the global
        batch) for each global batch from ``start``."""
        for b in range(start, plan.batches):
            idx = plan.batch(b)
            parts = split_batch(plan.image[idx], self.world)
            yield idx[parts[self.rank]], tuple(len(q) for q in parts), parts[self.rank]

    def _cut(self, plan: EpochPlan, sel: np.ndarray, images: dict[int, np.ndarray], sizes, positions) -> Batch:
        p = self.p
        out = np.empty((len(sel), p, p, 3), np.uint8)
        ims = [images[int(i)] for i in plan.image[sel]]
        ys = crop_origin(plan.uy[sel], np.array([im.shape[0] for im in ims]), p)
        xs = crop_origin(plan.ux[sel], np.array([im.shape[1] for im in ims]), p)
        for k, (im, y, x) in enumerate(zip(ims, ys, xs)):
            out[k] = im[y:y + p, x:x + p]
        t = _flip_rows(torch.from_numpy(out), plan.flip[sel])
        if self.content_aug:
            _content_aug(out, plan.rot[sel], plan.order[sel])  # ``out`` is ``t``'s memory
        scores = torch.tensor([self.records[int(i)].score for i in plan.image[sel]], dtype=torch.float32)
        return Batch(t.permute(0, 3, 1, 2), scores, torch.from_numpy(plan.jitter[sel]), sum(sizes), sizes,
                     torch.from_numpy(positions))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This rank's shares of the epoch's global batches ``start``, ``start + 1``, ...: a run resumed
        mid-epoch skips the batches it already trained on without decoding their images."""
        plan = self.plan(epoch)
        group = max(1, self.pool * self.n // max(1, self.bs))  # about one pool's batches per decode round

        def batches():
            """Per group of batches: decode this rank's images of the group (threads), then cut each share."""
            todo = list(self.shares(plan, start))
            with ThreadPoolExecutor(self.threads) as ex:
                for g in range(0, len(todo), group):
                    part = todo[g:g + group]
                    need = sorted({int(i) for sel, _, _ in part for i in plan.image[sel]})
                    images = dict(zip(need, ex.map(lambda i: self.cache.get(self.records[i].path), need)))
                    for sel, sizes, positions in part:
                        yield self._cut(plan, sel, images, sizes, positions)

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
