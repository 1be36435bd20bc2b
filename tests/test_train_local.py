"""The per-worker loop run in-process (no Ray): resume, non-finite loss, best-checkpoint selection."""

import math

import pytest
from learnable_data import noise_config, write_noise_dataset

from swiniqa.errors import TrainingError
from swiniqa import checkpoints
from swiniqa.training.local import train_in_process
from swiniqa.training.trainer import prepare_splits


pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def noise_root(tmp_path_factory):
    return write_noise_dataset(tmp_path_factory.mktemp("noise"), n=72)[0]


@pytest.fixture()
def small(noise_root):
    cfg = noise_config(noise_root, max_images=16, epochs=2, batch_size=8, train_patches=1, test_patches=1)
    splits, _ = prepare_splits(cfg, check=False)
    return cfg, splits


def test_loop_runs_and_resumes_without_repeating_epochs(small, tmp_path):
    cfg, splits = small
    final, reports = train_in_process(cfg, str(tmp_path / "run"), splits=splits)
    assert [r["epoch"] for r in reports] == [1, 2] and final["epochs_run"] == 2
    assert -1.0 <= final["test_srcc"] <= 1.0  # the selected weights were tested (NaN fails here)
    # a longer run with the same folder resumes at epoch 3 and carries the first run's history on
    final2, reports2 = train_in_process(cfg.replace(epochs=3), str(tmp_path / "run"), splits=splits)
    assert [r["epoch"] for r in reports2] == [3]
    assert [h["epoch"] for h in final2["history"]] == [1, 2, 3]
    assert [h["train_loss"] for h in final2["history"][:2]] == [r["train_loss"] for r in reports]
    # (that the resumed epochs equal an uninterrupted run's: test_core_behaviour.py)
    best = checkpoints.resolve_checkpoint(tmp_path / "run")
    assert checkpoints.read_metrics(best)["val_srcc"] == max(r["val_srcc"] for r in reports + reports2
                                                      if math.isfinite(r["val_srcc"]))


def test_non_finite_loss_stops_with_a_reason_and_no_checkpoint(small, tmp_path):
    cfg, splits = small
    with pytest.raises(TrainingError, match="non-finite"):
        train_in_process(cfg.replace(lr=1e30, grad_clip=0.0, warmup_epochs=0), str(tmp_path / "nan"), splits=splits)
    assert checkpoints.find_checkpoints(tmp_path / "nan") == []


def test_patience_stops_the_run_and_the_latest_checkpoint_keeps_the_best_weights(small, tmp_path):
    """A frozen model (lr 1e-30: no weight moves) never improves after epoch 1: patience 1 stops it after
    epoch 2 of 4, and epoch 2's checkpoint carries epoch 1's weights as best_model.safetensors."""
    import torch

    cfg, splits = small
    final, reports = train_in_process(cfg.replace(lr=1e-30, epochs=4, patience=1), str(tmp_path / "p"), splits=splits)
    assert [r["epoch"] for r in reports] == [1, 2]
    assert final["stopped_early"] is True and final["epochs_run"] == 2 and final["best_epoch"] == 1
    assert reports[1]["val_srcc"] == reports[0]["val_srcc"]
    first, second = tmp_path / "p" / "checkpoint_epoch0001", tmp_path / "p" / "checkpoint_epoch0002"
    assert not (first / "best_model.safetensors").exists()  # epoch 1 was the best: its own weights are
    best = checkpoints.read_weights(second, best=True)
    own = checkpoints.read_weights(first)
    assert (second / "best_model.safetensors").is_file() and best.keys() == own.keys()
    assert all(torch.equal(best[k], own[k]) for k in own)



def test_ray_keeps_the_best_epochs_checkpoint_when_later_epochs_tie(small, tmp_path):
    """A frozen model scores the same val SRCC every epoch; the best epoch is the first. Ray keeps the
    *later* of two equal scores, so ranking by val SRCC evicted epoch 1's folder (found by a Tune sweep:
    the trial had no checkpoint to test). Ranked by ``checkpoint_score``, Ray's own rule (its sorted
    insert, ``num_to_keep=2`` + the latest) keeps the best epoch's folder."""
    from types import SimpleNamespace

    from ray.train._internal.checkpoint_manager import _insert_into_sorted_list

    from swiniqa.training.session import CHECKPOINT_SCORE

    cfg, splits = small
    final, reports = train_in_process(cfg.replace(lr=1e-30, epochs=3, patience=100), str(tmp_path / "f"),
                                      splits=splits)
    assert len({r["val_srcc"] for r in reports}) == 1 and final["best_epoch"] == 1

    def kept(attr: str) -> set[int]:
        ranked, index = [], {}
        for i, r in enumerate(reports):
            item = SimpleNamespace(checkpoint=r["epoch"], metrics=r)
            index[item.checkpoint] = i
            _insert_into_sorted_list(ranked, item, key=lambda x: x.metrics[attr], checkpoint_to_report_index=index)
        return {x.checkpoint for x in ranked[-2:]} | {reports[-1]["epoch"]}

    assert 1 not in kept("val_srcc")  # the failure this score exists for
    assert kept(CHECKPOINT_SCORE) == {1, 3}
