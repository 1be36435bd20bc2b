"""AGIQA-3K in its release layout (see shared DATASETS.md).

``<root>/data.csv`` (CRLF, quoted prompts; ``name``, ``mos_quality`` 0-5, higher = better) and the
images in ``images/``, ``Images/`` or ``<root>`` itself (detected from the first listed image).
Each image is its own content group.
"""

from __future__ import annotations

from typing import Optional

from swiniqa.data.readers.csv_reader import (NameChecker, RowProblems, cell, column_index, dataset_root,
                                             parse_score, read_table, require_file)
from swiniqa.data.records import DatasetInfo, Record, register_reader
from swiniqa.errors import DataError

LABELS = "data.csv"
IMAGE_DIRS = ("images", "Images", "image", "imgs", "")


@register_reader("agiqa3k", display_name="AGIQA-3K", kind="AI-generated", aliases=("agiqa",),
                 score_range={"mos_quality": (0.0, 5.0)})
def read_agiqa(root: Optional[str], image_dir: Optional[str] = None, score_column: str = "mos_quality",
               **_: object) -> DatasetInfo:
    base = dataset_root(root, "agiqa3k", f"{LABELS} and the images")
    labels = require_file(base / LABELS, "AGIQA-3K", "label file")
    header, rows = read_table(labels)
    hint = "; expected the AGIQA-3K header name,prompt,...,mos_quality,..."
    i_name = column_index(header, "name", labels, hint)
    i_score = column_index(header, score_column, labels, hint)
    names = NameChecker(labels, "name")
    items = []
    problems = RowProblems(labels)
    for line, cells in rows:
        where = f"line {line}"
        with problems.row():
            name = names(cell(cells, i_name), where)
            items.append((name, parse_score(cell(cells, i_score), labels, where, score_column)))
    problems.raise_if_any()
    if not items:
        raise DataError(f"{labels}: header but no image rows")
    if image_dir:
        img_dir = base / image_dir
        if not img_dir.is_dir():
            raise DataError(f"AGIQA-3K image folder not found: {img_dir}; fix --images DIR")
    else:
        dirs = [base / d if d else base for d in IMAGE_DIRS if not d or (base / d).is_dir()]
        probe = items[: min(5, len(items))]
        img_dir = next((d for d in dirs if any((d / n).is_file() for n, _ in probe)), dirs[0])
    records = [Record(str(img_dir / n), s, n) for n, s in items]
    return DatasetInfo("agiqa3k", str(base), records, score_column=score_column,
                       notes=[f"images read from {img_dir}"])
