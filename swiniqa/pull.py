"""``swiniqa pull``: copy the best checkpoint(s) of an experiment or run to a local folder, verified.

    from swiniqa.pull import pull
    res = pull("s3://bucket/runs/lr-demo", "models", top=3)   # or a local path / file:// URI
    res["checkpoint"]   # local folder of the best checkpoint: load it with swiniqa.models.loading.load_model

What it reads (any pyarrow filesystem: local paths, ``file://``, ``s3://``, ``gs://``; credentials come
from the environment, e.g. ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_ENDPOINT_URL_S3`` or
``GOOGLE_APPLICATION_CREDENTIALS``, never from files or flags):

* a Tune experiment folder with ``results.json`` (one row per trial, ``checkpoint`` = that trial's best
  checkpoint): trials are ranked by the row's metric. Rows whose checkpoint is gone (Ray's
  ``num_to_keep``) or incomplete are skipped. A checkpoint path recorded elsewhere (the experiment was
  moved or uploaded) is looked up again under ``<experiment>/train/<run>/``;
* otherwise any folder tree (a ``swiniqa train`` run folder ``<output>/<name>/checkpoint_epochNNNN/``,
  a single checkpoint folder, a folder of runs): every complete checkpoint folder (``model.safetensors``
  + ``config.json`` + ``metrics.json``; hidden/temporary folders starting with ``.`` ignored) is ranked
  by the metric in its own ``metrics.json``.

Half-written checkpoints (no ``metrics.json``) are never picked, and a NaN/missing metric is never
ranked: such candidates are left out. A picked checkpoint whose files disagree with its
``manifest.json`` (sizes in the listing, then the copy's sha256; JSON that does not parse; a
safetensors file shorter than its header says) is skipped by name and the next best is taken.

What it writes into ``DEST`` (created; must be empty unless ``force``):

* ``top == 1``: ``DEST/best/``;
* ``top == K > 1``: ``DEST/rank1_<name>/`` ... ``DEST/rankK_<name>/`` (``<name>`` = the trial's run name,
  e.g. ``lr3e-4-seed1``, or the checkpoint's path below the source joined with ``-``).

Each folder holds every file of the source checkpoint (weights, ``config.json``, ``metrics.json``, ...)
plus ``pulled.json`` (source URI, metric, value, rank, size and sha256 of every file). Files are copied
into ``DEST/.tmp-pull-*``, re-read and checked against the source's sizes and hashes, and only then
renamed into place, so a failed pull leaves no half-copied folder. ``force`` replaces earlier pulled
folders (those with a ``pulled.json``) and the target folders; other files in ``DEST`` are kept.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from swiniqa.errors import SwiniqaError, did_you_mean
from swiniqa.layout import CONFIG, METRICS, PULLED_FILE, RESULTS_FILE, TRAIN_DIR, WEIGHTS
from swiniqa.parsing import finite_float
from swiniqa.storage import download_file, filesystem, is_remote, list_tree, load_json

_REQUIRED = (WEIGHTS, CONFIG, METRICS)

__all__ = ["pull", "redact"]


# --------------------------------------------------------------------------------------------- helpers
def redact(uri: str) -> str:
    """``uri`` without credentials (``user:secret@`` and secret-looking query values) for printing."""
    s = str(uri)
    if "://" not in s:
        return s
    try:
        parts = urlsplit(s)
    except ValueError:
        return s.split("://", 1)[0] + "://<redacted>"
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    query = parts.query
    if query:
        q = [(k, "***" if re.search(r"key|secret|token|password|credential|session", k, re.I) else v)
             for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(q, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _fs_uri(base: str, base_path: str, path: str) -> str:
    """The URI (as the user would write it) of ``path`` on the filesystem opened for ``base``."""
    if "://" not in base:
        return path
    scheme = base.split("://", 1)[0]
    if scheme == "file":
        return path
    if path.startswith(base_path):
        return base.split("?", 1)[0].rstrip("/") + path[len(base_path.rstrip("/")):]
    return f"{scheme}://{path}"


def _safe_name(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._=+-]+", "-", s).strip("-.")
    return s[:120] or "checkpoint"


@dataclass
class _Candidate:
    fs: Any
    path: str                    # path on fs of the checkpoint folder
    uri: str                     # how the user would name it (credentials redacted when printed)
    name: str
    files: dict[str, int]        # relative file path -> size
    value: Optional[float] = None
    has_metric: bool = False
    metrics_keys: list[str] = field(default_factory=list)
    row: Optional[dict[str, Any]] = None


def _visible(rel: str) -> bool:
    return not any(part.startswith(".") for part in rel.split("/"))


def _checkpoint_files(fs, folder: str) -> dict[str, int]:
    """{relative path: size} of the files of one checkpoint folder (hidden entries skipped)."""
    return {rel: size for rel, size in list_tree(fs, folder).items() if _visible(rel)}


def _complete(files: dict[str, int]) -> bool:
    return all(n in files for n in _REQUIRED)


def _scan(fs, root: str, base_uri: str, skipped: list[str]) -> list[_Candidate]:
    """Every checkpoint folder at or below ``root`` that has its weights, config and metrics (the folders are
    found by :func:`swiniqa.checkpoints.checkpoint_folders`, the one scanner; the others are noted in
    ``skipped``)."""
    from swiniqa.checkpoints import checkpoint_folders

    root_n = root.rstrip("/")
    listing = {rel: size for rel, size in list_tree(fs, root_n).items() if _visible(rel)}
    out = []
    for rel in checkpoint_folders(listing):
        d = f"{root_n}/{rel}" if rel else root_n
        files = {f[len(rel) + 1:] if rel else f: size for f, size in listing.items()
                 if not rel or f.startswith(rel + "/")}
        uri = _fs_uri(base_uri, root_n, d)
        if not _complete(files):
            missing = ", ".join(n for n in _REQUIRED if n not in files)
            skipped.append(f"incomplete checkpoint {redact(uri)} skipped: no {missing}")
            continue
        parts = (rel or os.path.basename(root_n)).split("/")
        if len(parts) > 1 and parts[0] == TRAIN_DIR:
            parts = parts[1:]
        out.append(_Candidate(fs, d, uri, _safe_name("-".join(parts)), files))
    return out


def _metric_of(cand: _Candidate, metric: str, metrics: Optional[dict[str, Any]] = None) -> None:
    if metrics is None:
        try:
            metrics = load_json(cand.fs, cand.path + "/" + METRICS)
        except Exception:  # noqa: BLE001 - unreadable metrics.json: the folder is not ranked
            metrics = {}
    if not isinstance(metrics, dict):
        metrics = {}
    cand.metrics_keys = sorted(metrics)
    cand.has_metric = metric in metrics
    cand.value = finite_float(metrics.get(metric))


class _Opener:
    """Opens paths/URIs recorded in results.json, reusing the experiment's filesystem where it can."""

    def __init__(self, base_uri: str, base_fs, base_path: str):
        self.base_uri, self.base_fs, self.base_path = base_uri, base_fs, base_path.rstrip("/")
        self.prefix = base_uri.split("?", 1)[0].rstrip("/")

    def open(self, ref: str) -> Optional[tuple[Any, str, str]]:
        ref = str(ref)
        if "://" in ref and ref.split("?", 1)[0].rstrip("/").startswith(self.prefix + "/") and "://" in self.base_uri:
            tail = ref.split("?", 1)[0].rstrip("/")[len(self.prefix):]
            return self.base_fs, self.base_path + tail, ref
        if "://" not in ref and not os.path.isabs(ref):
            p = self.base_path + "/" + ref.strip("/")
            return self.base_fs, p, _fs_uri(self.base_uri, self.base_path, p)
        try:
            fs, path = filesystem(ref)
        except SwiniqaError:
            return None
        return fs, path.rstrip("/"), ref


