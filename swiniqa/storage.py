"""Local paths and ``s3://`` / ``gs://`` URIs through pyarrow filesystems."""

from __future__ import annotations

import os
from typing import Callable

from swiniqa.errors import DataError, SwiniqaError


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def filesystem(uri: str):
    """(pyarrow FileSystem, path) for a local path or URI; errors name the URI."""
    import pyarrow.fs as pafs

    try:
        if "://" in str(uri):
            return pafs.FileSystem.from_uri(str(uri))
        return pafs.LocalFileSystem(), os.path.abspath(str(uri))
    except Exception as e:  # noqa: BLE001
        raise SwiniqaError(f"cannot open storage {uri}: {str(e).splitlines()[0]}; check the URI and credentials "
                           "(taken from the environment)") from None


def copy_dir(local_dir: str, uri: str) -> None:
    """Copy a local folder's files to ``uri`` (created)."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    try:
        fs.create_dir(path, recursive=True)
        pafs.copy_files(local_dir, path, destination_filesystem=fs)
    except Exception as e:  # noqa: BLE001
        raise SwiniqaError(f"cannot write to {uri}: {str(e).splitlines()[0]}") from None


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Write a local file through ``write(temp_path)``, then rename it into place: a reader never sees half a
    file, an OS error (read-only or full file system) is one user error naming ``path``, no temp file stays."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}; pick a writable path") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(uri: str, data: bytes) -> None:
    """Write one file to a local path or URI (parent folders created)."""
    fs, path = filesystem(uri)
    try:
        fs.create_dir(os.path.dirname(path), recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(data)
    except Exception as e:  # noqa: BLE001
        raise SwiniqaError(f"cannot write {uri}: {str(e).splitlines()[0]}") from None


def ensure_writable(uri: str) -> str:
    """Create the output location and prove it is writable before any work starts."""
    if is_remote(uri):
        fs, path = filesystem(uri)
        try:
            fs.create_dir(path, recursive=True)
        except Exception as e:  # noqa: BLE001
            raise SwiniqaError(f"output {uri} is not writable: {str(e).splitlines()[0]}; check credentials") from None
        return uri
    path = os.path.abspath(uri)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".swiniqa-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise SwiniqaError(f"output folder {path} is not writable ({e.strerror}); pick another with --output") from None
    return path


def with_scheme(path: str, like: str) -> str:
    """``path`` inside a filesystem as a URI with ``like``'s scheme (Ray's ``Checkpoint.path`` on S3 is
    ``bucket/prefix/...`` without ``s3://``); local paths come back unchanged."""
    if not is_remote(like) or is_remote(path):
        return path
    return f"{str(like).split('://', 1)[0]}://{str(path).lstrip('/')}"


def fetch_checkpoint(uri: str) -> str:
    """A checkpoint or run folder in object storage as a verified local checkpoint folder.

    Copied once into the node-local cache (``swiniqa.data.staging``: keyed by the URI and its listing, so
    a rewritten checkpoint is fetched again), then the selected checkpoint's files are checked against
    its manifest (sizes + sha256). Weights are read from safetensors; nothing is unpickled.

    Raises:
        DataError: the storage refused (no bucket, credentials, access).
        CheckpointError: no complete checkpoint there, or a copied file does not match the manifest.
    """
    from swiniqa.data.staging import stage
    from swiniqa.training.checkpoint import require_complete, resolve_checkpoint

    return str(require_complete(resolve_checkpoint(stage(uri)), hashes=True))
