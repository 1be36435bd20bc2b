"""Real Ray Train runs (shared session Ray): one tiny run end to end, one with an injected worker death."""

import json
import os

import pytest

from swiniqa.training import checkpoint as ckio


def _tb_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(logdir)
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def _history_epochs(run_dir):
    import csv

    with open(os.path.join(run_dir, "history.csv")) as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


def test_train_end_to_end_through_ray(ray_session, tiny_cfg):
    from swiniqa.training.trainer import run_training

    cfg = tiny_cfg.replace(name="e2e", epochs=2)
    s = run_training(cfg, progress=False)
    assert s["epochs"] == 2 and s["restarts"] == 0
    assert -1 <= s["srcc"] <= 1 and s["test_srcc"] is not None
    ck = s["checkpoint"]
    assert ckio.is_checkpoint(__import__("pathlib").Path(ck))
    assert ckio.read_config(ck) == cfg
    assert json.loads(open(os.path.join(ck, "metrics.json")).read())["val_srcc"] == pytest.approx(s["srcc"])
    # weights load into a fresh model without unpickling anything
    model, loaded_cfg = ckio.load_model(s["run_dir"])
    assert loaded_cfg.model_size == "nano"
    tb = _tb_scalars(s["tensorboard"])
    assert [step for step, _ in tb["val/srcc"]] == [1, 2]
    assert {"train/loss", "lr_backbone", "lr_head"} <= set(tb)
    assert _history_epochs(s["run_dir"]) == [1, 2]
    assert open(s["curves"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_injected_worker_death_restarts_and_resumes(ray_session, tiny_cfg):
    from swiniqa.training.trainer import run_training

    cfg = tiny_cfg.replace(name="failover", epochs=3, max_failures=1, inject_failure_at_epoch=2)
    s = run_training(cfg, progress=False)
    assert s["restarts"] >= 1 and s["epochs"] == 3
    steps = [step for step, _ in _tb_scalars(s["tensorboard"])["val/srcc"]]
    assert steps == [1, 2, 3]  # no epoch logged twice
    assert _history_epochs(s["run_dir"]) == [1, 2, 3]


def test_cli_train_json_last_line(ray_session, tiny_cfg, capsys):
    from swiniqa.cli import main

    rc = main(["train", "--preset", "demo", "--set", "model_size=nano", "--set", f"data_root={tiny_cfg.data_root}",
               "--epochs", "1", "--set", "train_patches=1", "--set", "test_patches=1", "--set", "batch_size=8",
               "--output", tiny_cfg.output, "--name", "cli", "--json", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"srcc", "plcc", "checkpoint", "tensorboard", "epochs", "restarts"} <= set(out)
    assert out["epochs"] == 1