def _from_results(rows: list, fs, root: str, base_uri: str, metric: str, skipped: list[str]) -> list[_Candidate]:
    opener = _Opener(base_uri, fs, root)
    out: list[_Candidate] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        run = row.get("run") or (f"{row['cell']}-seed{row['seed']}" if row.get("cell") is not None
                                 and row.get("seed") is not None else None) or row.get("trial_id") or f"trial{i}"
        tries: list[tuple[Any, str, str]] = []
        ref = row.get("checkpoint")
        if ref:
            o = opener.open(ref)
            if o:
                tries.append(o)
            # The experiment was moved/uploaded: look for the same checkpoint below this experiment.
            m = re.search(r"(?:^|/)(train/[^/]+/[^/]+)/?$", str(ref).split("?", 1)[0])
            if m:
                tries.append(opener.open(m.group(1)))
        if row.get("best_epoch") and row.get("run"):
            tries.append(opener.open(f"train/{row['run']}/checkpoint_epoch{int(row['best_epoch']):04d}"))
        found = None
        tried: set[str] = set()
        for t in tries:
            if t is None or t[1] in seen or t[1] in tried:
                continue
            tried.add(t[1])
            files = _checkpoint_files(t[0], t[1])
            if _complete(files):
                found = (t, files)
                break
        if found is None:
            if ref or row.get("best_epoch"):
                skipped.append(f"{run}: checkpoint {redact(str(ref)) if ref else '(none recorded)'} is missing or incomplete")
            continue
        (cfs, cpath, curi), files = found
        seen.add(cpath)
        cand = _Candidate(cfs, cpath, curi, _safe_name(str(run)), files, row=row)
        if metric in row:
            cand.has_metric = True
            cand.value = finite_float(row.get(metric))
            cand.metrics_keys = sorted(k for k, v in row.items() if finite_float(v) is not None or v is None)
        else:
            _metric_of(cand, metric)
        out.append(cand)
    return out


