"""Input-pipeline throughput: the reference's per-patch pipeline vs swiniqa's decode-once loader.

Both pipelines read the same JPEGs with the same process settings, deliver the same number of normalised float
(B, 3, 224, 224) training patches per epoch (20 per image, batch 32) and use the same number of
loader workers (``--workers``: DataLoader processes for the naive pipeline, decode threads for ours).

* naive — faithful to the reference HyperIQA/SMART-IQA loader: a torch ``Dataset`` with one item per
  *patch*; ``__getitem__(k)`` opens image ``k // 20``, converts to RGB, then RandomHorizontalFlip,
  Resize((384, 512)), RandomCrop(224), ToTensor, Normalize; ``DataLoader(batch_size=32, shuffle=True,
  num_workers=W)`` (workers re-created each epoch, as the reference did).
* fast — ``TrainPatches`` + ``ImageCache(resize=(384, 512), min_side=224)``: each image decoded once
  (JPEG DCT scaling), all its patches cut from that array, uint8 batches; then the normalisation the
  model does on the device (uint8 -> float /255, minus mean, over std) as one batched tensor op.
  Epoch 1 decodes, later epochs hit the in-memory cache.
* fast-nocache — the same with a zero cache budget: every epoch decodes every image once.

Each pipeline lives in its own spawned process with the same settings (torch threads as the parent's
default, the platform's start method for DataLoader workers), so none pays for another's memory state
(in one shared process the pipeline run right after a naive epoch was 20-30 % slower, with twice the
system time). Epochs of the three are interleaved by the parent (the order rotates every epoch);
the headline figure is the median over epochs; epoch 1 and the later ("steady") epochs are also shown
apart.

    python benchmarks/data_pipeline.py --images /tmp/bench-images [--count 64] [--epochs 3] [--json]

(an empty or missing ``--images`` folder is filled with ``--count`` images by make_images.py;
``--compare-with DIR`` adds ``alt``/``alt_nocache``: the same fast pipeline with the swiniqa package
found in DIR, e.g. a git worktree of another commit, for A/B-testing loader changes in one run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_images next to this file

import numpy as np
import torch
from PIL import Image

RESIZE = (384, 512)  # (height, width), as in the reference's transforms.Resize((384, 512))
PATCH = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------- naive
def pil_loader(path: str) -> Image.Image:
    """The reference's loader: open the file, decode fully, convert to RGB."""
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


class NaivePatchDataset(torch.utils.data.Dataset):
    """One sample per patch: ``patches_per_image`` entries per image, each re-opening the file."""

    def __init__(self, paths: list[str], scores: list[float], patches_per_image: int):
        import torchvision.transforms as T

        self.samples = [(p, s) for p, s in zip(paths, scores) for _ in range(patches_per_image)]
        self.transform = T.Compose([
            T.RandomHorizontalFlip(),
            T.Resize(RESIZE),
            T.RandomCrop(PATCH),
            T.ToTensor(),
            T.Normalize(mean=MEAN, std=STD),
        ])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int):
        path, target = self.samples[k]
        return self.transform(pil_loader(path)), target


def run_naive(ds: NaivePatchDataset, epoch: int, workers: int, batch_size: int, limit_batches: int = 0) -> int:
    gen = torch.Generator().manual_seed(1000 + epoch)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, generator=gen)
    n = 0
    for b, (x, y) in enumerate(dl):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, PATCH, PATCH)
        n += len(y)
        if limit_batches and b + 1 >= limit_batches:
            break
    return n


# ------------------------------------------------------------------------------------------------ fast
def make_fast(records, cache_bytes: int, workers: int, batch_size: int, patches_per_image: int, seed: int = 0):
    from swiniqa.data.loader import ImageCache, TrainPatches

    cache = ImageCache(resize=RESIZE, min_side=PATCH, budget_bytes=cache_bytes)
    return TrainPatches(records, patch_size=PATCH, patches_per_image=patches_per_image, batch_size=batch_size,
                        seed=seed, cache=cache, threads=workers)


def _normaliser():
    """The model's own ``normalise`` (uint8 -> float /255 -> (x - mean) / std): the op training runs on
    the device, taken from a (tiny, random) model so it stays whatever the model does."""
    from swiniqa.config import TrainConfig
    from swiniqa.models import build_model

    model = build_model(TrainConfig(model_size="nano", pretrained=False, patch_size=PATCH))
    return model.normalise


