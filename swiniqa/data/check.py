"""Data check: decode every image of a dataset once, before any GPU time is spent.

``check_dataset(info)`` returns a :class:`CheckReport` naming each missing, empty, truncated or
non-image file, plus warnings (duplicate paths, out-of-range or constant scores, tiny images that
get scaled up). Files already verified are remembered in a small JSON cache keyed by
(path, size, mtime), so re-checking an unchanged dataset is near-instant. Nothing is printed except
the progress line on stderr (``progress=False`` silences it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import PIL
from PIL import ImageFile

from swiniqa.data.images import decode_image, target_size
from swiniqa.data.records import DatasetInfo
from swiniqa.errors import DataError
from swiniqa.parsing import finite_float

CACHE_VERSION = 1

def expected_range(dataset: str, column: str) -> Optional[tuple[float, float]]:
    """Expected score range of ``column`` in the official release of ``dataset`` (its spec), if known."""
    from swiniqa.data.records import canonical_name, DATASETS

    name = canonical_name(dataset)
    return DATASETS[name].score_range.get(column) if name else None


@dataclass
class CheckReport:
    """Outcome of :func:`check_dataset`. ``errors`` are ``{"image": path, "why": reason}``."""

    images: int
    errors: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The reader's notes (which columns were used, score direction, ...), shown by every verb.
    notes: list[str] = field(default_factory=list)
    dataset: str = ""
    root: str = ""
    cached: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def default_cache_file(info: DatasetInfo, cache_dir: Optional[Union[str, os.PathLike]] = None) -> Path:
    """``<cache_dir>/<hash of root+name>.json``; cache_dir defaults to ~/.cache/swiniqa/checks."""
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache_dir = os.path.join(base, "swiniqa", "checks")
    key = hashlib.sha256(f"{os.path.abspath(info.root)}\n{info.name}".encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{key}.json"


def _load_cache(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("version") == CACHE_VERSION and data.get("pillow") == PIL.__version__:
            return dict(data.get("files") or {})
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _save_cache(path: Path, files: dict) -> Optional[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".check-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"version": CACHE_VERSION, "pillow": PIL.__version__, "files": files}, f)
        os.replace(tmp, path)
    except OSError as e:
        return f"could not write the check cache {path}: {e.strerror or e}"
    return None


class _Progress:
    """One updating stderr line: ``data check: 123/456 images``."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.last = total, enabled, 0, 0.0
        self.lock = threading.Lock()

    def step(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if self.enabled and n and self.done < self.total and now - self.last >= 0.2:
                self.last = now
                sys.stderr.write(f"\rdata check: {self.done}/{self.total} images")
                sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write(f"\rdata check: {self.done}/{self.total} images\n")
            sys.stderr.flush()


def _examples(items: list[str], k: int = 3) -> str:
    shown = ", ".join(items[:k])
    return shown + (f", ... ({len(items) - k} more)" if len(items) > k else "")


def check_dataset(info: DatasetInfo, resize: Optional[tuple[int, int]] = None, resize_short: Optional[int] = None,
                  min_side: int = 224, threads: int = 2, progress: bool = True,
                  cache_dir: Optional[Union[str, os.PathLike]] = None, use_cache: bool = True) -> CheckReport:
    """Decode every image of ``info`` once (as training would: same resize and ``min_side``).

    Args:
        info: the dataset (records from a reader).
        resize, resize_short, min_side: the preprocessing training would apply.
        threads: decoding threads.
        progress: one updating line on stderr.
        cache_dir: where verified files are remembered (default ~/.cache/swiniqa/checks).
        use_cache: False decodes every file again.
    Returns:
        a :class:`CheckReport`; it raises only for programming errors, never for bad files.
    """
    t0 = time.monotonic()
    report = CheckReport(images=len(info.records), dataset=info.name, root=str(info.root), notes=list(info.notes))
    if not info.records:
        report.errors.append({"image": str(info.root), "why": "the dataset has no images"})
        return report
    paths = _label_checks(info, report)
    cache_file = default_cache_file(info, cache_dir) if use_cache else None
    cache = _load_cache(cache_file) if cache_file is not None else {}
    sizes, errors, verified, todo = _decode_all(paths, cache, report, resize, resize_short, min_side, threads,
                                                progress)
    order = {p: i for i, p in enumerate(paths)}
    report.errors.extend({"image": p, "why": errors[p]} for p in sorted(errors, key=order.__getitem__))

    tiny = []
    for p in paths:
        if p in sizes:
            w, h = sizes[p]
            if target_size(w, h, resize, resize_short, 1) != target_size(w, h, resize, resize_short, min_side):
                tiny.append(f"{os.path.basename(p)} ({w}x{h})")
    if tiny:
        report.warnings.append(f"{len(tiny)} images end up smaller than {min_side} px on the short side and are "
                               f"scaled up to it: {_examples(tiny)}")

    if cache_file is not None and todo:
        # keep entries of other files (e.g. a run with a different subset) and add the new ones
        cache.update(verified)
        for p in errors:
            cache.pop(p, None)
        warn = _save_cache(cache_file, cache)
        if warn:
            report.warnings.append(warn)
    report.seconds = round(time.monotonic() - t0, 3)
    return report


def _label_checks(info: DatasetInfo, report: CheckReport) -> list[str]:
    """Checks that need no decoding (duplicates, non-finite, constant or out-of-range scores); the
    distinct image paths in order."""
    seen: dict[str, int] = {}
    for r in info.records:
        seen[r.path] = seen.get(r.path, 0) + 1
    dups = sorted(p for p, c in seen.items() if c > 1)
    if dups:
        report.warnings.append(f"{len(dups)} image paths are listed more than once: {_examples(dups)}")
    bad_scores = [r for r in info.records if finite_float(r.score) is None]
    for r in bad_scores:
        report.errors.append({"image": r.path, "why": f"score is {r.score!r}, not a finite number"})
    bad_ids = {id(r) for r in bad_scores}
    scores = [float(r.score) for r in info.records if id(r) not in bad_ids]
    if scores:
        lo, hi = min(scores), max(scores)
        if len(scores) > 1 and lo == hi:
            report.warnings.append(f"all {len(scores)} scores equal {lo:g}: rank correlations are undefined "
                                   "and the model cannot learn from them; check the score column")
        rng = expected_range(info.name, info.score_column)
        if rng is not None:
            a, b = rng if info.higher_is_better else (-rng[1], -rng[0])
            out = [r for r in info.records if id(r) not in bad_ids and not (a <= r.score <= b)]
            if out:
                report.warnings.append(
                    f"{len(out)} scores fall outside the expected {info.score_column} range [{a:g}, {b:g}] "
                    f"of {info.name} (observed {lo:g}..{hi:g}), e.g. "
                    + _examples([f"{os.path.basename(r.path)}={r.score:g}" for r in out])
                    + "; is the score column right?")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        report.warnings.append("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process (set by some "
                               "other library): truncated images decode silently and are not reported")
    return list(seen)


def _decode_all(paths: list[str], cache: dict, report: CheckReport, resize, resize_short, min_side: int,
                threads: int, progress: bool):
    """Decode every path not verified in ``cache``: (sizes, errors, verified entries, decoded items)."""
    verified: dict[str, list] = {}
    todo: list[tuple[str, int, int]] = []
    sizes: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            errors[p] = "file not found"
            continue
        except OSError as e:
            errors[p] = f"cannot read file ({e.strerror or e})"
            continue
        hit = cache.get(p)
        if hit and len(hit) == 4 and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            verified[p] = hit
            sizes[p] = (int(hit[2]), int(hit[3]))
            report.cached += 1
        else:
            todo.append((p, st.st_size, st.st_mtime_ns))

    bar = _Progress(len(paths), progress)
    bar.step(len(paths) - len(todo))

    def work(item: tuple[str, int, int]):
        p = item[0]
        try:
            _, wh = decode_image(p, resize, resize_short, min_side)
            return item, wh, None
        except DataError as e:
            return item, None, getattr(e, "why", None) or str(e)
        except Exception as e:  # noqa: BLE001 - never let one odd file stop the check
            return item, None, f"{type(e).__name__}: {e}"

    if todo:
        with ThreadPoolExecutor(max_workers=max(1, int(threads or 1))) as pool:
            futures = [pool.submit(work, it) for it in todo]
            for fut in as_completed(futures):
                (p, size, mtime), wh, why = fut.result()
                if why is None:
                    verified[p] = [size, mtime, wh[0], wh[1]]
                    sizes[p] = wh
                else:
                    errors[p] = why
                bar.step()
    bar.close()
    return sizes, errors, verified, todo


def log_data_report(report: dict, logger_name: str = "swiniqa.data") -> None:
    """Log what a run's data report holds that the user must see before training starts: the reader's
    notes and check warnings (``notes``) and the images ``--skip-bad-images`` left out (``skipped``)."""
    import logging

    log = logging.getLogger(logger_name)
    for n in report.get("notes", []):
        log.warning("note: %s", n)
    skipped = report.get("skipped") or []
    if skipped:
        log.warning("note: skipped %d unreadable image(s) (--skip-bad-images): %s%s", len(skipped),
                    ", ".join(skipped[:20]), " ..." if len(skipped) > 20 else "")


def label_report(err: "DataError", dataset: str = "") -> CheckReport:
    """A failed :class:`CheckReport` naming each label problem of a :class:`LabelErrors`."""
    problems = getattr(err, "problems", None) or [str(err)]
    file = getattr(err, "file", "")
    return CheckReport(images=0, dataset=dataset, root=os.path.dirname(file) if file else "",
                       errors=[{"image": file, "why": p.replace(f"{file} ", "", 1) if file else p} for p in problems])


def format_report(report: CheckReport, max_errors: Optional[int] = 50) -> str:
    """A human summary: one headline, then errors (up to ``max_errors``; None = all) and warnings."""
    n_err = len(report.errors)
    name = f"{report.dataset} " if report.dataset else ""
    n_warn = len(report.warnings)
    head = (f"data check {name}({report.root}): {report.images} images, "
            f"{n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}"
            f"{f', {report.cached} unchanged since the last check' if report.cached else ''}")
    lines = [head + (" - OK" if report.ok else " - FAILED")]
    shown = report.errors if max_errors is None else report.errors[:max_errors]
    for e in shown:
        lines.append(f"  error: {e['image']}: {e['why']}")
    if len(shown) < n_err:
        lines.append(f"  ... and {n_err - len(shown)} more errors (see the report's errors list / JSON output)")
    missing = sum(1 for e in report.errors if e["why"] == "file not found")
    if report.images and missing == report.images:
        lines.append("  hint: no image was found at all; is the data root (or image folder option) right?")
    for w in report.warnings:
        lines.append(f"  warning: {w}")
    for n in report.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
