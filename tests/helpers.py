"""Helpers shared by test modules (not a test module): free ports and a local S3 server (moto).

Test modules import it as ``from helpers import ...`` (pytest puts ``tests/`` on the path);
``tests/multinode_cluster.py``, run as a script from this folder, does the same.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Iterator

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the block; yields its endpoint URL (``http://127.0.0.1:PORT``). Point
    clients at it with ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) and :data:`S3_CREDENTIALS`."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_bucket(endpoint: str, bucket: str, caches) -> tuple[dict, object]:
    """A bucket on the local S3 server at ``endpoint``: (env for swiniqa subprocesses: the credentials and
    endpoint, no ``RAY_ADDRESS``, dataset caches under ``caches``; a boto3 client)."""
    import os

    import boto3

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "AWS_"))},
           **{k: v for k, v in S3_CREDENTIALS.items() if k != "AWS_REGION"},
           "AWS_ENDPOINT_URL": endpoint, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "SWINIQA_DATA_CACHE": str(caches / "driver"), "SWINIQA_MN_CACHE_BASE": str(caches)}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)
    return env, client


def small_demo(demo_root, out, per_photo: int = 6):
    """The demo dataset cut to ``per_photo`` images per source photo, written to ``out`` (labels.csv + images/)."""
    import csv
    import shutil
    from pathlib import Path

    out = Path(out)
    (out / "images").mkdir(parents=True)
    with open(Path(demo_root) / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows, per = [], {}
        for r in reader:
            if per.get(r["source"], 0) < per_photo:
                per[r["source"]] = per.get(r["source"], 0) + 1
                rows.append(r)
                shutil.copy(Path(demo_root) / "images" / r["image"], out / "images" / r["image"])
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=reader.fieldnames)
        w.writeheader()
        w.writerows(rows)
    return out


def upload_tree(client, bucket: str, folder, prefix: str) -> str:
    """Every file below ``folder`` into ``s3://bucket/prefix/...``; returns that URI."""
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            client.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}"
