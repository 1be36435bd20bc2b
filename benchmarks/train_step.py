"""Model-step throughput: training patches/s (forward + backward + AdamW step) and evaluation images/s.

The step is the training loop's own function (``swiniqa.training.loop.train_step``): uint8 channels-last
batch copied to the device, optional colour jitter (``--color-jitter``), model (normalises the uint8 batch
inside, one multiply-subtract), L1 (+ rank, ``--loss l1+rank``) loss on the standardised score, backward,
grad-norm clip, AdamW (fused on CUDA), the lr schedule's step, bf16 autocast and channels_last on CUDA,
``--compile`` for torch.compile. Evaluation is ``swiniqa.evaluation.inference.mean_scores``: all
``test_patches`` crops of several images in one batch (``max(batch_size, test_patches) * 2 // test_patches``
images, as ``evaluate_split`` does), scores copied back to the host. Inputs are synthetic (random uint8, pinned on CUDA): this measures the model,
not the loader (see data_pipeline.py). Times are medians over ``--repeats`` steps after ``--warmup``,
with ``torch.cuda.synchronize`` around every timed step on CUDA.

``--compare-naive`` also times the same model with the target network run per image by patching
``swiniqa.models.smart_iqa.target_forward``; steps of both paths are interleaved. ``--naive-impl
module`` (default) uses ``target_forward_naive`` (one fresh nn.Linear per image and layer, as in the
reference); it copies the generated weights in under ``no_grad``, so its backward skips the
hyper-network's weight generators and its training time is a lower bound (the speed-up an
underestimate). ``--naive-impl functional`` runs ``F.linear(h, W[i], b[i])`` per image instead:
per-image launches, full gradients.

    python benchmarks/train_step.py [--sizes nano,micro,mini] [--compare-naive] [--compile] [--json]
    python benchmarks/train_step.py --sizes tiny,small,base            # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

import numpy as np
import torch


class GpuUtilSampler:
    """Samples GPU utilisation (%) in a background thread: torch.cuda.utilization() (needs
    nvidia-ml-py) or ``nvidia-smi``; ``mean`` is None where neither works."""

    def __init__(self, device: torch.device, period_s: float = 0.2):
        self.device, self.period = device, period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._read = self._probe()
        self._t: Optional[threading.Thread] = None

    def _probe(self) -> Optional[Callable[[], float]]:
        if self.device.type != "cuda":
            return None
        idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
        try:
            torch.cuda.utilization(idx)
            return lambda: float(torch.cuda.utilization(idx))
        except Exception:  # noqa: BLE001 - pynvml missing: fall back to nvidia-smi
            pass
        smi = shutil.which("nvidia-smi")
        if not smi:
            return None
        # nvidia-smi numbers GPUs by PCI bus unless CUDA_DEVICE_ORDER says otherwise; map through
        # CUDA_VISIBLE_DEVICES when it names one device.
        vis = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        sel = vis.split(",")[idx] if vis and idx < len(vis.split(",")) else str(idx)
        cmd = [smi, f"--id={sel}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]

        def read() -> float:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
            return float(out.strip().splitlines()[0])

        try:
            read()
            return read
        except Exception:  # noqa: BLE001
            return None

    def __enter__(self):
        if self._read is not None:
            def loop():
                while not self._stop.wait(self.period):
                    try:
                        self.samples.append(self._read())
                    except Exception:  # noqa: BLE001 - a failed sample is just skipped
                        pass
            self._t = threading.Thread(target=loop, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._t is not None:
            self._t.join(timeout=6)

    @property
    def mean(self) -> Optional[float]:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(size: str, args, device: torch.device):
    from swiniqa.config import TrainConfig
    from swiniqa.models import build_model
    from swiniqa.training.batch_noise import use_global_batch_masks
    from swiniqa.training.optim import make_optimizer

    over: dict[str, Any] = dict(model_size=size, pretrained=False, use_gpu=device.type == "cuda",
                                compile=args.compile)
    if args.batch_size:
        over["batch_size"] = args.batch_size
    if args.patch_size:
        over["patch_size"] = args.patch_size
    if args.test_patches:
        over["test_patches"] = args.test_patches
    if args.loss:
        over["loss"] = args.loss
        over["rank_weight"] = args.rank_weight if args.loss == "l1+rank" else 0.0
    if args.color_jitter:
        over["color_jitter"] = True
    cfg = TrainConfig().replace(**over)
    torch.manual_seed(0)
    model = build_model(cfg)
    use_global_batch_masks(model)  # as the loop does: dropout/drop-path masks of the global batch
    model.set_label_scale(50.0, 20.0)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    backbone, head = model.param_groups()
    opt = make_optimizer(backbone, head, cfg, device)
    compiled = torch.compile(model) if cfg.compile else model
    return cfg, model, compiled, opt


def _host_batch(n: int, p: int, device: torch.device, seed: int) -> torch.Tensor:
    """uint8 (n, 3, p, p) channels-last view of an NHWC array, like the loader's batches."""
    a = np.random.default_rng(seed).integers(0, 256, (n, p, p, 3), dtype=np.uint8)
    t = torch.from_numpy(a).permute(0, 3, 1, 2)
    if device.type == "cuda":
        t = torch.from_numpy(a).pin_memory().permute(0, 3, 1, 2)
    return t


