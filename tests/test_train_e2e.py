"""A real `swiniqa train` through Ray Train on the shared session Ray: 2 DDP workers, an injected worker
death survived, and every file a user gets."""

import json
import os

import pytest

from swiniqa import checkpoints

from swiniqa.models import loading


def _tb_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(logdir)
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


#: The `swiniqa train --json` keys the README documents.
README_TRAIN_KEYS = {"srcc", "plcc", "test_srcc", "test_plcc", "checkpoint", "tensorboard", "curves", "epochs",
                     "restarts", "best_epoch", "data", "config"}


def _train_worker_actors(address: str) -> set:
    from ray.util.state import list_actors

    return {a.actor_id for a in list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker")],
                                            limit=10000, raise_on_missing_output=False)}


def test_cli_train_ddp_json_and_checkpoint_folder(ray_session, tiny_cfg, tmp_path):
    """One `swiniqa train` as a user runs it (a subprocess attached to the session's Ray): 2 DDP workers,
    the l1+rank loss, 3 epochs, rank 0 SIGKILLed in epoch 2 (`--inject-failure-at-epoch 2`) with
    `--max-failures 1`: the run restarts from its checkpoint and no epoch appears twice. Checks the README's
    12 JSON keys and their values, the checkpoint folder (model.safetensors, config.json, metrics.json,
    state.pt loadable weights-only), "best and latest kept" and best_model.safetensors,
    history.csv/curves.png/TensorBoard, and that DDP ran two workers whose checkpoint loads into a plain
    model."""
    import csv
    import subprocess
    import sys

    import torch

    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "swiniqa.cli", "train", "--preset", "demo", "--num-workers", "2",
           "--set", f"data_root={tiny_cfg.data_root}", "--epochs", "3", "--set", "train_patches=1",
           "--set", "test_patches=2", "--set", "batch_size=8", "--set", "max_images=32", "--set", "patch_size=64",
           "--set", "warmup_epochs=0", "--set", "loss=l1+rank", "--set", "rank_weight=0.5",
           "--max-failures", "1", "--inject-failure-at-epoch", "2",
           "--output", str(out), "--name", "ddp", "--json", "--quiet"]
    address = ray_session.get_runtime_context().gcs_address
    before = _train_worker_actors(address)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_ADDRESS": address})
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert README_TRAIN_KEYS <= set(s), README_TRAIN_KEYS - set(s)
    assert s["epochs"] == 3 and s["restarts"] == 1 and 1 <= s["best_epoch"] <= 3
    # the killed attempt's successor resumed at epoch 2 from epoch 1's checkpoint, on as many workers
    assert s["resumes"] == [{"epoch": 2, "step": 0, "from": 2, "to": 2, "why": "restart"}], s["resumes"]
    assert len(_train_worker_actors(address) - before) == 2 * 2  # two DDP workers, started twice
    assert s["config"]["num_workers"] == 2 and s["config"]["loss"] == "l1+rank" and s["config"]["rank_weight"] == 0.5
    assert s["data"]["train"] == s["data"]["val"] == s["data"]["test"] == 32 and s["data"]["dataset"] == "demo"
    assert -1 <= s["test_srcc"] <= 1 and -1 <= s["test_plcc"] <= 1

    run = out / "ddp"
    kept = sorted(p.name for p in run.glob("checkpoint_epoch*"))
    best_dir, last_dir = f"checkpoint_epoch{s['best_epoch']:04d}", "checkpoint_epoch0003"
    assert os.path.basename(s["checkpoint"]) == best_dir
    assert best_dir in kept and last_dir in kept and len(kept) <= 2, kept  # best and latest kept, no more
    ck = run / best_dir
    metrics = json.loads((ck / "metrics.json").read_text())
    assert metrics["val_srcc"] == pytest.approx(s["srcc"]) and metrics["val_plcc"] == pytest.approx(s["plcc"])
    assert checkpoints.read_config(ck).to_dict() == s["config"]
    st = torch.load(run / last_dir / "state.pt", map_location="cpu", weights_only=True)
    assert st["epoch"] == 2 and {"optimizer", "scheduler", "history"} <= set(st)
    assert len(st["optimizer"]["param_groups"]) == 2  # backbone and head groups
    # best_model.safetensors in the latest folder exactly when the latest epoch is not the best
    latest_best = run / last_dir / "best_model.safetensors"
    if s["best_epoch"] == 3:
        assert not latest_best.exists()
    else:
        want = checkpoints.read_weights(ck)
        got = checkpoints.read_weights(run / last_dir, best=True)
        assert latest_best.is_file() and all(torch.equal(got[k], want[k]) for k in want)
    # DDP's wrapper is not in the saved keys: the checkpoint loads into a plain model and predicts
    weights = checkpoints.read_weights(ck)
    assert not any(k.startswith("module.") for k in weights)
    model, cfg = loading.load_model(str(run))
    assert (cfg.model_size, cfg.patch_size) == ("nano", 64)
    with torch.no_grad():
        assert torch.isfinite(model(torch.rand(2, 3, 64, 64))).all()
    # per-epoch history, curves and TensorBoard scalars
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(h["epoch"])) for h in rows] == [1, 2, 3] and {h["workers"] for h in rows} == {"2"}
    # what made it: the run folder and the JSON summary name the environment (both workers) and the data
    env = json.loads((run / "environment.json").read_text())
    assert env["workers"] == 2 and [w["rank"] for w in env["worker_list"]] == [0, 1]
    assert s["provenance"]["environment_id"] == env["environment_id"] and s["workers"] == 2
    assert s["provenance"]["dataset_fingerprint"] == s["data"]["fingerprint"]["fingerprint"]
    assert open(s["curves"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    tb = _tb_scalars(s["tensorboard"])
    assert [step for step, _ in tb["val/srcc"]] == [1, 2, 3]  # no epoch logged twice after the restart
    assert {"train/loss", "lr_backbone", "lr_head"} <= set(tb)
