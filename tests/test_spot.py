"""Spot-ready training without Ray: a reclaim notice's mid-epoch checkpoint, and the run resumed from it.

The in-process loop runs the per-worker code Ray Train runs; a session stands in for Ray's reclaim notice
(``get_preemption_info``) at a chosen step, and the worker is "killed" right after the just-in-time
checkpoint. The restarted run must continue from that step (the plan's first batches skipped, not decoded)
and equal the uninterrupted run. The real thing, on Ray's simulated multi-node cluster: tests/test_multinode.py.
"""

from __future__ import annotations

import os

import pytest
import torch
from learnable_data import noise_config, write_noise_dataset

pytestmark = pytest.mark.core

NOTICE_EPOCH, NOTICE_STEP = 1, 3  # 0-based epoch, global batches done when the notice comes


class Killed(Exception):
    """The reclaimed node's worker dies (here: right after its just-in-time checkpoint)."""


def _reclaimed_session(run_dir: str):
    from swiniqa.training.session import LocalSession

    class Reclaimed(LocalSession):
        """Ray says a node goes away when asked after global batch NOTICE_STEP of epoch NOTICE_EPOCH."""

        epoch = -1
        asked: list[tuple[int, int]] = []

        def before_epoch(self, epoch):
            self.epoch, self.steps = epoch, 0

        def preemption_notice(self):
            self.steps += 1  # asked after every step (preemption_check_steps=1)
            self.asked.append((self.epoch, self.steps))
            if (self.epoch, self.steps) == (NOTICE_EPOCH, NOTICE_STEP):
                return {"deadline_ms": None, "nodes": {"node-a": [0]}}
            return None

        def report(self, metrics, write, dir_name=None):
            super().report(metrics, write, dir_name)
            if metrics.get("mid_epoch_step"):
                raise Killed(dir_name)

    return Reclaimed(run_dir)


@pytest.fixture(scope="module")
def spot_runs(tmp_path_factory):
    """The uninterrupted run, and the same run reclaimed mid-epoch then restarted (2 epochs each)."""
    from swiniqa.training import loop
    from swiniqa.training.local import train_in_process
    from swiniqa.training.trainer import worker_input

    tmp = tmp_path_factory.mktemp("spot")
    root, _ = write_noise_dataset(tmp / "data", n=40, size=72)
    # dropout and drop-path on: the per-step seeding must make the resumed draws the uninterrupted ones
    cfg = noise_config(root, epochs=2, batch_size=8, train_patches=2, dropout=0.3, drop_path=0.2,
                       preemption_check_steps=1)
    full_final, full = train_in_process(cfg, str(tmp / "full"))
    run = str(tmp / "spot")
    session = _reclaimed_session(run)
    with pytest.raises(Killed):
        loop.train_worker(worker_input(cfg, run_dir=run), session)
    steps: list[int] = []
    real = loop.train_step
    loop.train_step = lambda *a, **k: (steps.append(1), real(*a, **k))[1]
    try:
        final, resumed = train_in_process(cfg, run)
    finally:
        loop.train_step = real
    return dict(cfg=cfg, tmp=tmp, run=run, full=full, full_final=full_final, final=final, resumed=resumed,
                steps=len(steps), asked=session.asked)


def test_reclaim_notice_checkpoints_mid_epoch_and_the_restart_continues_from_that_step(spot_runs):
    from swiniqa.checkpoints import read_metrics, read_state, resolve_checkpoint

    run, full = spot_runs["run"], spot_runs["full"]
    mid = os.path.join(run, f"checkpoint_epoch{NOTICE_EPOCH + 1:04d}_step{NOTICE_STEP:05d}")
    m = read_metrics(mid)
    assert m["mid_epoch_step"] == NOTICE_STEP and m["epoch"] == NOTICE_EPOCH and "val_srcc" not in m
    st = read_state(mid)
    assert st["mid_epoch"]["step"] == NOTICE_STEP and st["epoch"] == NOTICE_EPOCH - 1
    assert st["reclaim_notice"] == {"deadline_ms": None, "nodes": {"node-a": [0]}}
    # the restart trained only the rest of the reclaimed epoch
    steps_per_epoch = sum(1 for e, _ in spot_runs["asked"] if e == 0)
    assert spot_runs["steps"] == steps_per_epoch - NOTICE_STEP > 0
    assert [r["epoch"] for r in spot_runs["resumed"]] == [2]
    # and equals the uninterrupted run: the reclaimed epoch's loss (its first steps' sum carried in the
    # checkpoint) and validation
    for got, want in zip(spot_runs["resumed"], full[1:]):
        for k in ("train_loss", "val_srcc", "val_plcc"):
            assert got[k] == pytest.approx(want[k], abs=1e-6), (k, got["epoch"])
    assert [h["epoch"] for h in spot_runs["final"]["history"]] == [1, 2]  # no epoch twice
    # the mid-epoch checkpoint never stands for the run: eval/pull pick the best epoch's folder
    assert "_step" not in resolve_checkpoint(run).name


