"""What a user of the core relies on, checked by behaviour rather than by shape (the gradient checks
of the model itself are in test_models.py):

* a short in-process training on learnable data ranks unseen images well above chance;
* an interrupted run resumed from its checkpoint equals the uninterrupted run, epoch by epoch;
* a checkpoint predicts in the training labels' units (through ``swiniqa predict``).

No Ray: the in-process loop (``train_in_process``) runs the same per-worker code as Ray Train.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from learnable_data import noise_config, write_noise_dataset

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted 3-epoch run (checkpoints of every epoch kept in-process), shared by the tests below."""
    from swiniqa.training.local import train_in_process

    tmp = tmp_path_factory.mktemp("learn")
    root, labels = write_noise_dataset(tmp / "data")
    cfg = noise_config(root)
    run = str(tmp / "full")
    final, reports = train_in_process(cfg, run)
    return {"cfg": cfg, "run": run, "final": final, "reports": reports, "labels": labels, "tmp": tmp}


def test_short_training_ranks_unseen_images_well_above_chance(trained):
    """3 epochs on 86 noisy images (4 patches each): validation SRCC on 36 unseen images (chance: 0 +- 0.17)
    must pass 0.6."""
    reports, final = trained["reports"], trained["final"]
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert all(math.isfinite(r["train_loss"]) for r in reports)
    assert final["best_val_srcc"] == max(r["val_srcc"] for r in reports)
    assert final["best_val_srcc"] > 0.6, [round(r["val_srcc"], 3) for r in reports]
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    # the test split (never used for selection) agrees
    assert final["test_srcc"] > 0.4


def test_resumed_run_equals_the_uninterrupted_run(trained):
    """Crash after epoch 1 (only its checkpoint survives), resume: epochs 2-3 and the test metrics equal
    the uninterrupted run's to 1e-6 (weights, optimiser, schedule and best-so-far all restored)."""
    from swiniqa.training.local import train_in_process

    full = trained["reports"]
    run = str(trained["tmp"] / "resumed")
    os.makedirs(run)
    shutil.copytree(os.path.join(trained["run"], "checkpoint_epoch0001"), os.path.join(run, "checkpoint_epoch0001"))
    final, reports = train_in_process(trained["cfg"], run)
    assert [r["epoch"] for r in reports] == [2, 3]
    for a, b in zip(full[1:], reports):
        for k in ("train_loss", "val_srcc", "val_plcc", "val_krcc", "best_val_srcc", "best_epoch", "lr_backbone",
                  "lr_head"):
            assert b[k] == pytest.approx(a[k], abs=1e-6), (a["epoch"], k)
    want = trained["final"]
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3]
    for ha, hb in zip(want["history"], final["history"]):
        for k in ("train_loss", "val_srcc", "val_plcc", "lr_backbone", "lr_head"):
            assert hb[k] == pytest.approx(ha[k], abs=1e-6), (ha["epoch"], k)
    for k in ("best_val_srcc", "best_epoch", "test_srcc", "test_plcc"):
        assert final[k] == pytest.approx(want[k], abs=1e-6), k
    assert final["epochs_run"] == 3


def test_checkpoint_predicts_in_the_training_labels_units(trained, tmp_path):
    """`swiniqa predict` on the run folder scores unseen images on the labels' 10..90 scale (not the
    standardised scale the loss sees), ordered like the labels."""
    from swiniqa.training.trainer import prepare_splits

    splits, _ = prepare_splits(trained["cfg"], check=False, progress=False)
    val = splits["val"]
    cmd = [sys.executable, "-m", "swiniqa.cli", "predict", "--checkpoint", trained["run"], "--json",
           *[r.path for r in val]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    scores = {os.path.basename(p["image"]): p["score"] for p in out["predictions"]}
    labels = trained["labels"]
    names = [os.path.basename(x.path) for x in val]
    pred = np.array([scores[n] for n in names])
    mos = np.array([labels[n] for n in names])
    train_mos = np.array([labels[os.path.basename(x.path)] for x in splits["train"]])
    assert mos.min() >= 10 and mos.max() <= 90
    # in units: centred near the training labels' mean, spread like them, within the label range
    assert abs(pred.mean() - train_mos.mean()) < 0.5 * train_mos.std(), (pred.mean(), train_mos.mean())
    assert pred.min() > 10 - 0.5 * train_mos.std() and pred.max() < 90 + 0.5 * train_mos.std()
    assert pred.std() > 0.2 * train_mos.std()
    from scipy.stats import spearmanr

    assert spearmanr(pred, mos)[0] > 0.5


@pytest.mark.parametrize("randomness", [{"dropout": 0.3, "drop_path": 0.2}, {"color_jitter": True}])
def test_resume_equals_uninterrupted_with_dropout_and_colour_jitter(trained, randomness):
    """The paper preset trains with dropout 0.3 and drop-path 0.2; the augment study with colour jitter."""
    from swiniqa.training.local import train_in_process

    tmp = trained["tmp"] / ("rng-" + "-".join(randomness))
    cfg = trained["cfg"].replace(epochs=2, train_patches=1, max_images=24, **randomness)
    _, full = train_in_process(cfg, str(tmp / "full"))
    os.makedirs(tmp / "resumed")
    shutil.copytree(tmp / "full" / "checkpoint_epoch0001", tmp / "resumed" / "checkpoint_epoch0001")
    _, resumed = train_in_process(cfg, str(tmp / "resumed"))
    assert [r["epoch"] for r in resumed] == [2]
    assert resumed[0]["train_loss"] == pytest.approx(full[1]["train_loss"], abs=1e-6)
