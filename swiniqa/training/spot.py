"""Spot-ready training: elastic worker counts, reclaim notices, and what a run says about them.

Ray Train does the mechanics (``ScalingConfig(num_workers=(min, max))`` restarts the worker group on the
nodes left after a loss and again with more workers when capacity returns; ``get_preemption_info`` tells
the workers that a node is about to be reclaimed). This module holds swiniqa's side: the Ray configs of a
run (:func:`scaling_config`, :func:`failure_config`), the resume record and progress lines a restarted
attempt reports (:func:`resume_event`, :func:`notice_line`), and the Tune callback that forwards only
epoch results (:func:`epoch_report_callback`), so a mid-epoch checkpoint never counts as an iteration.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from swiniqa.config import TrainConfig


def scaling_config(cfg: TrainConfig, cpus: float):
    """Ray's ``ScalingConfig``: ``num_workers`` workers, or ``(min_workers, num_workers)`` for an elastic run
    (then ``resize_check_s`` between Ray's checks for room to grow)."""
    import ray.train

    kw: dict[str, Any] = dict(use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cpus})
    if cfg.min_workers:
        return ray.train.ScalingConfig(num_workers=(cfg.min_workers, cfg.num_workers),
                                       elastic_resize_monitor_interval_s=cfg.resize_check_s, **kw)
    return ray.train.ScalingConfig(num_workers=cfg.num_workers, **kw)


def workers_text(cfg: TrainConfig) -> str:
    """``"2"``, or ``"1-2"`` for an elastic run."""
    return f"{cfg.min_workers}-{cfg.num_workers}" if cfg.min_workers else str(cfg.num_workers)


def failure_config(cfg: TrainConfig):
    """Ray's ``FailureConfig``: ``max_failures`` restarts after real failures; restarts after reclaim notices
    draw on their own budget, ``max_preemptions`` (Ray's default, unlimited, when -1)."""
    import ray.train

    if cfg.max_preemptions >= 0:
        return ray.train.FailureConfig(max_failures=cfg.max_failures, max_preemption_failures=cfg.max_preemptions)
    return ray.train.FailureConfig(max_failures=cfg.max_failures)


def _previous_workers(st: dict[str, Any]) -> Optional[int]:
    """Workers of the attempt that wrote checkpoint state ``st`` (older checkpoints: its last epoch's)."""
    if st.get("workers"):
        return int(st["workers"])
    history = st.get("history") or []
    return int(history[-1]["workers"]) if history and history[-1].get("workers") else None


def resume_event(st: dict[str, Any], start_epoch: int, start_step: int, world: int,
                 same_fit: bool = True) -> tuple[dict[str, Any], Optional[str]]:
    """What an attempt that resumes from checkpoint state ``st`` reports about itself: (its record, progress
    line or None).

    The record ``{"epoch", "step", "from", "to", "why"}`` (``epoch`` 1-based: the epoch it resumes in, ``step``
    the global batches of it already trained) goes into the run's ``resumes`` (:func:`resizes`: those whose
    size changed). ``why``: "reclaim notice" when the attempt that wrote the checkpoint had received one, else
    "node lost" for fewer workers, "capacity back" for more, "restart" for the same number (a worker or node
    failed and a spare took its place), "resumed" when the checkpoint is another fit's (the run continued by
    hand, ``--name`` reused or ``tune --resume``).
    """
    before = _previous_workers(st) or world
    where = f"epoch {start_epoch + 1}" + (f" step {start_step}" if start_step else "")
    notice = bool(st.get("reclaim_notice"))
    if notice:
        why = "reclaim notice"
    elif before != world:
        why = "node lost" if world < before else "capacity back"
    else:
        why = "restart" if same_fit else "resumed"
    event = {"epoch": start_epoch + 1, "step": start_step, "from": before, "to": world, "why": why}
    if before != world:
        return event, f"workers {before} -> {world} ({why}): resuming at {where}"
    if notice or start_step:
        return event, f"resuming at {where} on {world} worker(s)" + (" after a reclaim notice" if notice else "")
    return event, None


def resizes(resumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The resumes that changed the number of workers (an elastic run's ``resizes`` in ``--json``)."""
    return [r for r in resumes if r.get("from") != r.get("to")]


def resumes_text(resumes: list[dict[str, Any]]) -> str:
    """``"reclaim notice at epoch 1 step 12, restart at epoch 2"``: a run's resumes in one phrase; sizes are
    named when they changed (``node lost at epoch 3: 2 -> 1 workers``)."""
    parts = []
    for r in resumes:
        where = f"epoch {r['epoch']}" + (f" step {r['step']}" if r.get("step") else "")
        size = f": {r['from']} -> {r['to']} workers" if r.get("from") != r.get("to") else ""
        parts.append(f"{r['why']} at {where}{size}")
    return ", ".join(parts)


def notice_line(notice: dict[str, Any], epoch: int, step: int, steps: int, seconds: float) -> str:
    """The progress line of a reclaim notice: which node, how long before the deadline, what was saved."""
    nodes = ", ".join(f"{n[:12]} (rank{'s' if len(r) > 1 else ''} {','.join(map(str, r))})"
                      for n, r in notice.get("nodes", {}).items()) or "a worker's node"
    deadline = notice.get("deadline_ms")
    left = f", {deadline / 1000 - time.time():.0f} s before its deadline" if deadline else ""
    return (f"reclaim notice for {nodes}: checkpoint of epoch {epoch + 1} step {step}/{steps} saved in "
            f"{seconds:.1f} s{left}")


def is_mid_epoch(metrics: dict[str, Any]) -> bool:
    """A mid-epoch (reclaim notice) report, not an epoch's result."""
    return bool(metrics.get("mid_epoch_step"))


def epoch_report_callback():
    """Ray's ``TuneReportCallback`` that forwards epoch results only: a mid-epoch checkpoint's report would
    otherwise be a Tune iteration without ``val_srcc`` (ASHA's time attribute counts iterations)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class EpochReportCallback(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics and is_mid_epoch(metrics[0]):
                return
            super().after_report(run_context, metrics, checkpoint)

    return EpochReportCallback()


__all__ = ["scaling_config", "workers_text", "failure_config", "resume_event", "resizes", "resumes_text",
           "notice_line", "is_mid_epoch", "epoch_report_callback"]
