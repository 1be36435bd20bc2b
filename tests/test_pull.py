"""``swiniqa pull``: ranking, layouts, verified atomic copies, local / file:// / S3 (moto) sources."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil

import pytest
import torch

from swiniqa import pull as pull_mod
from swiniqa.config import preset
from swiniqa.errors import SwiniqaError
from swiniqa.pull import pull
from swiniqa.checkpoints import write_checkpoint
from swiniqa.layout import CONFIG, METRICS, WEIGHTS


def _ckpt(d, **metrics):
    write_checkpoint(d, {"w": torch.zeros(3)}, preset("demo"), {"epoch": 1, **metrics})
    return str(d)


def _half(d):
    """A half-written checkpoint: weights and config but no metrics.json."""
    os.makedirs(d, exist_ok=True)
    _ckpt(str(d) + "-tmp", val_srcc=0.0)
    for n in (WEIGHTS, CONFIG):
        shutil.copy(os.path.join(str(d) + "-tmp", n), os.path.join(d, n))
    shutil.rmtree(str(d) + "-tmp")


def _sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.fixture()
def experiment(tmp_path):
    """A Tune experiment folder: train/<run>/checkpoint_epochNNNN/ + results.json (one checkpoint deleted)."""
    exp = tmp_path / "exp"
    t = exp / "train"
    # run a: epochs 1..2, best = epoch 2 (0.80)
    _ckpt(t / "a-seed0" / "checkpoint_epoch0001", val_srcc=0.60)
    a = _ckpt(t / "a-seed0" / "checkpoint_epoch0002", val_srcc=0.80)
    # run b: best (0.95) but its folder was removed by num_to_keep
    b = str(t / "b-seed0" / "checkpoint_epoch0003")
    _ckpt(t / "b-seed0" / "checkpoint_epoch0004", val_srcc=0.50)
    c = _ckpt(t / "c-seed0" / "checkpoint_epoch0001", val_srcc=0.70)
    d = _ckpt(t / "d-seed0" / "checkpoint_epoch0001", val_srcc=float("nan"))
    # run e: recorded best is half-written (no metrics.json): never picked
    e = str(t / "e-seed0" / "checkpoint_epoch0001")
    _half(e)
    # a hidden temp folder with a tempting metric: ignored
    _ckpt(t / "a-seed0" / ".ckpt-x", val_srcc=0.99)

    def row(run, val, ckpt, epoch):
        cell, seed = run.split("-seed")
        return {"trial_id": f"t_{run}", "run": run, "cell": cell, "seed": int(seed), "config": {"lr": 1e-4, "seed": int(seed)},
                "val_srcc": val, "val_plcc": val, "test_srcc": None, "test_plcc": None, "best_epoch": epoch,
                "epochs_run": 4, "checkpoint": ckpt, "status": "completed"}

    rows = [row("a-seed0", 0.80, a, 2), row("b-seed0", 0.95, b, 3), row("c-seed0", 0.70, c, 1),
            row("d-seed0", None, d, 1), row("e-seed0", 0.99, e, 1),
            {**row("f-seed0", None, None, None), "status": "error"}]
    (exp / "results.json").write_text(json.dumps(rows, indent=2))
    return exp


def test_results_json_top2(experiment, tmp_path):
    dest = tmp_path / "models"
    res = pull(str(experiment), str(dest), top=2)
    names = [p["name"] for p in res["checkpoints"]]
    assert names == ["a-seed0", "c-seed0"]  # b deleted, e half-written, d NaN
    assert res["selected_from"] == "results.json"
    assert res["checkpoint"] == str(dest / "rank1_a-seed0")
    assert res["srcc"] == pytest.approx(0.80)
    assert res["config"]["model_size"] == preset("demo").model_size
    assert sorted(os.listdir(dest)) == ["rank1_a-seed0", "rank2_c-seed0"]  # no temp left
    assert any("b-seed0" in s for s in res["skipped"]) and any("e-seed0" in s for s in res["skipped"])
    assert any("not ranked" in s and "d-seed0" in s for s in res["skipped"])
    src = experiment / "train" / "a-seed0" / "checkpoint_epoch0002"
    prov = json.loads((dest / "rank1_a-seed0" / "pulled.json").read_text())
    assert prov["source"] == str(src) and prov["rank"] == 1 and prov["metric"] == "val_srcc"
    assert prov["value"] == pytest.approx(0.80) and prov["trial"]["run"] == "a-seed0"
    assert set(prov["files"]) == set(os.listdir(src)) >= {WEIGHTS, CONFIG, METRICS}  # every file of the source
    for n, info in prov["files"].items():
        assert info["sha256"] == _sha(src / n) == _sha(dest / "rank1_a-seed0" / n)
        assert info["size"] == os.path.getsize(src / n)
    assert res["checkpoints"][1]["value"] == pytest.approx(0.70)


def test_run_folder_scan_nan_half_hidden(tmp_path):
    run = tmp_path / "runs" / "demo"
    _ckpt(run / "checkpoint_epoch0001", val_srcc=0.5, val_loss=0.9)
    _ckpt(run / "checkpoint_epoch0002", val_srcc=0.7, val_loss=0.4)
    _ckpt(run / "checkpoint_epoch0003", val_srcc=float("nan"), val_loss=float("nan"))
    _half(run / "checkpoint_epoch0004")
    _ckpt(run / ".tmp-ckpt", val_srcc=1.0, val_loss=0.0)
    res = pull(str(run), str(tmp_path / "out"))
    assert res["checkpoint"] == str(tmp_path / "out" / "best") and res["selected_from"] == "scan"
    prov = json.loads((tmp_path / "out" / "best" / "pulled.json").read_text())
    assert prov["name"] == "checkpoint_epoch0002" and prov["value"] == pytest.approx(0.7)
    assert res["srcc"] == pytest.approx(0.7)
    # min mode on another metric; NaN never ranked
    res = pull(str(run), str(tmp_path / "out2"), metric="val_loss", mode="min", top=5)
    assert [p["name"] for p in res["checkpoints"]] == ["checkpoint_epoch0002", "checkpoint_epoch0001"]
    assert any("only 2" in s for s in res["skipped"])
    # a single checkpoint folder works too
    res = pull(str(run / "checkpoint_epoch0001"), str(tmp_path / "out3"))
    assert res["checkpoints"][0]["name"] == "checkpoint_epoch0001"


def test_results_without_existing_checkpoints_falls_back_to_scan(experiment, tmp_path):
    rows = json.loads((experiment / "results.json").read_text())
    for r in rows:
        r["checkpoint"], r["best_epoch"] = "/nowhere/x", None
    (experiment / "results.json").write_text(json.dumps(rows))
    res = pull(str(experiment), str(tmp_path / "o"))
    assert res["selected_from"] == "scan" and res["checkpoints"][0]["name"] == "a-seed0-checkpoint_epoch0002"


def test_file_uri_and_moved_experiment(experiment, tmp_path):
    moved = tmp_path / "moved"
    shutil.move(str(experiment), str(moved))  # results.json still names the old paths
    res = pull("file://" + str(moved), str(tmp_path / "o"), top=2)
    assert [p["name"] for p in res["checkpoints"]] == ["a-seed0", "c-seed0"]
    assert res["checkpoints"][0]["source"] == str(moved / "train" / "a-seed0" / "checkpoint_epoch0002")


def test_errors(experiment, tmp_path):
    with pytest.raises(SwiniqaError, match="not found: .*nope"):
        pull(str(tmp_path / "nope"), str(tmp_path / "o"))
    (tmp_path / "empty" / "x").mkdir(parents=True)
    _half(tmp_path / "empty" / "x" / "ck")
    with pytest.raises(SwiniqaError, match="no complete checkpoint under .*empty"):
        pull(str(tmp_path / "empty"), str(tmp_path / "o"))
    with pytest.raises(SwiniqaError, match="metric 'bogus' is recorded for none.*--metric"):
        pull(str(experiment), str(tmp_path / "o"), metric="bogus")
    nan = tmp_path / "nan"
    _ckpt(nan / "checkpoint_epoch0001", val_srcc=float("nan"))
    with pytest.raises(SwiniqaError, match="NaN"):
        pull(str(nan), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()  # failed pulls create nothing
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(SwiniqaError, match=r"full exists and is not empty.*--force"):
        pull(str(experiment), str(full))
    pull(str(experiment), str(full), top=3, force=True)
    res = pull(str(experiment), str(full), force=True)  # replaces the earlier pulled folders only
    assert sorted(os.listdir(full)) == ["best", "keep.txt"]
    assert res["checkpoints"][0]["name"] == "a-seed0"


def test_corrupt_copy_is_caught(experiment, tmp_path, monkeypatch):
    real = pull_mod.download_file

    def corrupting(src_fs, src_path, dst_path):
        out = real(src_fs, src_path, dst_path)
        if dst_path.endswith(WEIGHTS):
            with open(dst_path, "r+b") as f:
                f.seek(-1, 2)
                b = f.read(1)
                f.seek(-1, 2)
                f.write(bytes([b[0] ^ 0xFF]))
        return out

    monkeypatch.setattr(pull_mod, "download_file", corrupting)
    dest = tmp_path / "o"
    with pytest.raises(SwiniqaError, match=r"model\.safetensors failed verification .*sha256"):
        pull(str(experiment), str(dest))
    assert not dest.exists()


def test_cli_json(experiment, tmp_path, capsys):
    from swiniqa.cli import main

    rc = main(["pull", str(experiment), "--dest", str(tmp_path / "o"), "--top", "2", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    last = json.loads(out.strip().splitlines()[-1])
    assert last["checkpoint"] == str(tmp_path / "o" / "rank1_a-seed0")
    assert last["srcc"] == pytest.approx(0.8) and isinstance(last["config"], dict)
    assert [p["value"] for p in last["checkpoints"]] == pytest.approx([0.8, 0.7])
    assert all({"checkpoint", "value", "source"} <= set(p) for p in last["checkpoints"])
    assert "b-seed0" in err
    rc = main(["pull", str(experiment), "--dest", str(tmp_path / "o")])
    assert rc == 2 and "--force" in capsys.readouterr().err
    rc = main(["pull", str(experiment), "--dest", str(tmp_path / "h")])
    out = capsys.readouterr().out
    assert rc == 0 and "best: " + str(tmp_path / "h" / "best") in out


# --------------------------------------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("moto.server")
    from helpers import local_s3

    with local_s3() as endpoint:
        yield endpoint[len("http://"):]


def test_pull_from_s3(experiment, tmp_path, s3_server, monkeypatch):
    import pyarrow.fs as pafs

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://{s3_server}"}.items():
        monkeypatch.setenv(k, v)
    fs = pafs.S3FileSystem(endpoint_override=s3_server, scheme="http", access_key="testing", secret_key="testing",
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("bucket")
    # results.json as the tune driver writes it for an s3:// experiment; one row keeps a stale local path
    rows = json.loads((experiment / "results.json").read_text())
    for r in rows:
        if r["checkpoint"] and r["run"] != "c-seed0":
            r["checkpoint"] = "s3://bucket/exp/" + os.path.relpath(r["checkpoint"], experiment)
    (experiment / "results.json").write_text(json.dumps(rows))
    pafs.copy_files(str(experiment), "bucket/exp", destination_filesystem=fs)
    local = tmp_path / "local-copy"
    shutil.move(str(experiment), str(local))  # the stale local path of c-seed0 no longer exists

    res = pull("s3://bucket/exp", str(tmp_path / "o"), top=2)
    assert [p["name"] for p in res["checkpoints"]] == ["a-seed0", "c-seed0"]
    assert res["checkpoints"][0]["source"] == "s3://bucket/exp/train/a-seed0/checkpoint_epoch0002"
    assert res["checkpoints"][1]["source"] == "s3://bucket/exp/train/c-seed0/checkpoint_epoch0001"
    src = local / "train" / "a-seed0" / "checkpoint_epoch0002"
    for n in (WEIGHTS, CONFIG, METRICS):
        assert _sha(src / n) == _sha(tmp_path / "o" / "rank1_a-seed0" / n)

    # a plain run folder on S3 (scan path), and a missing prefix
    res = pull("s3://bucket/exp/train/a-seed0", str(tmp_path / "o2"))
    assert res["checkpoints"][0]["source"] == "s3://bucket/exp/train/a-seed0/checkpoint_epoch0002"
    assert math.isclose(res["srcc"], 0.8)
    with pytest.raises(SwiniqaError, match="not found: s3://bucket/nope"):
        pull("s3://bucket/nope", str(tmp_path / "o3"))


def test_redact():
    assert pull_mod.redact("s3://AKIA:sekrit@bucket/x?region=us&secret_key=zz") == "s3://bucket/x?region=us&secret_key=***"
    assert pull_mod.redact("/local/path") == "/local/path"


def test_one_scanner_finds_checkpoints_for_pull_and_local_loading(tmp_path):
    """``checkpoints.checkpoint_folders`` is the scanner of both ``scan_checkpoints`` (eval, predict, resume) and
    ``pull`` (any storage): top-most folders holding a checkpoint file, hidden ones and a run folder's own
    provenance files skipped. A half-written folder (no metrics.json) is never pulled, and pull names it."""
    from swiniqa.checkpoints import checkpoint_folders, scan_checkpoints

    assert checkpoint_folders(["environment.json", "dataset.json", "a/checkpoint_epoch0001/model.safetensors",
                               "a/checkpoint_epoch0001/sub/config.json", "a/.tmp-x/model.safetensors",
                               "b/metrics.json", "c/history.csv"]) == ["a/checkpoint_epoch0001", "b"]
    assert checkpoint_folders(["model.safetensors", "x/config.json"]) == [""]
    run = tmp_path / "run"
    _ckpt(run / "checkpoint_epoch0001", val_srcc=0.5)
    _half(run / "checkpoint_epoch0002")
    complete, incomplete = scan_checkpoints(run)
    assert [p.name for p in complete] == ["checkpoint_epoch0001"]
    assert [p.name for p, _ in incomplete] == ["checkpoint_epoch0002"]
    res = pull(str(run), str(tmp_path / "out"))
    assert res["checkpoints"][0]["name"] == "checkpoint_epoch0001"
    assert any("checkpoint_epoch0002 skipped: no metrics.json" in s for s in res["skipped"]), res["skipped"]
