"""Where a training loop runs: inside Ray Train, or in-process (tests, benchmarks, notebooks).

The loop only talks to a ``Session``: rank, world size, the checkpoint to resume from, and ``report``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Optional

from swiniqa.layout import checkpoint_dir_name

#: The metric Ray Train ranks checkpoints by (``CheckpointConfig(num_to_keep=1)`` keeps the best + the latest).
CHECKPOINT_SCORE = "checkpoint_score"


#: Score of a mid-epoch checkpoint (a reclaim notice's): below every epoch's (:func:`checkpoint_score` >= -3),
#: so Ray's retention never keeps it in place of the best epoch's folder; it lives while it is the latest.
MID_EPOCH_SCORE = -4.0


def checkpoint_score(val_srcc: float, improved: bool) -> float:
    """Rank of an epoch's checkpoint: its val SRCC when it set a new best, else below every such epoch.

    Ray keeps the later of two checkpoints with equal scores, but the best epoch is the *first* to reach
    the best val SRCC (later ties do not improve). Ranked by val SRCC alone, an epoch that only ties the
    best (a frozen or very low-lr model: the ranks do not move) evicted the best epoch's folder, and the
    study had no checkpoint to test, pull or evaluate for that trial. SRCC lies in [-1, 1], so -2 puts a
    non-improving epoch below every improving one; the top checkpoint is always the best epoch's.
    """
    if improved:
        return float(val_srcc)
    return float(val_srcc) - 2.0 if val_srcc == val_srcc else -3.0


class Session:
    rank = 0
    world = 1
    under_ray = False

    def latest_checkpoint(self) -> Optional[str]:
        return None

    def before_epoch(self, epoch: int) -> None:
        """Called by the loop at the start of each (0-based) epoch; nothing by default."""

    def preemption_notice(self) -> Optional[dict[str, Any]]:
        """``{"deadline_ms", "nodes": {node id: [ranks]}}`` when a worker's node is about to be reclaimed,
        else None. Under Ray a barrier: every rank asks after the same steps. Never outside Ray."""
        return None

    def report(self, metrics: dict[str, Any], write: Optional[Callable[[str], None]],
               dir_name: Optional[str] = None) -> None:
        """Report metrics; ``write(dir)`` fills a checkpoint folder (called on rank 0 only), named
        ``dir_name`` (default: the epoch's, ``checkpoint_epochNNNN``)."""
        raise NotImplementedError


class LocalSession(Session):
    """In-process: checkpoints go to ``<run_dir>/checkpoint_<epoch>``; keeps every report in memory."""

    def __init__(self, run_dir: Optional[str] = None, resume: bool = True):
        self.run_dir = run_dir
        self.reports: list[dict[str, Any]] = []
        self._resume = resume

    def latest_checkpoint(self) -> Optional[str]:
        if not (self._resume and self.run_dir and os.path.isdir(self.run_dir)):
            return None
        from swiniqa.checkpoints import find_checkpoints, read_metrics

        def order(c) -> tuple:  # a mid-epoch checkpoint comes after the previous epoch's
            m = read_metrics(c)
            return m.get("epoch", -1), m.get("mid_epoch_step", 0)

        cks = find_checkpoints(self.run_dir)
        return str(max(cks, key=order)) if cks else None

    def report(self, metrics, write, dir_name=None):
        self.reports.append(dict(metrics))
        if write is not None and self.run_dir:
            write(os.path.join(self.run_dir, dir_name or checkpoint_dir_name(metrics["epoch"])))


class RaySession(Session):
    under_ray = True

    def __init__(self, inject_failure_at_epoch: int = 0, fit_id: str = ""):
        import ray.train

        self._inject_at, self._fit_id = inject_failure_at_epoch, fit_id
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world = ctx.get_world_size()

    def latest_checkpoint(self) -> Optional[str]:
        import ray.train

        ck = ray.train.get_checkpoint()
        if ck is None:
            return None
        # Local storage: use the folder in place; remote: download once to a temp folder.
        fs_path = getattr(ck, "path", None)
        if fs_path and os.path.isdir(fs_path):
            return fs_path
        return ck.to_directory(tempfile.mkdtemp(prefix="swiniqa-resume-"))

    def before_epoch(self, epoch: int) -> None:
        """Testing aid (``--inject-failure-at-epoch N``): SIGKILL rank 0 once per run at the start of
        (1-based) epoch N, as the OOM killer or a preemption would. The marker (same node) makes the
        restarted attempt carry on; the pause lets Ray Train's controller, which polls workers every 2 s,
        register the checkpoint reported just before."""
        if not self._inject_at or self._inject_at != epoch + 1 or self.rank != 0:
            return
        import signal
        import time

        marker = os.path.join(tempfile.gettempdir(), f"swiniqa-injected-{self._fit_id}")
        if os.path.exists(marker):
            return
        open(marker, "w").close()
        time.sleep(5.0)
        os.kill(os.getpid(), signal.SIGKILL)

    def preemption_notice(self) -> Optional[dict[str, Any]]:
        import ray.train

        info = ray.train.get_preemption_info()
        if info is None:
            return None
        return {"deadline_ms": info.deadline_ms,
                "nodes": {str(n): [int(r) for r in ranks] for n, ranks in info.preempted_node_to_ranks.items()}}

    def report(self, metrics, write, dir_name=None):
        import ray.train

        with tempfile.TemporaryDirectory(prefix="swiniqa-ckpt-") as d:
            ckpt = None
            if write is not None and self.rank == 0:
                write(d)
                ckpt = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=ckpt,
                             checkpoint_dir_name=dir_name or checkpoint_dir_name(metrics["epoch"]))
