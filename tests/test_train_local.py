"""The per-worker loop run in-process (no Ray): resume, non-finite loss, best-checkpoint selection."""

import math

import pytest

from swiniqa.errors import TrainingError
from swiniqa.training import checkpoint as ckio
from swiniqa.training.loop import train_in_process
from swiniqa.training.trainer import prepare_splits


@pytest.fixture()
def small(tiny_cfg):
    cfg = tiny_cfg.replace(max_images=16, epochs=2, batch_size=8, train_patches=1, test_patches=1)
    splits, _ = prepare_splits(cfg, check=False)
    return cfg, splits


def test_loop_runs_and_resumes_without_repeating_epochs(small, tmp_path):
    cfg, splits = small
    final, reports = train_in_process(cfg, str(tmp_path / "run"), splits=splits)
    assert [r["epoch"] for r in reports] == [1, 2] and final["epochs_run"] == 2
    assert math.isfinite(final["test_srcc"]) or math.isnan(final["test_srcc"])
    # a longer run with the same folder resumes at epoch 3
    final2, reports2 = train_in_process(cfg.replace(epochs=3), str(tmp_path / "run"), splits=splits)
    assert [r["epoch"] for r in reports2] == [3]
    best = ckio.resolve_checkpoint(tmp_path / "run")
    assert ckio.read_metrics(best)["val_srcc"] == max(r["val_srcc"] for r in reports + reports2
                                                      if math.isfinite(r["val_srcc"]))


def test_non_finite_loss_stops_with_a_reason_and_no_checkpoint(small, tmp_path):
    cfg, splits = small
    with pytest.raises(TrainingError, match="non-finite"):
        train_in_process(cfg.replace(lr=1e30, grad_clip=0.0, warmup_epochs=0), str(tmp_path / "nan"), splits=splits)
    assert ckio.find_checkpoints(tmp_path / "nan") == []
