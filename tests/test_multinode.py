"""Several Ray nodes and object storage, on this machine: Ray's own simulated multi-node cluster
(tests/multinode_cluster.py, a 0-CPU head + one-CPU worker nodes) and a local S3 server (moto).

The swiniqa commands run as subprocesses through the console script with ``RAY_ADDRESS``, exactly as on
a real cluster; this test process never joins the cluster (the rest of the suite shares one local Ray).
"""

from __future__ import annotations

import pickle
import socket

import pytest

from swiniqa.errors import CheckpointError, DataError, TrainingError


# ------------------------------------------------------------------ failures explained (no cluster needed)
def test_worker_error_keeps_its_class_and_exit_code_through_ray():
    """A worker's DataError reaches the CLI as a DataError (exit 2), not as a TrainingError (exit 3)."""
    from ray.train import WorkerGroupError

    from swiniqa.training.trainer import _worker_error

    err = WorkerGroupError("rank 1 failed", {0: RuntimeError("peer gone"), 1: DataError("image a.png is broken")})
    err = pickle.loads(pickle.dumps(err))  # as it crosses from the controller to the driver
    got = _worker_error(err)
    assert type(got) is DataError and got.exit_code == 2 and str(got) == "image a.png is broken"
    got = _worker_error(WorkerGroupError("x", {0: CheckpointError("bad checkpoint")}), lost="node gone")
    assert type(got) is CheckpointError  # the worker's own error wins over a node-loss explanation


def test_worker_error_fallbacks_lost_node_then_text():
    from ray.train import WorkerGroupError

    from swiniqa.training.trainer import _worker_error

    sys_err = WorkerGroupError("x", {0: RuntimeError("The actor abc is unavailable")})
    got = _worker_error(sys_err, lost="lost node n1 (10.0.0.2) mid-run")
    assert type(got) is TrainingError and got.exit_code == 3 and str(got).startswith("lost node n1")
    # the text regex only when nothing typed came through (e.g. an exception from an older worker)
    got = _worker_error(RuntimeError("...\nswiniqa.errors.DataError: labels.csv has no score column\n"))
    assert type(got) is DataError and str(got) == "labels.csv has no score column"
    got = _worker_error(RuntimeError("boom\nsomething low-level"))
    assert type(got) is TrainingError and "something low-level" in str(got)


def test_checkpoint_uri_keeps_its_scheme():
    """Ray's Checkpoint.path on S3 has no scheme; the summary must show a URI a user can pass on."""
    from swiniqa.storage import with_scheme

    assert with_scheme("bkt/mn/run/checkpoint_epoch0003", "s3://bkt/mn/run") == "s3://bkt/mn/run/checkpoint_epoch0003"
    assert with_scheme("b/p/c", "gs://b/p") == "gs://b/p/c"
    assert with_scheme("/tmp/runs/r/c", "/tmp/runs/r") == "/tmp/runs/r/c"


def test_dashboard_port_moves_off_a_busy_one():
    from swiniqa.training.trainer import dashboard_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        port = dashboard_port(busy)
        assert port != busy and port > 0