def test_resumed_weights_equal_the_uninterrupted_weights(spot_runs):
    """Last epoch's weights of the reclaimed-and-restarted run against the uninterrupted run's (1e-6;
    measured: identical on this CPU)."""
    from swiniqa.checkpoints import read_weights

    tmp = spot_runs["tmp"]
    a = read_weights(tmp / "full" / "checkpoint_epoch0002")
    b = read_weights(tmp / "spot" / "checkpoint_epoch0002")
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst <= 1e-6, worst


def test_mid_epoch_checkpoint_is_below_every_epochs_score():
    """Ray keeps the best by score plus the latest: a reclaim checkpoint must never outrank an epoch's."""
    from swiniqa.training.session import MID_EPOCH_SCORE, checkpoint_score

    assert MID_EPOCH_SCORE < min(checkpoint_score(-1.0, False), checkpoint_score(float("nan"), False),
                                 checkpoint_score(-1.0, True))


def test_resume_event_says_why_the_run_resumed():
    from swiniqa.training.spot import resizes, resume_event, resumes_text

    hist = [{"epoch": 1, "workers": 2}]
    assert resume_event({"history": hist, "workers": 2}, 1, 0, 1)[0] == \
        {"epoch": 2, "step": 0, "from": 2, "to": 1, "why": "node lost"}
    assert resume_event({"history": hist, "workers": 1}, 3, 0, 2)[0]["why"] == "capacity back"
    got, line = resume_event({"workers": 2, "reclaim_notice": {"nodes": {}}}, 2, 5, 1)
    assert got["why"] == "reclaim notice" and line.endswith("resuming at epoch 3 step 5")
    got, line = resume_event({"workers": 2, "reclaim_notice": {"nodes": {}}}, 2, 5, 2)
    assert got == {"epoch": 3, "step": 5, "from": 2, "to": 2, "why": "reclaim notice"}
    assert "after a reclaim notice" in line
    # the same size again: a failure a spare node absorbed, or a run continued by hand (another fit)
    assert resume_event({"history": hist}, 1, 0, 2) == ({"epoch": 2, "step": 0, "from": 2, "to": 2, "why": "restart"},
                                                        None)
    assert resume_event({"history": hist}, 1, 0, 2, same_fit=False)[0]["why"] == "resumed"
    shrink = {"epoch": 4, "step": 0, "from": 2, "to": 1, "why": "node lost"}
    assert resumes_text([got, shrink]) == "reclaim notice at epoch 3 step 5, node lost at epoch 4: 2 -> 1 workers"
    assert resizes([got, shrink]) == [shrink]  # the resizes of --json: the resumes that changed the size


def test_worker_range_flag_and_config():
    from swiniqa.config import TrainConfig
    from swiniqa.errors import ConfigError

    cfg = TrainConfig().replace(num_workers="1-3", batch_size=8)
    assert (cfg.min_workers, cfg.num_workers) == (1, 3)
    for bad, why in (("3-1", "MIN <= MAX"), ("a-2", "N or MIN-MAX")):
        with pytest.raises(ConfigError, match=why):
            TrainConfig().replace(num_workers=bad)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig().replace(num_workers="1-4", batch_size=2)
    with pytest.raises(ConfigError, match="min_workers"):
        TrainConfig().replace(num_workers=2, min_workers=3)
