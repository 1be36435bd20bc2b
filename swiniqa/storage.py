"""Local paths and ``s3://`` / ``gs://`` URIs through pyarrow filesystems: the one place that reads, writes,
lists and copies files wherever they live (experiments, reports, pulled checkpoints, outputs).

* :func:`is_remote`, :func:`filesystem`, :func:`join`, :func:`with_scheme`: what a path is and how to open it;
* :func:`read_text`, :func:`read_json` (None when absent), :func:`write_text`, :func:`write_json` (atomic on a
  local disk), :func:`write_bytes`, :func:`write_atomic`: whole small files;
* :func:`list_dirs`, :func:`list_files`, :func:`list_tree`: folder listings;
* :func:`copy_dir` (local folder up to a URI), :func:`download_dir` (a folder down to a local one),
  :func:`download_file` (one file, streamed and hashed while copied).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from typing import Any, Callable, Optional

from swiniqa.errors import DataError, SwiniqaError


#: ``scheme://`` at the start of a string (RFC 3986 scheme characters).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(uri: str) -> Optional[str]:
    """The URI scheme of ``uri`` in lower case (``s3``, ``gs``, ``file``), or None for a plain path."""
    m = _SCHEME.match(str(uri))
    return m.group(1).lower() if m else None


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names object or network storage (``s3://``, ``gs://``, ``gcs://``, ``hdfs://``, ...):
    it *starts* with a scheme other than ``file``. A local path that merely contains ``://`` (a folder named
    ``b:``) is local."""
    return scheme(uri) not in (None, "file")


def filesystem(uri: str):
    """(pyarrow FileSystem, path) for a local path or URI; errors name the URI."""
    import pyarrow.fs as pafs

    try:
        if scheme(uri):
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


# ------------------------------------------------------------------------------------------ whole files
def join(uri: str, *parts: str) -> str:
    """``uri/part/...`` for a local path or a URI (always ``/``)."""
    return "/".join([str(uri).rstrip("/"), *parts])


def read_text(uri: str) -> Optional[str]:
    """A file's text (undecodable bytes replaced), or None when it does not exist or cannot be read."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def read_json(uri: str) -> Any:
    """A JSON file's value, or None when it does not exist or does not parse (a file cut by a kill)."""
    text = read_text(uri)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def write_text(uri: str, text: str) -> None:
    """Write a text file (parent folders created): atomically on a local disk (temp + rename), one object
    PUT in object storage (also atomic for readers)."""
    if not is_remote(uri):
        path = filesystem(uri)[1]
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise SwiniqaError(f"cannot write {uri}: {e.strerror or e}") from None

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        try:
            write_atomic(path, write)
        except DataError as e:
            raise SwiniqaError(str(e)) from None
        return
    write_bytes(uri, text.encode("utf-8"))


def json_safe(o: Any) -> Any:
    """``o`` as strict JSON values: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, bool) or o is None or isinstance(o, str):
        return o
    if hasattr(o, "item") and callable(o.item) and getattr(o, "shape", None) == ():
        o = o.item()  # numpy scalar
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    return o


def write_json(uri: str, obj: Any) -> None:
    """:func:`write_text` of ``obj`` as indented strict JSON (:func:`json_safe`)."""
    write_text(uri, json.dumps(json_safe(obj), indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------ listings
def _entries(uri: str, recursive: bool) -> list:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    try:
        return fs.get_file_info(pafs.FileSelector(path.rstrip("/") or path, recursive=recursive,
                                                  allow_not_found=True))
    except OSError:
        return []


def list_dirs(uri: str) -> list[str]:
    """Sorted names of the sub-folders of one folder; [] when it is missing."""
    import pyarrow.fs as pafs

    return sorted(i.base_name for i in _entries(uri, False) if i.type == pafs.FileType.Directory)


def list_files(uri: str) -> list[str]:
    """Sorted names of the files of one folder; [] when it is missing."""
    import pyarrow.fs as pafs

    return sorted(i.base_name for i in _entries(uri, False) if i.type == pafs.FileType.File)


def list_tree(fs, root: str) -> dict[str, int]:
    """{relative path: size} of every file at or below ``root`` on ``fs`` ({} when it is missing)."""
    import pyarrow.fs as pafs

    base = root.rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(base or root, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1:]: int(i.size) for i in infos
            if i.type == pafs.FileType.File and i.path.startswith(base + "/")}


# ------------------------------------------------------------------------------------------ copies
_CHUNK = 1 << 20


def download_file(fs, path: str, dst: str) -> tuple[int, str]:
    """Stream one file from ``fs`` to local ``dst`` (folders created, fsynced); returns (bytes read, sha256
    of the bytes read), to compare with the source's listing and the copy's own hash."""
    h = hashlib.sha256()
    n = 0
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    with fs.open_input_stream(path) as src, open(dst, "wb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return n, h.hexdigest()


def download_dir(uri: str, local_dir: str) -> str:
    """Copy the files of the folder ``uri`` (local or remote) into ``local_dir`` (created); returns it."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    try:
        os.makedirs(local_dir, exist_ok=True)
        pafs.copy_files(path, local_dir, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except Exception as e:  # noqa: BLE001
        raise SwiniqaError(f"cannot copy {uri} to {local_dir}: {str(e).splitlines()[0]}") from None
    return local_dir
