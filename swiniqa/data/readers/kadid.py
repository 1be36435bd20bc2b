"""KADID-10k in its release layout (see shared DATASETS.md).

``<root>/dmos.csv`` (``dist_img,ref_img,dmos,var``) with references and distorted images both in
``<root>/images/``. ``dmos`` is on [1, 5] and **higher = better** (not inverted). Content group =
reference image, so splits never share a reference.
"""

from __future__ import annotations

from typing import Optional

from swiniqa.data.readers.csv_reader import (NameChecker, RowProblems, cell, column_index, dataset_root,
                                             find_dir, parse_score, read_table, require_file)
from swiniqa.data.records import DatasetInfo, Record, register_reader
from swiniqa.errors import DataError

LABELS = "dmos.csv"


@register_reader("kadid10k", display_name="KADID-10K", kind="synthetic distortions", aliases=("kadid",),
                 score_range={"dmos": (1.0, 5.0)})
def read_kadid(root: Optional[str], image_dir: Optional[str] = None, **_: object) -> DatasetInfo:
    base = dataset_root(root, "kadid10k", f"images/ and {LABELS}")
    labels = require_file(base / LABELS, "KADID-10k", "label file")
    img_dir = find_dir(base, [image_dir] if image_dir else ["images"], "KADID-10k")
    header, rows = read_table(labels)
    hint = "; expected the KADID-10k header dist_img,ref_img,dmos,var"
    i_dist = column_index(header, "dist_img", labels, hint)
    i_ref = column_index(header, "ref_img", labels, hint)
    i_dmos = column_index(header, "dmos", labels, hint)
    names = NameChecker(labels, "dist_img")
    records = []
    problems = RowProblems(labels)
    for line, cells in rows:
        where = f"line {line}"
        with problems.row():
            name = names(cell(cells, i_dist), where)
            ref = cell(cells, i_ref).strip()
            if not ref:
                raise DataError(f"{labels} {where}: ref_img is empty; every distorted image needs its reference")
            score = parse_score(cell(cells, i_dmos), labels, where, "dmos")
            records.append(Record(str(img_dir / name), score, ref))
    problems.raise_if_any()
    if not records:
        raise DataError(f"{labels}: header but no image rows")
    return DatasetInfo("kadid10k", str(base), records, score_column="dmos", higher_is_better=True,
                       notes=["KADID-10k dmos is higher = better; used as is"])
