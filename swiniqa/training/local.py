"""The training loop without Ray: one process, for tests, benchmarks and notebooks.

    from swiniqa.training.local import train_in_process
    final, reports = train_in_process(preset("demo").replace(epochs=2), "runs/quick")
"""

from __future__ import annotations

import os
from typing import Any, Optional

from swiniqa.config import TrainConfig
from swiniqa.layout import TENSORBOARD_DIR
from swiniqa.training.loop import train_worker
from swiniqa.training.session import LocalSession
from swiniqa.training.trainer import worker_input


def train_in_process(cfg: TrainConfig, run_dir: Optional[str] = None, splits=None, resume: bool = True
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the per-worker loop in this process (no Ray), checkpoints in ``run_dir``.

    Args:
        cfg: the run's config (``num_workers`` is ignored: one process).
        run_dir: folder for ``checkpoint_epochNNNN`` and ``tensorboard/``; ``None`` keeps nothing on disk.
        splits: ``{"train", "val", "test"}`` record lists (default: read and split ``cfg``'s dataset).
        resume: continue from the latest checkpoint in ``run_dir``.

    Returns:
        ``(final, reports)``: the loop's final summary and every epoch's reported metrics.

    Raises:
        DataError: the dataset cannot be read or split.
        TrainingError: the training loss became non-finite.
    """
    inp = worker_input(cfg, splits=splits, tensorboard=os.path.join(run_dir, TENSORBOARD_DIR) if run_dir else None,
                       run_dir=run_dir)
    session = LocalSession(run_dir, resume=resume)
    final = train_worker(inp, session)
    return final, session.reports


__all__ = ["train_in_process"]