def make_steps(cfg, model, opt, device: torch.device):
    """(train_step, eval_step, patches per train step, images per eval step): the loop's own
    :func:`swiniqa.training.loop.train_step` (schedule step, rank loss and colour jitter as the config
    says) and :func:`swiniqa.evaluation.inference.mean_scores`."""
    from swiniqa.data.loader import Batch
    from swiniqa.evaluation.inference import mean_scores
    from swiniqa.training.loop import train_step as loop_step
    from swiniqa.training.batch_noise import step_generator
    from swiniqa.training.optim import make_schedule

    amp = cfg.amp and device.type == "cuda"
    bs, p = cfg.batch_size, cfg.patch_size
    xb = _host_batch(bs, p, device, 0)
    yb = torch.from_numpy(np.random.default_rng(1).uniform(0, 100, bs).astype(np.float32))
    if device.type == "cuda":
        yb = yb.pin_memory()
    n_img = max(1, max(cfg.batch_size, cfg.test_patches) * 2 // cfg.test_patches)
    xe = _host_batch(n_img * cfg.test_patches, p, device, 2)
    owner = torch.arange(n_img).repeat_interleave(cfg.test_patches)
    sched = make_schedule(opt, cfg, steps_per_epoch=1000)
    jitter = torch.from_numpy(np.random.default_rng(3).random((bs, 3), dtype=np.float32))
    batch = Batch(xb, yb, jitter, bs, (bs,))  # one worker's whole global batch

    def train_step() -> None:
        model.train()
        loss = loop_step(model, opt, sched, batch, cfg, device, (50.0, 20.0), amp, masks=step_generator(0, device))
        if device.type == "cuda":
            loss.item()  # the loop syncs once per epoch; here the timer syncs anyway

    def eval_step() -> None:
        mean_scores(model, [(xe, owner)], device, amp)  # the host copy is the sync

    return train_step, eval_step, bs, n_img


def time_interleaved(fns: dict[str, Callable[[], None]], warmup: int, repeats: int, device: torch.device
                     ) -> dict[str, float]:
    """Median seconds per call of each function; calls of the functions alternate."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        names = list(fns) if r % 2 == 0 else list(fns)[::-1]
        for k in names:
            _sync(device)
            t0 = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def target_forward_per_image(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> torch.Tensor:
    """Per-image target MLP with ``F.linear`` on the generated tensors (gradients flow into them)."""
    outs = []
    last = len(weights) - 1
    for i in range(x.shape[0]):
        h = x[i]
        for k, (w, b) in enumerate(zip(weights, biases)):
            h = torch.nn.functional.linear(h, w[i], b[i])
            if k != last:
                h = torch.sigmoid(h)
        outs.append(h)
    return torch.stack(outs).reshape(-1)


def bench_size(size: str, args, device: torch.device) -> dict[str, Any]:
    import swiniqa.models.smart_iqa as smart
    from swiniqa.models.target import target_forward, target_forward_naive

    naive_fn = target_forward_naive if args.naive_impl == "module" else target_forward_per_image

    cfg, model, compiled, opt = build(size, args, device)
    train_step, eval_step, bs, n_img = make_steps(cfg, compiled, opt, device)
    row: dict[str, Any] = {"size": size, "device": device.type, "batch_size": bs, "patch_size": cfg.patch_size,
                           "test_patches": cfg.test_patches, "eval_images_per_batch": n_img,
                           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                           "amp_bf16": bool(cfg.amp and device.type == "cuda"),
                           "channels_last": device.type == "cuda", "fused_adamw": device.type == "cuda",
                           "compile": bool(args.compile), "loss": cfg.loss, "color_jitter": cfg.color_jitter}
    if args.compare_naive:
        row["naive_impl"] = args.naive_impl
    fns: dict[str, Callable[[], None]] = {"train": train_step, "eval": eval_step}
    if args.compare_naive:
        # eager model for the naive path (a compiled graph would not see the patched function)
        n_train, n_eval, _, _ = make_steps(cfg, model, opt, device)

        def naive(f):
            def run():
                smart.target_forward = naive_fn
                try:
                    f()
                finally:
                    smart.target_forward = target_forward
            return run

        fns.update({"train_naive": naive(n_train), "eval_naive": naive(n_eval)})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with GpuUtilSampler(device) as util:
        t = time_interleaved(fns, args.warmup, args.repeats, device)
    row["train_patches_per_s"] = round(bs / t["train"], 1)
    row["eval_images_per_s"] = round(n_img / t["eval"], 2)
    row["train_step_ms"] = round(t["train"] * 1e3, 1)
    if args.compare_naive:
        row["naive_train_patches_per_s"] = round(bs / t["train_naive"], 1)
        row["naive_eval_images_per_s"] = round(n_img / t["eval_naive"], 2)
        row["train_ratio_vs_naive"] = round(t["train_naive"] / t["train"], 2)
        row["eval_ratio_vs_naive"] = round(t["eval_naive"] / t["eval"], 2)
    row["gpu_util_pct"] = util.mean
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="training and evaluation throughput of the SMART-IQA model step")
    ap.add_argument("--sizes", default=None,
                    help="comma list of model sizes (default nano,micro,mini on CPU, tiny,small,base on CUDA)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--batch-size", type=int, default=0, help="default: the config's (32)")
    ap.add_argument("--patch-size", type=int, default=0, help="default: the config's (224)")
    ap.add_argument("--test-patches", type=int, default=0, help="eval crops per image (default: config's, 20)")
    ap.add_argument("--loss", default=None, choices=("l1", "l1+rank"), help="default: the config's (l1)")
    ap.add_argument("--rank-weight", type=float, default=0.3, help="rank-loss weight with --loss l1+rank")
    ap.add_argument("--color-jitter", action="store_true", help="colour-jitter every batch, as the loop would")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compare-naive", action="store_true", help="also time the per-image target network")
    ap.add_argument("--naive-impl", default="module", choices=("module", "functional"),
                    help="naive target network: target_forward_naive (module) or per-image F.linear")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (table on stderr)")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    device = torch.device("cuda" if (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()))
                          else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    sizes = [s.strip() for s in (args.sizes or ("tiny,small,base" if device.type == "cuda" else "nano,micro,mini"))
             .split(",") if s.strip()]
    rows = []
    for size in sizes:
        rows.append(bench_size(size, args, device))
        print(f"  {size}: {rows[-1]}", file=sys.stderr, flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    out = {"device": device.type, "device_name": name, "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "compile": bool(args.compile),
           "warmup": args.warmup, "repeats": args.repeats, "rows": rows}
    stream = sys.stderr if args.json else sys.stdout
    print(f"\nmodel step on {device.type} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after {args.warmup} warm-up", file=stream)
    hdr = f"{'size':<7}{'params M':>9}{'batch':>6}{'patch':>6}{'train patch/s':>14}{'eval img/s':>11}"
    if args.compare_naive:
        hdr += f"{'naive train':>12}{'x':>7}{'naive eval':>11}{'x':>7}"
    hdr += f"{'GPU util %':>11}"
    print(hdr, file=stream)
    for r in rows:
        line = (f"{r['size']:<7}{r['params_m']:>9.2f}{r['batch_size']:>6}{r['patch_size']:>6}"
                f"{r['train_patches_per_s']:>14.1f}{r['eval_images_per_s']:>11.2f}")
        if args.compare_naive:
            line += (f"{r['naive_train_patches_per_s']:>12.1f}{r['train_ratio_vs_naive']:>6.2f}x"
                     f"{r['naive_eval_images_per_s']:>11.2f}{r['eval_ratio_vs_naive']:>6.2f}x")
        line += f"{r['gpu_util_pct'] if r['gpu_util_pct'] is not None else '-':>11}"
        print(line, file=stream)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
