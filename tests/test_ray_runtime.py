"""``swiniqa.ray_runtime``: worker failures explained with their own type and exit code, and a local Ray that
finds a free dashboard port while another local Ray runs on the same machine."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

from swiniqa.errors import CheckpointError, DataError, TrainingError

SWINIQA = str(Path(sys.executable).with_name("swiniqa"))


# ------------------------------------------------------------------ failures explained
def test_worker_error_keeps_its_class_and_exit_code_through_ray():
    """A worker's DataError reaches the CLI as a DataError (exit 2), not as a TrainingError (exit 3)."""
    from ray.train import WorkerGroupError

    from swiniqa.ray_runtime import worker_error

    err = WorkerGroupError("rank 1 failed", {0: RuntimeError("peer gone"), 1: DataError("image a.png is broken")})
    err = pickle.loads(pickle.dumps(err))  # as it crosses from the controller to the driver
    got = worker_error(err)
    assert type(got) is DataError and got.exit_code == 2 and str(got) == "image a.png is broken"
    got = worker_error(WorkerGroupError("x", {0: CheckpointError("bad checkpoint")}), lost="node gone")
    assert type(got) is CheckpointError  # the worker's own error wins over a node-loss explanation


def test_worker_error_fallbacks_lost_node_then_text():
    from ray.train import WorkerGroupError

    from swiniqa.ray_runtime import worker_error

    sys_err = WorkerGroupError("x", {0: RuntimeError("The actor abc is unavailable")})
    got = worker_error(sys_err, lost="lost node n1 (10.0.0.2) mid-run")
    assert type(got) is TrainingError and got.exit_code == 3 and str(got).startswith("lost node n1")
    # the text regex only when nothing typed came through (e.g. an exception from an older worker)
    got = worker_error(RuntimeError("...\nswiniqa.errors.DataError: labels.csv has no score column\n"))
    assert type(got) is DataError and str(got) == "labels.csv has no score column"
    got = worker_error(RuntimeError("boom\nsomething low-level"))
    assert type(got) is TrainingError and "something low-level" in str(got)


def test_dashboard_port_moves_off_a_busy_one():
    from swiniqa.ray_runtime import dashboard_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        port = dashboard_port(busy)
        assert port != busy and port > 0


# ------------------------------------------------------------------ two local Rays on one machine
def test_two_local_rays_at_once_both_work(ray_session, demo_root, tmp_path):
    """A ``swiniqa train`` while another local Ray runs (this session's, up for the whole test run) and 8265,
    Ray's default dashboard port, is taken: the train starts its own local Ray with a working dashboard (the
    state API Tune's early stopping needs; without a free port Ray logs "Failed to bind" and it is gone),
    and the first Ray keeps working."""
    from ray.util.state import list_jobs

    first = ray_session.get_runtime_context().gcs_address
    jobs_before = len(list_jobs(address=first, raise_on_missing_output=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", HOME=str(tmp_path))
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8265))  # stands in for another user's dashboard
        holder.listen()
    except OSError:
        holder.close()  # already taken by someone else on this machine: the same situation
    try:
        r = subprocess.run([SWINIQA, "train", "--preset", "demo", "--data-root", str(demo_root), "--epochs", "1",
                            "--set", "max_images=16", "--set", "train_patches=1", "--set", "test_patches=1",
                            "--set", "batch_size=8", "--output", str(tmp_path / "runs"), "--name", "two", "--json",
                            "--quiet"], env=env, capture_output=True, text=True, timeout=400)
    finally:
        holder.close()
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["epochs"] == 1
    assert "Failed to bind" not in r.stderr
    assert ray_session.is_initialized() and ray_session.get_runtime_context().gcs_address == first
    # the train had its own Ray (it never joined the first as a job), and the first's state API still answers
    assert len(list_jobs(address=first, raise_on_missing_output=False)) == jobs_before
