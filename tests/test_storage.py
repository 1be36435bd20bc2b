"""``swiniqa.storage``: one definition of a remote path for every verb, and the whole-file helpers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from swiniqa.errors import DataError
from swiniqa.storage import (is_remote, json_safe, list_dirs, list_files, read_json, read_text, scheme, write_json,
                             write_text)


def test_is_remote_means_starts_with_a_non_file_scheme():
    for uri in ("s3://b/k", "gs://b", "gcs://b/x.jpg", "hdfs://nn/p", "S3://b/k"):
        assert is_remote(uri), uri
    for path in ("photo.jpg", "/data/x", "runs/b://c", "/data/s3://mirror/a.jpg", "file:///tmp/x", ""):
        assert not is_remote(path), path
    assert scheme("S3://b") == "s3" and scheme("/x") is None


def test_a_local_path_containing_scheme_slashes_is_local_for_every_verb(tmp_path, monkeypatch):
    """A folder named ``b:`` written as ``.../b://...`` is a local path: storage used to call any ``://`` remote
    (and failed parsing it as a URI) while `score` called only s3/gs/gcs remote (and looked hdfs:// up on disk)."""
    from swiniqa.serving.score import collect_inputs

    (tmp_path / "runs" / "b:").mkdir(parents=True)
    (tmp_path / "runs" / "b:" / "x.json").write_text('{"a": 1}')
    monkeypatch.chdir(tmp_path)
    assert read_json("runs/b://x.json") == {"a": 1}
    with pytest.raises(DataError, match="cannot list hdfs://nn/imgs"):  # object storage to score, too
        collect_inputs(["hdfs://nn/imgs"])


def test_whole_files_round_trip_and_absent_files_are_none(tmp_path):
    target = tmp_path / "a" / "b" / "r.json"
    write_json(str(target), {"x": float("nan"), "n": np.float32(0.5), "t": (1, 2), "ok": np.bool_(True)})
    assert json.loads(target.read_text()) == {"x": None, "n": 0.5, "t": [1, 2], "ok": True}
    assert read_json(str(tmp_path / "nope.json")) is None and read_text(str(tmp_path / "nope")) is None
    write_text(str(tmp_path / "bad.json"), "{cut")
    assert read_json(str(tmp_path / "bad.json")) is None  # a file cut by a kill reads as absent
    assert list_dirs(str(tmp_path)) == ["a"] and list_files(str(tmp_path)) == ["bad.json"]
    assert list_dirs(str(tmp_path / "missing")) == [] and not any(p.name.startswith("r.json.tmp")
                                                                    for p in target.parent.iterdir())
    assert json_safe({"inf": math.inf}) == {"inf": None}


def test_checkpoint_uri_keeps_its_scheme():
    """Ray's Checkpoint.path on S3 has no scheme; the summary must show a URI a user can pass on."""
    from swiniqa.storage import with_scheme

    assert with_scheme("bkt/mn/run/checkpoint_epoch0003", "s3://bkt/mn/run") == "s3://bkt/mn/run/checkpoint_epoch0003"
    assert with_scheme("b/p/c", "gs://b/p") == "gs://b/p/c"
    assert with_scheme("/tmp/runs/r/c", "/tmp/runs/r") == "/tmp/runs/r/c"
