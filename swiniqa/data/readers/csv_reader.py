"""Generic reader: any image folder plus a label CSV (``csv``), and the label-parsing helpers the
official-layout readers share.

``read_dataset("csv", root, labels="labels.csv", images="imgs", image_col=None, score_col=None,
higher_is_better=True)``. Columns are found case-insensitively when not named; scores of
lower-is-better sets are negated so that ``Record.score`` is always higher = better, and
``DatasetInfo.higher_is_better`` keeps the original direction.
"""

from __future__ import annotations

import csv
import io
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

from swiniqa.data.records import DatasetInfo, Record, note_label_file, register_reader
from swiniqa.errors import DataError
from swiniqa.parsing import parse_bool

IMAGE_COLUMNS = ("image_name", "image", "name", "file", "filename", "path", "dist_img")
SCORE_COLUMNS = ("MOS", "mos", "score", "dmos", "mos_zscore", "quality")
GROUP_COLUMNS = ("group", "ref_img", "reference", "ref", "source", "content")


# ----------------------------------------------------------------------------- shared helpers

def dataset_root(root: Optional[Union[str, os.PathLike]], dataset: str, expected: str) -> Path:
    """The absolute dataset folder, or a DataError saying what it should hold."""
    if root is None or str(root) == "":
        raise DataError(f"dataset {dataset} needs a data root (--data-root): the folder holding {expected}")
    base = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not base.is_dir():
        what = "is a file, not a folder" if base.exists() else "does not exist"
        raise DataError(f"{dataset} data root {base} {what}; point it at the folder holding {expected}")
    return base


def require_file(path: Path, dataset: str, what: str) -> Path:
    """``path`` if it is a file, else a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{dataset} {what} not found: {path}; point the data root at the unpacked release")
    if what.startswith("label"):
        note_label_file(path)
    return path


def find_dir(base: Path, names: Iterable[str], dataset: str, what: str = "image folder") -> Path:
    """First existing sub-folder among ``names`` (exact, then case-insensitive)."""
    names = list(names)
    for n in names:
        if (base / n).is_dir():
            return base / n
    try:
        by_lower = {e.name.lower(): e for e in os.scandir(base) if e.is_dir()}
    except OSError:
        by_lower = {}
    for n in names:
        if n.lower() in by_lower:
            return base / by_lower[n.lower()].name
    raise DataError(f"{dataset} {what} not found under {base} (looked for {', '.join(n + '/' for n in names)}); "
                    "fix --data-root, or name the folder with --images DIR")


def parse_score(raw: object, file: Union[str, Path], where: str, column: str) -> float:
    """A finite float from a label cell, else a DataError naming file, line/row and column."""
    text = "" if raw is None else str(raw).strip()
    if text == "":
        raise DataError(f"{file} {where}: {column} is empty; every image needs a score")
    try:
        value = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else float(text)
    except ValueError:
        raise DataError(f"{file} {where}: {column} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{file} {where}: {column} is {text}; scores must be finite numbers")
    return value


class LabelErrors(DataError):
    """Every bad row of a label file (not only the first), so ``data check`` can name each one."""

    def __init__(self, file: Union[str, Path], problems: list[str]):
        self.file, self.problems = str(file), list(problems)
        shown = "; ".join(self.problems[:3])
        more = f"; ... and {len(self.problems) - 3} more (run `swiniqa data check` to list them)" \
            if len(self.problems) > 3 else ""
        super().__init__(f"{len(self.problems)} label problem(s) in {file}: {shown}{more}")


class RowProblems:
    """Collects the DataError of each bad row (``with problems.row(): ...``), then raises them together."""

    def __init__(self, file: Union[str, Path]):
        self.file, self.items = file, []

    @contextmanager
    def row(self) -> Iterator[None]:
        try:
            yield
        except LabelErrors:
            raise
        except DataError as e:
            self.items.append(str(e))

    def raise_if_any(self) -> None:
        if self.items:
            raise LabelErrors(self.file, self.items)


class NameChecker:
    """Rejects empty and duplicate image names, naming both lines of a duplicate."""

    def __init__(self, file: Union[str, Path], column: str):
        self.file, self.column, self.seen = file, column, {}

    def __call__(self, raw: object, where: str) -> str:
        name = "" if raw is None else str(raw).strip().strip('"').strip()
        if not name or name.lower() == "nan":
            raise DataError(f"{self.file} {where}: {self.column} is empty; every row needs an image name")
        if name in self.seen:
            raise DataError(f"{self.file} {where}: image {name!r} is listed again (first at "
                            f"{self.seen[name]}); remove the duplicate row")
        self.seen[name] = where
        return name


def read_table(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(header, rows) of a CSV/TSV; rows are (line number, cells). Handles BOM, CRLF, quotes."""
    note_label_file(path)
    text = None
    for enc in ("utf-8-sig", "latin-1"):
        try:
            with open(path, newline="", encoding=enc) as f:
                text = f.read()
            break
        except UnicodeDecodeError:
            continue
        except OSError as e:
            raise DataError(f"cannot read label file {path}: {e.strerror or e}") from None
    first = text.splitlines()[0] if text else ""
    delim = ","
    if "," not in first:
        delim = "\t" if "\t" in first else (";" if ";" in first else ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path} is empty; expected a header line and one row per image") from None
    except csv.Error as e:
        raise DataError(f"{path} line 1: cannot parse the header ({e})") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num
        try:
            for cells in reader:
                line = start + 1
                start = reader.line_num
                if not cells or all(not c.strip() for c in cells):
                    continue
                yield line, cells
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: cannot parse the row ({e})") from None

    return header, rows()


