"""Datasets in object storage (``s3://``, a local moto server): staged once per node, shared by a node's workers,
verified, fetched again when changed; every way storage refuses is one line. No cluster: the staging runs in
this process and in ``swiniqa data check`` subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port, local_s3, s3_bucket, upload_tree

SWINIQA = str(Path(sys.executable).with_name("swiniqa"))
BUCKET = "swiniqa-staging"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A local S3 server with one bucket: (env for subprocesses, boto3 client)."""
    pytest.importorskip("moto.server")
    with local_s3() as endpoint:
        yield s3_bucket(endpoint, BUCKET, tmp_path_factory.mktemp("caches"))


@pytest.fixture(scope="module")
def s3_demo(s3, small_demo):
    """The small demo dataset in the bucket: s3://BUCKET/data/demo (labels.csv + images/)."""
    return upload_tree(s3[1], BUCKET, small_demo, "data/demo")


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


@pytest.fixture()
def s3_env(s3, monkeypatch, tmp_path):
    """This process talks to the local S3 server, with its own dataset cache."""
    env, client = s3
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("SWINIQA_DATA_CACHE", str(tmp_path / "cache"))
    return env, client


def test_s3_dataset_staged_once_shared_verified_and_refetched_when_changed(s3_env, s3_demo, small_demo,
                                                                         monkeypatch, tmp_path):
    import threading

    from swiniqa.data import staging
    from swiniqa.data.records import read_dataset

    _, client = s3_env
    downloads = []
    real = staging._download_all
    monkeypatch.setattr(staging, "_download_all", lambda *a: (downloads.append(a[0]), real(*a)))
    got = []
    threads = [threading.Thread(target=lambda: got.append(staging.stage(s3_demo))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(downloads) == 1  # three workers of one node, one download
    local = Path(got[0])
    assert sorted(p.relative_to(local) for p in local.rglob("*.png")) == \
        sorted(p.relative_to(small_demo) for p in small_demo.rglob("*.png"))
    info = read_dataset("demo", s3_demo)
    assert len(info.records) == sum(1 for _ in open(small_demo / "labels.csv")) - 1
    assert all(r.path.startswith(str(local)) for r in info.records)
    # an interrupted earlier download: a truncated file, a stray .part, no completion marker
    img = sorted(local.rglob("*.png"))[0]
    size = img.stat().st_size
    img.write_bytes(img.read_bytes()[:10])
    (local / "labels.csv.part").write_bytes(b"half")
    (local / ".swiniqa-staged.json").unlink()
    assert staging.stage(s3_demo) == str(local) and len(downloads) == 2
    assert img.stat().st_size == size and not list(local.rglob("*.part"))
    # a changed dataset (one label row fewer) is a new cache entry, fetched again
    rows = open(small_demo / "labels.csv").read().splitlines()
    client.put_object(Bucket=BUCKET, Key="data/changed/labels.csv", Body="\n".join(rows[:-1]) + "\n")
    for p in small_demo.rglob("*.png"):
        client.upload_file(str(p), BUCKET, f"data/changed/{p.relative_to(small_demo).as_posix()}")
    first = read_dataset("demo", f"s3://{BUCKET}/data/changed")
    client.put_object(Bucket=BUCKET, Key="data/changed/labels.csv", Body="\n".join(rows[:-2]) + "\n")
    second = read_dataset("demo", f"s3://{BUCKET}/data/changed")
    assert len(second.records) == len(first.records) - 1
    assert Path(second.root) != Path(first.root)


def _one_line_error(args, env):
    r = subprocess.run([SWINIQA, *args], env=env, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()  # progress lines ("staging ...") may come first
    assert r.returncode == 2 and lines[-1].startswith("swiniqa: error: "), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and sum(ln.startswith("swiniqa: error") for ln in lines) == 1
    return lines[-1]


def test_s3_dataset_errors_are_one_line_each(s3, s3_demo, tmp_path):
    """No such bucket, missing label file (real, on the local S3); rejected / missing credentials and access
    denied against a second local S3 server that checks credentials (moto with IAM auth on)."""
    env, client = s3
    env = {**env, "SWINIQA_DATA_CACHE": str(tmp_path / "cache")}
    line = _one_line_error(["data", "check", "--dataset", "demo", "--root", "s3://no-such-bucket-x/demo"], env)
    assert "no such bucket 'no-such-bucket-x'" in line
    for k in _keys(client, "data/demo/images/")[:5]:
        client.copy_object(Bucket=BUCKET, Key=k.replace("data/demo/", "data/nolabels/"),
                           CopySource={"Bucket": BUCKET, "Key": k})
    line = _one_line_error(["data", "check", "--dataset", "demo", "--root", f"s3://{BUCKET}/data/nolabels"], env)
    assert f"s3://{BUCKET}/data/nolabels/labels.csv" in line and "not found" in line and "cache" not in line
    # a server that checks credentials: the first 4 calls (setup) are let through unauthenticated
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**env, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        import boto3

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x")
        boto3.client("s3", **kw).create_bucket(Bucket="locked")
        boto3.client("s3", **kw).put_object(Bucket="locked", Key="demo/labels.csv", Body=b"image,mos,source\n")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        base = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        base.update(AWS_ENDPOINT_URL=kw["endpoint_url"], AWS_DEFAULT_REGION="us-east-1", HOME=str(tmp_path))
        check = ["data", "check", "--dataset", "demo", "--root", "s3://locked/demo"]
        line = _one_line_error(check, {**base, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                       "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
        assert "access denied to s3://locked/demo" in line
        line = _one_line_error(check, {**base, "AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000",
                                       "AWS_SECRET_ACCESS_KEY": "x"})
        assert "credentials for s3://locked/demo were rejected" in line
        line = _one_line_error(check, base)
        assert line.startswith("swiniqa: error: no credentials to read s3://locked/demo")
    finally:
        server.kill()
        server.wait()
