"""The benchmark scripts run end to end with tiny settings and print one valid JSON line (no timing asserts).

The three scripts start together (subprocesses); ray_overhead joins the test session's Ray through
``RAY_ADDRESS`` (a second Ray's start-up would cost ~10 s of the two cores for nothing this test checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _json_line(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got: {stdout!r}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, demo_root, ray_session):
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmds = {
        "data_pipeline": [str(BENCH / "data_pipeline.py"), "--images", str(tmp / "images"), "--count", "4",
                          "--epochs", "1", "--workers", "1", "--json"],
        "train_step": [str(BENCH / "train_step.py"), "--sizes", "nano", "--device", "cpu", "--batch-size", "4",
                       "--patch-size", "64", "--test-patches", "2", "--warmup", "1", "--repeats", "1",
                       "--compare-naive", "--json"],
        "ray_overhead": [str(BENCH / "ray_overhead.py"), "--epochs", "2", "--max-images", "8", "--batch-size", "8",
                         "--train-patches", "1", "--test-patches", "1", "--cpus", "1",
                         "--data-root", str(demo_root), "--json"],
    }
    procs = {k: subprocess.Popen([sys.executable, *c], cwd=tmp, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k, c in cmds.items()}
    out = {}
    for k, p in procs.items():
        try:
            so, se = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
        out[k] = (p.returncode, so, se)
    return out


def test_make_images_writes_1024x768_jpegs(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from make_images import write_images
    finally:
        sys.path.remove(str(BENCH))
    from PIL import Image

    paths = write_images(tmp_path, 2)
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (1024, 768) and im.mode == "RGB"


def test_data_pipeline_prints_json(outputs):
    rc, so, se = outputs["data_pipeline"]
    assert rc == 0, se
    d = _json_line(so)
    for k in ("naive_patches_per_s", "fast_patches_per_s", "fast_nocache_patches_per_s", "ratio", "ratio_nocache",
              "images", "patches_per_image", "epochs", "workers"):
        assert k in d, k
    assert d["images"] == 4 and d["patches_per_image"] == 20 and d["epochs"] == 1 and d["workers"] == 1
    assert d["naive_patches_per_s"] > 0 and d["fast_patches_per_s"] > 0 and d["fast_nocache_patches_per_s"] > 0


def test_train_step_prints_json(outputs):
    rc, so, se = outputs["train_step"]
    assert rc == 0, se
    d = _json_line(so)
    assert d["device"] == "cpu" and [r["size"] for r in d["rows"]] == ["nano"]
    row = d["rows"][0]
    for k in ("train_patches_per_s", "eval_images_per_s", "naive_train_patches_per_s", "naive_eval_images_per_s",
              "train_ratio_vs_naive", "eval_ratio_vs_naive"):
        assert row[k] > 0, k


def test_ray_overhead_prints_json(outputs):
    rc, so, se = outputs["ray_overhead"]
    assert rc == 0, se[-3000:]
    d = _json_line(so)
    for k in ("direct_epoch_s", "ray_epoch_s", "ratio"):
        assert d[k] > 0, k
    assert d["epochs"] == 2