# --------------------------------------------------------------------------------------------- copying
def _copy_checkpoint(cand: _Candidate, dst_dir: str) -> dict[str, dict[str, Any]]:
    """Copy and verify every file of ``cand``; {relative path: {size, sha256}} of the verified copy."""
    from swiniqa.checkpoints import sha256_file

    out: dict[str, dict[str, Any]] = {}
    for rel, listed_size in sorted(cand.files.items()):
        dst = os.path.join(dst_dir, *rel.split("/"))
        try:
            n, digest = download_file(cand.fs, cand.path + "/" + rel, dst)
        except OSError as e:
            raise SwiniqaError(f"cannot copy {redact(cand.uri)}/{rel} to {dst}: {str(e).splitlines()[0] if str(e) else e}; "
                               "check the source and credentials (from the environment) and rerun") from None
        if n != listed_size:
            raise SwiniqaError(f"copy of {redact(cand.uri)}/{rel} read {n} bytes but the source lists {listed_size} "
                               "(the file changed or the read was cut short); nothing was written, rerun the pull")
        got_n, got = os.path.getsize(dst), sha256_file(dst)
        if got_n != n or got != digest:
            raise SwiniqaError(f"copy of {redact(cand.uri)}/{rel} failed verification (size {got_n} vs {n}, sha256 "
                               f"{got[:12]}.. vs source {digest[:12]}..); nothing was written to the destination, "
                               "check the disk and rerun the pull")
        out[rel] = {"size": n, "sha256": digest}
    return out


def _incomplete(work: str) -> Optional[str]:
    """Why the copied checkpoint in ``work`` is incomplete, or None when every file is whole.

    The copy is byte-identical to the source (checked while copying), so this checks the *source*: its
    manifest (sizes and sha256, written last by the checkpoint writer) when it has one, the rules of
    :func:`~swiniqa.checkpoints.verify_checkpoint` for older ones, and in any case parseable JSON
    files and safetensors files whose length matches their header.
    """
    from swiniqa.checkpoints import verify_checkpoint

    problems = verify_checkpoint(work, hashes=True)  # the copy equals the source: this checks the source
    if problems:
        return "; ".join(problems)
    for name in sorted(os.listdir(work)):
        path = os.path.join(work, name)
        if name.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            except (ValueError, OSError) as e:
                return f"{name} is not valid JSON ({str(e).splitlines()[0]})"
        elif name.endswith(".safetensors"):
            why = _safetensors_problem(path)
            if why:
                return f"{name} {why}"
    return None