def column_index(header: list[str], wanted: str, path: Path, hint: str = "") -> int:
    """Index of ``wanted`` (exact, then case-insensitive) in ``header``, else a DataError on line 1."""
    if wanted in header:
        return header.index(wanted)
    low = [h.lower() for h in header]
    if wanted.lower() in low:
        return low.index(wanted.lower())
    raise DataError(f"{path} line 1: header {header} has no column {wanted!r}{hint}")


def cell(cells: list[str], idx: int) -> str:
    return cells[idx] if idx < len(cells) else ""


def case_resolver(folder: Path):
    """fn(name) -> path in ``folder``, falling back to a case-insensitive match when the exact name
    is absent (TID2013/LIVE-C copies differ in case). Never opens the images."""
    listing: Optional[dict[str, str]] = None

    def resolve(name: str) -> str:
        nonlocal listing
        exact = folder / name
        if exact.exists():
            return str(exact)
        if listing is None:
            try:
                listing = {}
                for e in os.scandir(folder):
                    listing.setdefault(e.name.lower(), e.name)
            except OSError:
                listing = {}
        sub = Path(name)
        hit = listing.get(name.lower()) if len(sub.parts) == 1 else None
        return str(folder / hit) if hit else str(exact)

    return resolve


def as_bool(value: object, option: str) -> bool:
    """A reader option's boolean (shared spellings of :func:`swiniqa.parsing.parse_bool`)."""
    return parse_bool(value, f"option {option}", DataError)


# ----------------------------------------------------------------------------- generic csv reader

def _pick(header: list[str], wanted: Optional[str], candidates: tuple[str, ...], path: Path, what: str,
          option: str) -> int:
    if wanted:
        return column_index(header, wanted, path, f"; fix {option}")
    low = [h.lower() for h in header]
    for c in candidates:
        if c in header:
            return header.index(c)
    for c in candidates:
        if c.lower() in low:
            return low.index(c.lower())
    raise DataError(f"{path} line 1: no {what} column among {header}; name it with {option} COLUMN "
                    f"(auto-detected names: {', '.join(dict.fromkeys(c.lower() for c in candidates))})")


