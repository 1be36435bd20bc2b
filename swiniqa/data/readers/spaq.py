"""SPAQ in its release layout (see shared DATASETS.md).

``<root>/Annotations/MOS and Image attribute scores.xlsx`` (first sheet; columns ``Image name``,
``MOS`` 0-100, higher = better) and images in ``<root>/TestImage/``. No official split; each image
is its own content group.
"""

from __future__ import annotations

import os
from typing import Optional

from swiniqa.data.readers.csv_reader import NameChecker, RowProblems, dataset_root, find_dir, parse_score, require_file
from swiniqa.data.records import DatasetInfo, Record, register_reader
from swiniqa.errors import DataError

LABELS = os.path.join("Annotations", "MOS and Image attribute scores.xlsx")
IMAGE_COL, SCORE_COL = "Image name", "MOS"


def read_xlsx_first_sheet(path) -> list[tuple]:
    """Rows (tuples of cell values) of the first worksheet; DataError if it is not a readable workbook."""
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - openpyxl is a dependency
        raise DataError(f"reading {path} needs openpyxl: pip install openpyxl") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - zipfile/openpyxl raise many types
        raise DataError(f"{path}: cannot read the workbook ({type(e).__name__}: {e}); "
                        "expected the SPAQ .xlsx") from None
    try:
        return [tuple(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    finally:
        wb.close()


@register_reader("spaq", display_name="SPAQ", kind="smartphone photos", score_range={"MOS": (0.0, 100.0)},
                 # Full-resolution smartphone photos, landscape and portrait: a fixed (384, 512) resize would
                 # squash portraits and the native size would make a 224 crop a tiny texture patch; scaling
                 # the shorter side to 512 keeps the aspect ratio (the SPAQ authors' own Resize(512)).
                 eval_preprocessing={"resize": None, "resize_short": 512})
def read_spaq(root: Optional[str], image_dir: Optional[str] = None, score_column: str = SCORE_COL,
              **_: object) -> DatasetInfo:
    base = dataset_root(root, "spaq", f"TestImage/ and {LABELS}")
    labels = require_file(base / LABELS, "SPAQ", "label workbook")
    img_dir = find_dir(base, [image_dir] if image_dir else ["TestImage"], "SPAQ")
    rows = read_xlsx_first_sheet(labels)
    # the header is the first non-empty row
    start = next((i for i, r in enumerate(rows) if any(c is not None and str(c).strip() for c in r)), None)
    if start is None:
        raise DataError(f"{labels}: first sheet is empty; expected a header row with {IMAGE_COL!r} and {SCORE_COL!r}")
    header = ["" if c is None else str(c).strip() for c in rows[start]]
    low = [h.lower() for h in header]
    idx = {}
    for col in (IMAGE_COL, score_column):
        if col in header:
            idx[col] = header.index(col)
        elif col.lower() in low:
            idx[col] = low.index(col.lower())
        else:
            raise DataError(f"{labels} row {start + 1}: header {[h for h in header if h]} has no column {col!r}; "
                            "expected the SPAQ 'MOS and Image attribute scores' sheet first")
    names = NameChecker(labels, IMAGE_COL)
    records = []
    problems = RowProblems(labels)
    for i, row in enumerate(rows[start + 1:], start=start + 2):
        if not any(c is not None and str(c).strip() for c in row):
            continue
        where = f"row {i}"
        get = (lambda j: row[j] if j < len(row) else None)
        with problems.row():
            name = names(get(idx[IMAGE_COL]), where)
            score = parse_score(get(idx[score_column]), labels, where, score_column)
            records.append(Record(str(img_dir / name), score, name))
    problems.raise_if_any()
    if not records:
        raise DataError(f"{labels}: header but no image rows")
    return DatasetInfo("spaq", str(base), records, score_column=score_column)