def _listing_problems(cand: _Candidate) -> Optional[str]:
    """Why the source checkpoint is incomplete by its listing alone (file sizes against its manifest)."""
    from swiniqa.checkpoints import manifest_problems
    from swiniqa.layout import MANIFEST

    if MANIFEST not in cand.files:
        return None
    try:
        files = load_json(cand.fs, cand.path + "/" + MANIFEST)["files"]
        problems = manifest_problems(files, cand.files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"{MANIFEST} is unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return "; ".join(problems) or None


def _safetensors_problem(path: str) -> Optional[str]:
    """None when the file's length is what its header promises, else why not."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                return f"is truncated ({size} bytes, header says more)"
            header = json.loads(f.read(n))
    except (ValueError, OSError) as e:
        return f"has an unreadable header ({e})"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and "data_offsets" in v]
    want = 8 + n + max(ends, default=0)
    return None if want == size else f"is {size} bytes but its header says {want} (truncated or corrupt)"


# --------------------------------------------------------------------------------------------- pull
def _candidates(source: str, metric: str) -> tuple[list[_Candidate], str, list[str]]:
    import pyarrow.fs as pafs

    shown = redact(source)
    try:
        fs, root = filesystem(source)
    except SwiniqaError as e:
        raise SwiniqaError(str(e).replace(source, shown)) from None
    root = root.rstrip("/") or root
    try:
        info = fs.get_file_info(root)
    except Exception as e:  # noqa: BLE001
        raise SwiniqaError(f"cannot read {shown}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                           "check the URI and the credentials in the environment") from None
    if info.type == pafs.FileType.NotFound and is_remote(source):
        # Object stores have no real folders: a prefix exists when something lies below it.
        if list_tree(fs, root):
            info = pafs.FileInfo(root, pafs.FileType.Directory)
    if info.type == pafs.FileType.NotFound:
        raise SwiniqaError(f"experiment or run not found: {shown}; give the folder `swiniqa tune` or `swiniqa train` "
                           "printed (a local path or s3:// gs:// file:// URI)")
    if info.type != pafs.FileType.Directory:
        raise SwiniqaError(f"{shown} is a file; give the experiment, run or checkpoint folder that holds it")
    skipped: list[str] = []
    rows = None
    try:
        rinfo = fs.get_file_info(root + "/" + RESULTS_FILE)
        if rinfo.type == pafs.FileType.File:
            data = load_json(fs, root + "/" + RESULTS_FILE)
            if isinstance(data, dict):
                data = data.get("trials") or data.get("rows")
            rows = data if isinstance(data, list) else None
            if rows is None:
                skipped.append(f"{RESULTS_FILE} holds no list of trials; scanned the folder instead")
    except (OSError, ValueError) as e:
        skipped.append(f"{RESULTS_FILE} is unreadable ({str(e).splitlines()[0] if str(e) else e}); scanned the folder instead")
    if rows is not None:
        cands = _from_results(rows, fs, root, source, metric, skipped)
        if cands:
            return cands, RESULTS_FILE, skipped
        skipped.append(f"{RESULTS_FILE} lists no existing checkpoint; ranked the checkpoint folders found below instead")
    cands = _scan(fs, root, source, skipped)
    for c in cands:
        _metric_of(c, metric)
    return cands, "scan", skipped


def _rank(cands: list[_Candidate], metric: str, mode: str, source: str) -> list[_Candidate]:
    shown = redact(source)
    if not cands:
        raise SwiniqaError(f"no complete checkpoint under {shown} (a folder with {WEIGHTS}, {CONFIG} and {METRICS}); "
                           "give a `swiniqa tune` experiment or `swiniqa train` run folder, or wait for its first epoch")
    if not any(c.has_metric for c in cands):
        keys = sorted({k for c in cands for k in c.metrics_keys})
        raise SwiniqaError(f"metric '{metric}' is recorded for none of the {len(cands)} checkpoints under {shown}; "
                           f"{did_you_mean(metric, keys) + ' ' if did_you_mean(metric, keys) else ''}"
                           f"pick one with --metric ({', '.join(keys[:20]) or 'no metrics recorded'})")
    ranked = [c for c in cands if c.value is not None]
    if not ranked:
        raise SwiniqaError(f"every checkpoint under {shown} has a NaN or missing {metric}, so none can be ranked; "
                           "pick another --metric or look at the runs' logs")
    sign = -1.0 if mode == "max" else 1.0
    return sorted(ranked, key=lambda c: (sign * c.value, c.name, c.path))


def _undo(tmp: str, dest_path: str, created: bool) -> None:
    """Leave ``dest`` as it was: the staging folder removed, and ``dest`` itself when the pull made it."""
    shutil.rmtree(tmp, ignore_errors=True)
    if created:
        shutil.rmtree(dest_path, ignore_errors=True)


def _stage(ranked: list[_Candidate], top: int, tmp: str, source: str, how: str, metric: str, mode: str,
           skipped: list[str]) -> list[tuple[str, str, _Candidate, dict[str, Any]]]:
    """Copy the ``top`` best *complete* checkpoints into ``tmp``, skipping incomplete ones by name."""
    staged: list[tuple[str, str, _Candidate, dict[str, Any]]] = []
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for cand in ranked:
        if len(staged) == top:
            break
        rank = len(staged) + 1
        folder = "best" if top == 1 else f"rank{rank}_{cand.name}"
        why = _listing_problems(cand)  # sizes against the source's manifest: no download of a broken one
        if why:
            skipped.append(f"incomplete checkpoint {redact(cand.uri)} skipped: {why}")
            continue
        work = os.path.join(tmp, folder)
        os.makedirs(work)
        files = _copy_checkpoint(cand, work)
        why = _incomplete(work)
        if why:
            shutil.rmtree(work, ignore_errors=True)
            skipped.append(f"incomplete checkpoint {redact(cand.uri)} skipped: {why}")
            continue
        prov = {
            "source": redact(cand.uri), "experiment": redact(str(source)), "selected_from": how,
            "name": cand.name, "metric": metric, "mode": mode, "value": cand.value, "rank": rank,
            "pulled_at": now, "files": files,
        }
        if cand.row is not None:
            prov["trial"] = {k: cand.row.get(k) for k in ("trial_id", "run", "cell", "seed", "status", "best_epoch",
                                                         "epochs_run", "val_srcc", "val_plcc", "test_srcc",
                                                         "test_plcc") if k in cand.row}
        with open(os.path.join(work, PULLED_FILE), "w") as f:
            f.write(json.dumps(prov, indent=2, sort_keys=True) + "\n")
        staged.append((folder, work, cand, prov))
    if not staged:
        raise SwiniqaError(f"every checkpoint under {redact(str(source))} that could be ranked is incomplete ("
                           + "; ".join(x for x in skipped if x.startswith("incomplete"))[:600]
                           + "); nothing was pulled")
    return staged


def _dest_folder(dest: str, force: bool) -> str:
    """The absolute local ``--dest`` folder, or a one-line error when it cannot take a pull."""
    if is_remote(str(dest)):
        raise SwiniqaError(f"--dest must be a local folder, not {redact(str(dest))}; pull to a local folder "
                           "(or copy the experiment's folder with your storage tools)")
    dest_path = os.path.abspath(str(dest)[len("file://"):] if str(dest).startswith("file://") else str(dest))
    if os.path.exists(dest_path) and not os.path.isdir(dest_path):
        raise SwiniqaError(f"--dest {dest_path} is a file; give a folder to pull into")
    if os.path.isdir(dest_path) and os.listdir(dest_path) and not force:
        raise SwiniqaError(f"--dest {dest_path} exists and is not empty; give an empty/new folder or pass --force "
                           "to replace earlier pulls in it")
    from swiniqa.storage import check_output

    return check_output(dest_path, "--dest", folder=True)  # writable, proven now; leaves nothing behind


def _place(staged: list, dest_path: str, tmp: str) -> list[tuple[str, _Candidate, dict[str, Any]]]:
    """Everything copied and verified: move it into place (earlier pulls and the target folders aside first,
    into the staging folder, removed with it). Returns (final folder, candidate, provenance) per pull."""
    old = os.path.join(tmp, ".old")
    os.makedirs(old)
    targets = {folder for folder, *_ in staged}
    for entry in sorted(os.listdir(dest_path)):
        p = os.path.join(dest_path, entry)
        if p == tmp or entry.startswith(".tmp-pull-"):
            continue
        earlier_pull = os.path.isdir(p) and os.path.isfile(os.path.join(p, PULLED_FILE))
        if entry in targets or earlier_pull:
            os.replace(p, os.path.join(old, entry))
    results = []
    for folder, work, cand, prov in staged:
        final = os.path.join(dest_path, folder)
        os.replace(work, final)
        results.append((final, cand, prov))
    return results


def _best_summary(best_dir: str, best: _Candidate) -> tuple[Optional[float], dict[str, Any]]:
    """(val SRCC, config) of the pulled best checkpoint: the results row's SRCC when it has one."""
    with open(os.path.join(best_dir, METRICS)) as f:
        best_metrics = json.loads(f.read())
    with open(os.path.join(best_dir, CONFIG)) as f:
        best_config = json.loads(f.read())
    srcc = finite_float(best.row.get("val_srcc")) if best.row is not None and "val_srcc" in best.row else None
    if srcc is None:
        srcc = finite_float(best_metrics.get("val_srcc"))
    return srcc, best_config


def pull(source: str, dest: str, metric: str = "val_srcc", mode: str = "max", top: int = 1,
         force: bool = False) -> dict[str, Any]:
    """Copy the ``top`` best checkpoints of ``source`` (experiment, run, or checkpoint folder; local path or
    ``s3://`` ``gs://`` ``file://`` URI) ranked by ``metric`` (``mode`` max/min) into local ``dest``.

    Returns ``{"checkpoint": local folder of the best, "srcc": its val_srcc, "config": its config dict,
    "checkpoints": [{"rank", "checkpoint", "metric", "value", "source", "name"}, ...], "dest", "metric", "mode",
    "skipped": [why a candidate was left out, ...]}``. Layout and verification: see the module docstring.
    """
    if mode not in ("max", "min"):
        raise SwiniqaError(f"mode must be 'max' or 'min', not {mode!r}; use --mode max for SRCC/PLCC, min for losses")
    try:
        top = int(top)
    except (TypeError, ValueError):
        raise SwiniqaError(f"--top must be a whole number >= 1, not {top!r}") from None
    if top < 1:
        raise SwiniqaError(f"--top must be >= 1, not {top}")
    dest_path = _dest_folder(dest, force)

    cands, how, skipped = _candidates(str(source), metric)
    ranked = _rank(cands, metric, mode, str(source))
    unranked = [c.name for c in cands if c.value is None]
    if unranked:
        skipped.append(f"not ranked (NaN or no {metric}): {', '.join(unranked[:10])}"
                       + (f" and {len(unranked) - 10} more" if len(unranked) > 10 else ""))

    created = not os.path.isdir(dest_path)
    try:
        os.makedirs(dest_path, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-pull-", dir=dest_path)
    except OSError as e:
        if created:
            shutil.rmtree(dest_path, ignore_errors=True)
        raise SwiniqaError(f"cannot write into --dest {dest_path} ({e.strerror or e}); pick a writable folder") from None
    try:
        results = _place(_stage(ranked, top, tmp, source, how, metric, mode, skipped), dest_path, tmp)
    except OSError as e:
        _undo(tmp, dest_path, created)
        raise SwiniqaError(f"cannot write into --dest {dest_path} ({e.strerror or e}); nothing was pulled; free "
                           "space or pick a writable folder") from None
    except BaseException:
        _undo(tmp, dest_path, created)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    if len(results) < top:
        skipped.append(f"asked for the top {top} but only {len(results)} complete checkpoint(s) have a finite {metric}")

    best_dir, best, _ = results[0]
    srcc, best_config = _best_summary(best_dir, best)
    return {
        "checkpoint": best_dir, "srcc": srcc, "config": best_config, "metric": metric, "mode": mode,
        "dest": dest_path, "source": redact(str(source)), "selected_from": how,
        "checkpoints": [{"rank": p["rank"], "checkpoint": d, "metric": metric, "value": c.value,
                         "source": p["source"], "name": c.name} for d, c, p in results],
        "skipped": skipped,
    }