@register_reader("csv", display_name="CSV", kind="image folder + label CSV")
def read_csv_dataset(root: Optional[str] = None, labels: Optional[str] = None, images: Optional[str] = None,
                     image_col: Optional[str] = None, score_col: Optional[str] = None,
                     higher_is_better: Union[bool, str] = True, group_col: Optional[str] = None,
                     name: str = "csv", **_: object) -> DatasetInfo:
    """Any image folder plus a label CSV.

    ``labels``/``images`` are relative to ``root`` when a root is given, else to the current
    directory (the CLI makes every path flag absolute first, so there they always mean the current
    directory). Without ``labels`` the single ``*.csv`` in ``root`` is used; without ``images``,
    ``root/images/`` if present, else the label file's folder. ``group_col`` (auto:
    group/ref_img/reference/ref/source/content) names the content for splits; without one each image
    is its own group.
    """
    hib = as_bool(higher_is_better, "higher_is_better (--lower-is-better)")
    if root is None or str(root) == "":
        if not labels:
            raise DataError("dataset csv needs --data-root DIR or --labels FILE: "
                            "an image folder plus a CSV with an image-name and a score column")
        lab = Path(os.path.abspath(os.path.expanduser(str(labels))))
        if not lab.is_file():
            raise DataError(f"csv label file not found: {lab}; fix --labels FILE")
        root, labels = str(lab.parent), str(lab)
        images = os.path.abspath(os.path.expanduser(str(images))) if images else None
    base = dataset_root(root, "csv", "the images and a label CSV")
    if labels:
        lab = Path(os.path.expanduser(str(labels)))
        lab = Path(os.path.abspath(lab if lab.is_absolute() else base / lab))
        if not lab.is_file():
            raise DataError(f"csv label file not found: {lab}; fix --labels FILE")
    else:
        found = sorted(p for p in base.glob("*.csv") if p.is_file())
        if len(found) != 1:
            listed = f" ({', '.join(p.name for p in found)})" if found else ""
            raise DataError(f"csv dataset {base}: found {len(found)} .csv files{listed}; name one with --labels FILE")
        lab = found[0]
    if images:
        img_dir = Path(os.path.expanduser(str(images)))
        img_dir = Path(os.path.abspath(img_dir if img_dir.is_absolute() else base / img_dir))
        if not img_dir.is_dir():
            raise DataError(f"csv image folder not found: {img_dir}; fix --images DIR")
    else:
        img_dir = base / "images" if (base / "images").is_dir() else base

    header, rows = read_table(lab)
    i_img = _pick(header, image_col, IMAGE_COLUMNS, lab, "image-name", "--image-col")
    i_score = _pick(header, score_col, SCORE_COLUMNS, lab, "score", "--score-col")
    if i_img == i_score:
        raise DataError(f"{lab} line 1: image and score column are both {header[i_img]!r}; "
                        "set --image-col and --score-col")
    i_group = None
    if group_col:
        i_group = column_index(header, group_col, lab, "; fix --group-col")
    else:
        low = [h.lower() for h in header]
        i_group = next((low.index(c) for c in GROUP_COLUMNS if c in low), None)
    names = NameChecker(lab, header[i_img])
    sign = 1.0 if hib else -1.0
    records = []
    problems = RowProblems(lab)
    for line, cells in rows:
        where = f"line {line}"
        with problems.row():
            img = names(cell(cells, i_img), where)
            score = parse_score(cell(cells, i_score), lab, where, header[i_score])
            group = cell(cells, i_group).strip() if i_group is not None else ""
            records.append(Record(os.path.abspath(os.path.join(img_dir, img)), sign * score, group or img))
    problems.raise_if_any()
    if not records:
        raise DataError(f"{lab} has a header but no rows; expected one row per image")
    notes = [f"labels {lab}, images {img_dir}, image column {header[i_img]!r}, score column {header[i_score]!r}"]
    if not hib:
        notes.append(f"{header[i_score]} is lower-is-better: scores negated so higher = better")
    elif "dmos" in header[i_score].lower():
        notes.append(f"column {header[i_score]} taken as higher = better (true for KADID-10k); pass "
                     "--lower-is-better for a DMOS where lower is better (LIVE, CSIQ), else SRCC comes out negative")
    if i_group is not None:
        notes.append(f"content groups from column {header[i_group]!r}")
    return DatasetInfo(str(name or "csv"), str(base), records, score_column=header[i_score],
                       higher_is_better=hib, notes=notes)
