"""Local paths and ``s3://`` / ``gs://`` URIs through pyarrow filesystems: the one place that reads, writes,
lists and copies files wherever they live (experiments, reports, pulled checkpoints, outputs).

* :func:`is_remote`, :func:`filesystem`, :func:`join`, :func:`with_scheme`: what a path is and how to open it;
* :func:`read_text`, :func:`read_json` (None when absent), :func:`load_json` (raises), :func:`write_text`, :func:`write_json` (atomic on a
  local disk), :func:`write_bytes`, :func:`write_atomic`: whole small files;
* :func:`list_dirs`, :func:`list_files`, :func:`list_tree`: folder listings;
* :func:`copy_dir` (local folder up to a URI), :func:`download_file` (one file down, streamed and hashed
  while copied).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
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
        raise DataError(f"cannot write {path}: {os_error_why(e, path)}; pick a writable path") from None
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


def check_output(path: Optional[str], flag: str, folder: bool = False) -> Optional[str]:
    """Prove now, before any work starts, that the output ``path`` (a file, or with ``folder`` a folder) can be
    written; returns it absolute (``s3://``/``gs://`` URIs unchanged).

    The check really writes: it creates the missing parent folders and a hidden probe file where the output
    will go, then removes the probe *and every folder it created*, so a refused path, or a command that fails
    later, leaves no trace of the check. The command creates its folders again when it writes. Every verb's
    output flag (``--output``, ``--out``, ``--predictions``, ``--dest``, ...) goes through here.

    Raises:
        ConfigError: one line naming ``flag``, the path, the real problem (a file where a folder is needed, no
            permission, a read-only or full file system, a folder where a file is expected) and the fix.
    """
    from swiniqa.errors import ConfigError

    if not path:
        return path
    if "://" in str(path):
        if folder and is_remote(str(path)):
            ensure_writable(str(path))
        return path
    p = os.path.abspath(os.path.expanduser(str(path)))
    if folder and os.path.lexists(p) and not os.path.isdir(p):
        raise ConfigError(f"{flag} {path} is a file; give a folder")
    if not folder and os.path.isdir(p):
        raise ConfigError(f"{flag} {path} is a folder; give a file name")
    where = p if folder else os.path.dirname(p)
    blocker = _file_ancestor(where)
    if blocker:
        raise ConfigError(f"{flag} {path}: {blocker} is a file, not a folder; pick another path or move the file")
    created: list[str] = []
    d = where
    while not os.path.lexists(d):
        created.insert(0, d)
        d = os.path.dirname(d)
    try:
        for d in created:
            os.mkdir(d)
        probe = os.path.join(where, f".{os.path.basename(p)}.swiniqa-probe-{os.getpid()}")
        with open(probe, "x"):
            pass
        os.remove(probe)
        if not folder and os.path.exists(p) and not os.access(p, os.W_OK):
            raise PermissionError(13, "Permission denied", p)
    except OSError as e:
        import errno

        if e.filename != p and e.filename not in created:  # the probe: name the folder, not the probe file
            why = (f"{where} does not accept new files ({e.strerror}); pick another path" if e.errno == errno.ENOENT
                   else os_error_text(e, where))
        else:
            why = os_error_text(e, e.filename)
        raise ConfigError(f"{flag} {path}: {why}") from None
    finally:
        for d in reversed(created):
            try:
                os.rmdir(d)
            except OSError:
                pass
    return p


@contextlib.contextmanager
def created_parents(path: str):
    """Create ``path``'s missing parent folders for the block; if the block fails, remove ``path`` and the folders
    it created (a failed command leaves the file system as it found it)."""
    p = os.path.abspath(path)
    created: list[str] = []
    d = os.path.dirname(p)
    while not os.path.lexists(d):
        created.insert(0, d)
        d = os.path.dirname(d)
    existed = os.path.lexists(p)
    try:
        for d in created:
            os.mkdir(d)
        yield p
    except BaseException:
        if not existed and os.path.isfile(p):
            os.unlink(p)
        if created:
            shutil.rmtree(created[0], ignore_errors=True)
        raise


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
        raise SwiniqaError(f"output folder {path} is not writable: {os_error_why(e, e.filename or path)}; pick "
                           "another with --output") from None
    return path


def _file_ancestor(path: str) -> Optional[str]:
    """The nearest existing ancestor of ``path`` (itself included) that is not a folder, or None."""
    p = os.path.abspath(path)
    while True:
        if os.path.lexists(p):
            return None if os.path.isdir(p) else p
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent


def os_error_why(e: OSError, path: Optional[str] = None) -> str:
    """The reason part of "cannot write X: <reason>": the OS's own words (``No space left on device``), except
    where they mislead: ``EEXIST``/``ENOTDIR`` from creating a folder under a *file* name that file."""
    import errno

    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        blocker = _file_ancestor(str(path or e.filename or ""))
        if blocker:
            return f"{blocker} is a file where a folder is needed; move it or pick another path"
    return str(e.strerror or e)


def os_error_text(e: OSError, path: Optional[str] = None) -> str:
    """An OS error on ``path`` (or the error's own file name) as one plain sentence: the real problem and the fix.

    ``EEXIST``/``ENOTDIR`` from creating a folder mean a *file* sits where a folder is needed; the sentence names
    that file instead of repeating "File exists"."""
    import errno

    where = path or e.filename or "the path"
    code = e.errno
    if code in (errno.EEXIST, errno.ENOTDIR):
        blocker = _file_ancestor(str(where)) or (str(e.filename) if e.filename and os.path.isfile(e.filename)
                                                 else None)
        if blocker and blocker != os.path.abspath(str(where)):
            return f"{blocker} is a file, so {where} cannot be created under it; pick another path or move the file"
        if blocker:
            return f"{where} is a file where a folder is needed; pick another path or move the file"
    if code in (errno.EACCES, errno.EPERM):
        return f"no permission to write {where}; pick a writable path or change its permissions"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system; pick a path on a writable one"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"no space left on the device of {where}; free some space or pick another path"
    if code == errno.EISDIR:
        return f"{where} is a folder; give a file name"
    if code == errno.ENOENT:
        return f"{where} does not exist and cannot be created there; check the path"
    return f"cannot write or read {where} ({e.strerror or e}); check the path, its permissions and free space"


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


def load_json(fs, path: str) -> Any:
    """The JSON value of file ``path`` on the pyarrow filesystem ``fs``.

    Raises:
        OSError: it cannot be read. ValueError: it is not JSON (a file cut by a kill).
    """
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode("utf-8"))


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
            raise SwiniqaError(f"cannot write {uri}: {os_error_why(e, path)}") from None

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