def run_fast(tp, epoch: int, normalise, limit_batches: int = 0) -> int:
    n = 0
    it = tp.epoch(epoch)
    try:
        for b, batch in enumerate(it):
            x = normalise(batch.patches)
            assert x.dtype == torch.float32 and x.shape[1:] == (3, PATCH, PATCH)
            n += len(batch.scores)
            if limit_batches and b + 1 >= limit_batches:
                break
    finally:
        it.close()
    return n


# ----------------------------------------------------------------------------------- one process each
def _serve(conn, start_method: str, pythonpath: Optional[str], name: str, paths: list[str], scores: list[float],
           workers: int, batch_size: int, patches_per_image: int) -> None:
    """Child process: build one pipeline, warm it up, then run the epochs the parent asks for."""
    import multiprocessing as mp

    if pythonpath:  # --compare-with: import swiniqa from another tree (nothing imported it yet here)
        sys.path.insert(0, pythonpath)
    from swiniqa.data.records import Record

    # A spawned child inherits "spawn" as its default start method; DataLoader workers must start the
    # way they would in a normal training process (the platform default: fork on Linux).
    mp.set_start_method(start_method, force=True)

    if name == "naive":
        ds = NaivePatchDataset(paths, scores, patches_per_image)
        run_naive(ds, -1, workers, batch_size, limit_batches=1)  # warm-up: imports, first fork
        run = lambda e: run_naive(ds, e, workers, batch_size)  # noqa: E731
    else:
        records = [Record(p, s, f"g{i}") for i, (p, s) in enumerate(zip(paths, scores))]
        normalise = _normaliser()
        run_fast(make_fast(records[:4], 0, workers, batch_size, patches_per_image), 0, normalise, limit_batches=1)
        cache = 0 if name.endswith("nocache") else 4 << 30
        tp = make_fast(records, cache, workers, batch_size, patches_per_image)
        run = lambda e: run_fast(tp, e, normalise)  # noqa: E731
    import swiniqa

    conn.send(("ready", torch.get_num_threads(), os.path.dirname(swiniqa.__file__)))
    while True:
        e = conn.recv()
        if e is None:
            return
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        n = run(e)
        dt = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        # this process's own CPU (naive: the DataLoader's main process; its workers are children)
        conn.send((n, dt, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, r1.ru_minflt - r0.ru_minflt))


class PipelineProcess:
    """One pipeline in its own (spawned) process: each keeps its own allocator and page-fault state and
    its own cache, and the naive DataLoader's per-epoch worker forks happen away from the others."""

    def __init__(self, name: str, pythonpath: Optional[str], *args):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        # not a daemon: the naive pipeline's DataLoader starts worker processes of its own
        self.name = name
        self.proc = ctx.Process(target=_serve, args=(child, mp.get_start_method(), pythonpath, name, *args))
        self.proc.start()
        child.close()
        _, self.threads, self.package = self._recv()

    def _recv(self):
        while not self.conn.poll(1.0):
            if not self.proc.is_alive():
                raise RuntimeError(f"the {self.name} pipeline process died (exit code {self.proc.exitcode})")
        try:
            return self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.name} pipeline process died") from None

    def epoch(self, e: int) -> tuple[int, float, float, float, int]:
        self.conn.send(e)
        return self._recv()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=30)
        if self.proc.is_alive():
            self.proc.kill()


