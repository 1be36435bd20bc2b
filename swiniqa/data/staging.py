"""Datasets in object storage (``s3://``, ``gs://``): staged once per node into a local cache.

Readers, the data check and the image loader read local files. A dataset given as a URI (``--data-root``,
``--labels``, ``--images``) is listed on the driver, copied into a node-local cache and read from there;
every Ray worker stages the same listing on its own node before training (:func:`localise_splits`).

The cache folder is keyed by the URI and the listing (every object's relative path, size and modification
time: pyarrow exposes no ETags), so a changed dataset is fetched again. One lock file per key makes the
workers of one node share one download; each object is written to ``.part``, its size verified, then
renamed, so an interrupted download keeps the finished objects and restarts the rest cleanly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from swiniqa.errors import DataError
from swiniqa.storage import filesystem, is_remote

log = logging.getLogger("swiniqa.data.staging")
_MARKER = ".swiniqa-staged.json"
#: URI -> (local path, listing) of everything this process staged; the trainer ships it to the workers.
STAGED: dict[str, dict[str, Any]] = {}


def cache_root() -> str:
    """``$SWINIQA_DATA_CACHE`` or ``~/.cache/swiniqa/datasets`` (node-local on a real cluster)."""
    return os.environ.get("SWINIQA_DATA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "swiniqa",
                                                                 "datasets")


def _has_aws_credentials_config() -> bool:
    """Whether any AWS credentials source besides an instance role is configured (env, profile, files)."""
    env = os.environ
    if any(env.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")):
        return True
    files = [env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), env.get("AWS_CONFIG_FILE", "~/.aws/config")]
    return any(os.path.isfile(os.path.expanduser(f)) for f in files)


def _storage_error(uri: str, e: BaseException) -> DataError:
    """One line for the ways object storage refuses: no bucket, no/invalid credentials, access denied."""
    text = str(e)
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    low = text.lower()
    creds = ("AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY here, an IAM instance role on every node"
             if uri.startswith("s3://") else "GOOGLE_APPLICATION_CREDENTIALS here, a service account on every node")
    if "no_such_bucket" in low or "nosuchbucket" in low or "bucket does not exist" in low:
        return DataError(f"no such bucket '{bucket}' (for {uri}); check the bucket name and region")
    if any(s in low for s in ("invalid_access_key", "invalidaccesskeyid", "signature_does_not_match",
                              "signaturedoesnotmatch", "expired_token", "expiredtoken", "invalid_client_token")):
        why = text.split("operation: ")[-1].split(" (Request ID")[0][:120].strip()
        return DataError(f"the credentials for {uri} were rejected ({why}); "
                         f"set valid ones: {creds}")
    refused = any(s in low for s in ("access_denied", "accessdenied", "access denied", "forbidden", "http status 5",
                                     "internal_failure", "credentials"))
    if refused and uri.startswith("s3://") and not _has_aws_credentials_config():
        return DataError(f"no credentials to read {uri} (none in the environment, AWS_PROFILE or ~/.aws, and the "
                         f"request was refused); set {creds}")
    if refused:
        return DataError(f"access denied to {uri}: the credentials in use may not list/read bucket '{bucket}'; "
                         "check the bucket policy / the node's IAM role")
    return DataError(f"cannot read {uri}: {text.splitlines()[0][:300] if text else type(e).__name__}")


def list_remote(uri: str) -> dict[str, list]:
    """The listing of ``uri``: {relative path: [size, mtime]} (one object: its base name).

    Raises:
        DataError: no such bucket / object, no credentials, access denied.
    """
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    try:
        try:
            info = fs.get_file_info(path)
        except OSError:  # a HEAD request's error has no body: list, whose error names the cause
            fs.get_file_info(pafs.FileSelector(path, recursive=False))
            raise
        if info.type == pafs.FileType.File:
            return {os.path.basename(path): [info.size, _mtime(info)]}
        if info.type == pafs.FileType.NotFound:
            if fs.get_file_info(path.split("/", 1)[0]).type == pafs.FileType.NotFound:
                raise OSError("NO_SUCH_BUCKET")
            raise DataError(f"{uri} does not exist (no object or folder of that name); check the path")
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - turned into one line
        raise _storage_error(uri, e) from None
    base = path.rstrip("/") + "/"
    return {x.path[len(base):]: [x.size, _mtime(x)] for x in entries if x.type == pafs.FileType.File}


def _mtime(info) -> Optional[str]:
    return info.mtime.isoformat() if info.mtime is not None else None


def stage(uri: str, listing: Optional[dict[str, list]] = None) -> str:
    """Copy ``uri`` (a folder or one object) into this node's cache once and return the local path.

    Args:
        uri: ``s3://`` / ``gs://`` folder or object.
        listing: the driver's :func:`list_remote` result (workers stage exactly what the driver checked).
    Returns:
        the local folder (or file, for one object).
    Raises:
        DataError: storage refused, or an object changed size while copying.
    """
    listing = listing if listing is not None else list_remote(uri)
    key = hashlib.sha256(json.dumps([uri.rstrip("/"), sorted(listing.items())]).encode()).hexdigest()[:20]
    root = os.path.join(cache_root(), key)
    single = _is_single(uri, listing)
    local = os.path.join(root, next(iter(listing))) if single else root
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(cache_root(), f"{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other workers of this node wait here, then find the marker
        marker = os.path.join(root, _MARKER)
        if not os.path.isfile(marker):
            log.info("staging %s (%d objects) into %s", uri, len(listing), root)
            _download_all(uri, listing, root, single)
            with open(marker, "w") as f:
                json.dump({"uri": uri, "objects": len(listing)}, f)
    STAGED[uri] = {"local": local, "listing": listing}
    return local


def _is_single(uri: str, listing: dict[str, list]) -> bool:
    return len(listing) == 1 and uri.rstrip("/").endswith("/" + next(iter(listing)))


def _download_all(uri: str, listing: dict[str, list], root: str, single: bool) -> None:
    fs, path = filesystem(uri)
    src_dir = os.path.dirname(path) if single else path.rstrip("/")
    for d, _, files in os.walk(root):  # leftovers of an interrupted attempt start again
        for f in files:
            if f.endswith(".part"):
                os.remove(os.path.join(d, f))

    def one(rel: str) -> None:
        size = listing[rel][0]
        dst = os.path.join(root, rel)
        if os.path.isfile(dst) and os.path.getsize(dst) == size:
            return  # finished by an earlier, interrupted attempt
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        part = dst + ".part"
        try:
            with fs.open_input_stream(f"{src_dir}/{rel}") as src, open(part, "wb") as out:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
        except Exception as e:  # noqa: BLE001 - one line
            raise _storage_error(f"{uri.rstrip('/')}/{rel}" if not single else uri, e) from None
        got = os.path.getsize(part)
        if got != size:
            raise DataError(f"{uri}/{rel}: copied {got} bytes, listed {size}; the dataset changed while staging, "
                            "rerun")
        os.replace(part, dst)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, sorted(listing)))


def read_staged(reader: Callable, root: Optional[str], options: dict[str, Any]):
    """Call a dataset ``reader`` with every remote location (root, ``labels``, ``images``, ...) staged first;
    its error lines name the URI, not the cache folder."""
    remote = {k: v for k, v in options.items() if isinstance(v, str) and is_remote(v)}
    if not (root and is_remote(root)) and not remote:
        return reader(root, **options)
    local_root = stage(root) if root and is_remote(root) else root
    local_opts = {**options, **{k: stage(v) for k, v in remote.items()}}
    try:
        return reader(local_root, **local_opts)
    except DataError as e:
        msg = str(e)
        for uri, local in ([(root, local_root)] if local_root != root else []) + \
                [(v, local_opts[k]) for k, v in remote.items()]:
            msg = msg.replace(str(local), uri.rstrip("/"))
        raise DataError(msg) from None


def staged_for_workers(paths: list[str]) -> list[dict[str, Any]]:
    """What this process staged that ``paths`` (the run's images) come from, as plain data for the
    workers (:func:`localise_splits`)."""
    out = []
    for u, v in STAGED.items():
        local = v["local"].rstrip("/")
        if any(p == local or p.startswith(local + "/") for p in paths):
            out.append({"uri": u, "driver_local": v["local"], "listing": v["listing"]})
    return out


def localise_splits(splits: dict[str, list], staged: list[dict[str, Any]]) -> dict[str, list]:
    """The run's split rows with image paths on this node: stage what the driver staged (``staged``, once
    per node, shared by its workers) and swap the driver's cache prefix for this node's."""
    moves = []
    for s in staged or []:
        here = stage(s["uri"], s["listing"])
        if here != s["driver_local"]:
            moves.append((s["driver_local"], here))
    if not moves:
        return splits

    def move(p: str) -> str:
        for a, b in moves:
            if p == a or p.startswith(a.rstrip("/") + "/"):
                return b + p[len(a):]
        return p

    return {k: [(move(r[0]), *r[1:]) for r in rows] for k, rows in splits.items()}


def fetch_checkpoint(uri: str) -> str:
    """A checkpoint or run folder in object storage as a verified local checkpoint folder.

    Copied once into the node-local cache (:func:`stage`: keyed by the URI and its listing, so a rewritten
    checkpoint is fetched again), then the selected checkpoint's files are checked against its manifest
    (sizes + sha256). Weights are read from safetensors; nothing is unpickled.

    Raises:
        DataError: the storage refused (no bucket, credentials, access).
        CheckpointError: no complete checkpoint there, or a copied file does not match the manifest.
    """
    from swiniqa.checkpoints import require_complete, resolve_checkpoint

    return str(require_complete(resolve_checkpoint(stage(uri)), hashes=True))
