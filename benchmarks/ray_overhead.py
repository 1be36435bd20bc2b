"""Ray Train overhead: the same short training run through Ray Train (1 worker) and called directly.

Both runs execute ``swiniqa.training.loop.train_worker`` with the same loop config (demo data, a small
CPU config, the same torch thread count), in-process with a ``LocalSession`` (what
``train_in_process`` does) and through ``make_trainer(...).fit()`` (what ``swiniqa train`` runs,
minus the progress queue). Only the session's ``report`` is wrapped to stamp the time each epoch's
report starts, so the per-epoch time after start-up is measured two ways:

* cycle — report-to-report wall time (epoch n's training + validation + epoch n-1's checkpoint write
  and report): everything a run pays per epoch once started. This is the headline ``ratio``.
* compute — the loop's own ``epoch_time_s`` metric (training + validation, no reporting).

The first epoch (start-up, warm-up, image decode into the cache) is excluded; figures are medians over
the remaining epochs (and over ``--repeats`` runs of each, alternating which goes first).
Ray start-up (``ray.init`` + worker group) is reported separately. ``--ray-init no-dashboard`` starts
Ray without the dashboard (an experiment: on a 2-core machine its helper processes take a few % of
the cores that training uses).

    python benchmarks/ray_overhead.py [--epochs 5] [--max-images 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Optional

for _k, _v in {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0"}.items():
    os.environ.setdefault(_k, _v)

STAMP = "_report_unix_s"
CPU = "_process_cpu_s"


def timed_ray_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """``train_worker`` under Ray with a session that stamps each report (runs on the Ray worker)."""
    import time as _time

    from swiniqa.training.loop import train_worker
    from swiniqa.training.session import RaySession

    import torch

    stamps: list[dict[str, float]] = []

    class TimedRaySession(RaySession):
        def report(self, metrics, write):
            stamps.append({"epoch": metrics["epoch"], STAMP: _time.time(), CPU: _time.process_time(),
                           "epoch_time_s": metrics["epoch_time_s"]})
            super().report(metrics, write)

    final = train_worker(loop_config["input"], TimedRaySession())
    # Result.metrics_dataframe only keeps the retained checkpoints' rows: return every stamp instead.
    return {**final, "_stamps": stamps, "_torch_threads": torch.get_num_threads()}


def run_direct(cfg, splits, run_dir: str) -> tuple[list[dict], float]:
    from swiniqa.layout import TENSORBOARD_DIR
    from swiniqa.training.loop import train_worker
    from swiniqa.training.session import LocalSession
    from swiniqa.training.trainer import worker_input

    class TimedLocalSession(LocalSession):
        def report(self, metrics, write):
            stamp = {STAMP: time.time(), CPU: time.process_time()}
            super().report(metrics, write)
            self.reports[-1].update(stamp)

    t0 = time.time()
    # the body of train_in_process, with the timed session
    inp = worker_input(cfg, splits=splits, tensorboard=os.path.join(run_dir, TENSORBOARD_DIR))
    session = TimedLocalSession(run_dir, resume=False)
    train_worker(inp, session)
    return session.reports, t0


def run_ray(cfg, splits, output: str, name: str, cpus: int, minimal: bool = False
            ) -> tuple[list[dict], float, float, Any]:
    import ray

    from swiniqa.ray_runtime import QUIET_ENV, ensure_ray
    from swiniqa.training.trainer import make_trainer

    t0 = time.time()
    if minimal and not ray.is_initialized():
        # experiment: ensure_ray's settings without the dashboard (and its ~10 helper processes)
        for k, v in QUIET_ENV.items():
            os.environ.setdefault(k, v)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    else:
        ensure_ray(num_cpus=cpus)
    t_ray = time.time() - t0
    trainer, _ = make_trainer(cfg.replace(name=name), name, output, splits)
    trainer.train_loop_per_worker = timed_ray_worker
    t1 = time.time()
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"Ray run failed: {result.error}")
    final = result.return_value or {}
    if "_stamps" not in final:
        raise RuntimeError("the Ray run returned no timing stamps")
    return final["_stamps"], t1, t_ray, final.get("_torch_threads")


def per_epoch(reports: list[dict], t_start: float) -> dict[str, Any]:
    reports = sorted(reports, key=lambda r: r["epoch"])
    stamps = [float(r[STAMP]) for r in reports]
    cpu = [float(r[CPU]) for r in reports]
    cycles = [b - a for a, b in zip(stamps, stamps[1:])]
    compute = [float(r["epoch_time_s"]) for r in reports[1:]]
    return {"cycles": cycles, "compute": compute, "first_report_s": stamps[0] - t_start,
            "cpu": [b - a for a, b in zip(cpu, cpu[1:])], "epochs_seen": [int(r["epoch"]) for r in reports],
            "first_epoch_s": float(reports[0]["epoch_time_s"])}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="per-epoch time through Ray Train vs the same loop in-process")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-images", type=int, default=128, help="images per split (default 128)")
    ap.add_argument("--model-size", default="nano")
    ap.add_argument("--patch-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-patches", type=int, default=2)
    ap.add_argument("--test-patches", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=0, help="Ray CPUs = the worker's CPUs = torch threads "
                                                      "(default: all cores)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each (alternating order)")
    ap.add_argument("--ray-init", default="ensure_ray", choices=("ensure_ray", "no-dashboard"),
                    help="start Ray with swiniqa's ensure_ray (default) or the same without the dashboard")
    ap.add_argument("--data-root", default=None, help="demo data folder (default: the cached demo set)")
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (table on stderr)")
    return ap


def _run_both(args, cfg, splits, work: str, cpus: int) -> tuple[dict[str, list[dict[str, Any]]], Optional[float]]:
    """Each mode ``args.repeats`` times, alternating which goes first: (per-epoch stats by mode, ray.init s)."""
    import torch

    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "ray": []}
    ray_init_s = None
    for r in range(args.repeats):
        for mode in (("direct", "ray") if r % 2 == 0 else ("ray", "direct")):
            t_wall = time.time()
            if mode == "direct":
                reports, t0 = run_direct(cfg, splits, os.path.join(work, f"direct-{r}"))
                startup, threads = 0.0, torch.get_num_threads()
            else:
                reports, t0, t_ray, threads = run_ray(cfg, splits, work, f"ray-{r}", cpus,
                                                      minimal=args.ray_init == "no-dashboard")
                ray_init_s = t_ray if ray_init_s is None else ray_init_s
                startup = t_ray
            pe = per_epoch(reports, t0)
            pe["wall_s"] = time.time() - t_wall
            pe["startup_s"] = startup
            pe["torch_threads"] = threads
            if pe["epochs_seen"] != list(range(1, args.epochs + 1)):
                raise RuntimeError(f"{mode} run reported epochs {pe['epochs_seen']}")
            runs[mode].append(pe)
            print(f"  run {r + 1} {mode:<6} wall {pe['wall_s']:6.1f} s  first report after "
                  f"{pe['first_report_s']:5.1f} s  cycles {' '.join(f'{c:.2f}' for c in pe['cycles'])}  "
                  f"epoch_time_s {' '.join(f'{c:.2f}' for c in pe['compute'])}  "
                  f"process CPU s/epoch {' '.join(f'{c:.2f}' for c in pe['cpu'])}  "
                  f"torch threads {threads}", file=sys.stderr, flush=True)
    return runs, ray_init_s


def _summary(runs: dict[str, list[dict[str, Any]]], ray_init_s: Optional[float], args, rep: dict,
             cpus: int) -> dict[str, Any]:
    def med(mode: str, key: str) -> float:
        return statistics.median(x for pe in runs[mode] for x in pe[key])

    d_cyc, r_cyc = med("direct", "cycles"), med("ray", "cycles")
    d_cmp, r_cmp = med("direct", "compute"), med("ray", "compute")
    return {
        "direct_epoch_s": round(d_cyc, 3), "ray_epoch_s": round(r_cyc, 3), "ratio": round(r_cyc / d_cyc, 3),
        "direct_epoch_compute_s": round(d_cmp, 3), "ray_epoch_compute_s": round(r_cmp, 3),
        "ratio_compute": round(r_cmp / d_cmp, 3),
        "direct_epoch_cpu_s": round(med("direct", "cpu"), 3), "ray_epoch_cpu_s": round(med("ray", "cpu"), 3),
        "torch_threads": {m: runs[m][0]["torch_threads"] for m in runs},
        "direct_first_report_s": round(statistics.median(pe["first_report_s"] for pe in runs["direct"]), 2),
        "ray_first_report_s": round(statistics.median(pe["first_report_s"] for pe in runs["ray"]), 2),
        "ray_init_s": round(ray_init_s or 0.0, 2),
        "direct_wall_s": round(statistics.median(pe["wall_s"] for pe in runs["direct"]), 1),
        "ray_wall_s": round(statistics.median(pe["wall_s"] for pe in runs["ray"]), 1),
        "ray_init": args.ray_init, "epochs": args.epochs, "repeats": args.repeats, "train_images": rep["train"], "val_images": rep["val"],
        "model_size": args.model_size, "patch_size": args.patch_size, "batch_size": args.batch_size,
        "train_patches": args.train_patches, "cpus": cpus, "machine": platform.processor() or platform.machine(),
    }


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is start-up)")

    import torch

    from swiniqa.config import preset
    from swiniqa.data.demo import write_demo
    from swiniqa.training.trainer import prepare_splits

    cpus = args.cpus or os.cpu_count() or 1
    torch.set_num_threads(cpus)  # the in-process loop uses the current count; Ray's gets cpus_per_worker
    root = write_demo(args.data_root) if args.data_root else write_demo()
    work = tempfile.mkdtemp(prefix="swiniqa-rayoverhead-")
    cfg = preset("demo").replace(
        model_size=args.model_size, patch_size=args.patch_size, batch_size=args.batch_size, epochs=args.epochs,
        max_images=args.max_images, train_patches=args.train_patches, test_patches=args.test_patches,
        data_root=str(root), output=work, cpus_per_worker=float(cpus), num_workers=1, use_gpu=False,
        warmup_epochs=0, patience=1000)
    splits, rep = prepare_splits(cfg, check=False, progress=False)
    try:
        runs, ray_init_s = _run_both(args, cfg, splits, work, cpus)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = _summary(runs, ray_init_s, args, rep, cpus)
    stream = sys.stderr if args.json else sys.stdout
    print(f"\nRay Train (1 worker, {cpus} CPUs) vs in-process: {args.model_size} {args.patch_size}px, "
          f"{rep['train']} train / {rep['val']} val images, {args.epochs} epochs, {args.repeats} run(s) each; "
          f"median over epochs 2..{args.epochs}", file=stream)
    print(f"{'':<8}{'epoch cycle s':>14}{'epoch_time_s':>14}{'1st report s':>14}{'wall s':>9}", file=stream)
    for m in ("direct", "ray"):
        print(f"{m:<8}{out[m + '_epoch_s']:>14.3f}{out[m + '_epoch_compute_s']:>14.3f}"
              f"{out[m + '_first_report_s']:>14.2f}{out[m + '_wall_s']:>9.1f}", file=stream)
    print(f"{'ray/dir':<8}{out['ratio']:>13.3f}x{out['ratio_compute']:>13.3f}x   (ray.init {out['ray_init_s']:.1f} s)",
          file=stream)
    if args.json:
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