# ------------------------------------------------------------------------------------------------ main
def find_images(folder: Path, count: int) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png", ".bmp"}
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts) if folder.is_dir() else []
    if not paths:
        from make_images import write_images

        print(f"no images in {folder}: writing {count} 1024x768 JPEGs there", file=sys.stderr)
        paths = write_images(folder, count)
    return paths[:count] if count else paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="naive per-patch input pipeline vs swiniqa's decode-once loader")
    ap.add_argument("--images", required=True, help="folder of images (filled by make_images.py when empty)")
    ap.add_argument("--count", type=int, default=64, help="use the first N images (0 = all; default 64)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers / decode threads (default 2)")
    ap.add_argument("--patches-per-image", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--compare-with", metavar="DIR", default=None,
                    help="also run fast/fast_nocache with the swiniqa package found in DIR (e.g. a git worktree "
                         "of another commit) as alt/alt_nocache")
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (table on stderr)")
    args = ap.parse_args(argv)
    alt = str(Path(args.compare_with).resolve()) if args.compare_with else None
    if alt and not (Path(alt) / "swiniqa" / "__init__.py").is_file():
        ap.error(f"--compare-with {alt}: no swiniqa package there")

    paths = find_images(Path(args.images), args.count)
    rng = np.random.default_rng(0)
    scores = [float(s) for s in rng.uniform(1, 5, len(paths))]
    sizes = {Image.open(p).size for p in paths[:8]}
    W, B, N = args.workers, args.batch_size, args.patches_per_image

    # Warm the OS page cache for every file (all pipelines read them), then start one idle process
    # per pipeline (each warms itself up: imports, allocator, DataLoader's first fork).
    for p in paths:
        Path(p).read_bytes()
    names = ["naive", "fast", "fast_nocache"] + (["alt", "alt_nocache"] if alt else [])
    procs: dict[str, PipelineProcess] = {}
    rates: dict[str, list[float]] = {k: [] for k in names}
    try:
        for name in names:
            procs[name] = PipelineProcess(name, alt if name.startswith("alt") else None, [str(p) for p in paths],
                                          scores, W, B, N)
        for e in range(args.epochs):
            r = e % len(names)
            order = names[r:] + names[:r]  # rotate so no pipeline always runs first
            for name in order:
                n, dt, usr, sy, flt = procs[name].epoch(e)
                rates[name].append(n / dt)
                print(f"  epoch {e + 1} {name:<13} {n:>6} patches {dt:7.2f} s {n / dt:9.1f} patches/s   "
                      f"process user {usr:6.2f} s sys {sy:5.2f} s page faults {flt}", file=sys.stderr)
    finally:
        for pr in procs.values():
            pr.close()
    procs_pkg = {k: pr.package for k, pr in procs.items()}

    med = {k: statistics.median(v) for k, v in rates.items()}
    steady = {k: statistics.median(v[1:]) if len(v) > 1 else None for k, v in rates.items()}
    out = {
        "naive_patches_per_s": round(med["naive"], 1),
        "fast_patches_per_s": round(med["fast"], 1),
        "fast_nocache_patches_per_s": round(med["fast_nocache"], 1),
        "ratio": round(med["fast"] / med["naive"], 2),
        "ratio_nocache": round(med["fast_nocache"] / med["naive"], 2),
        "fast_first_epoch_patches_per_s": round(rates["fast"][0], 1),
        "fast_steady_patches_per_s": round(steady["fast"], 1) if steady["fast"] else None,
        "ratio_first_epoch": round(rates["fast"][0] / rates["naive"][0], 2),
        **({"alt": procs_pkg.get("alt"), "alt_patches_per_s": round(med["alt"], 1),
            "alt_nocache_patches_per_s": round(med["alt_nocache"], 1), "ratio_alt": round(med["alt"] / med["naive"], 2),
            "ratio_alt_nocache": round(med["alt_nocache"] / med["naive"], 2)} if alt else {}),
        "images": len(paths), "image_size": sorted(sizes), "patches_per_image": N, "batch_size": B,
        "epochs": args.epochs, "workers": W, "torch_threads": procs["fast"].threads, "cpus": os.cpu_count(),
        "package": procs_pkg["fast"],
        "machine": platform.processor() or platform.machine(),
    }
    stream = sys.stderr if args.json else sys.stdout
    print(f"\ninput pipeline: {len(paths)} images {sorted(sizes)}, {N} patches/image, batch {B}, "
          f"{W} workers, {args.epochs} epochs, {os.cpu_count()} CPUs", file=stream)
    print(f"{'pipeline':<14}{'epoch 1':>12}{'steady':>12}{'median':>12}{'vs naive':>10}   (patches/s)", file=stream)
    for k in names:
        st = f"{steady[k]:>12.1f}" if steady[k] else f"{'-':>12}"
        print(f"{k:<14}{rates[k][0]:>12.1f}{st}{med[k]:>12.1f}{med[k] / med['naive']:>9.2f}x", file=stream)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
