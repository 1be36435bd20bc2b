"""KonIQ-10k in its official release layout (see shared DATASETS.md).

``<root>/koniq10k_scores_and_distributions.csv`` (``image_name``, ``MOS_zscore``/``MOS``) and images in
``<root>/1024x768/`` (or ``512x384/``). When ``koniq10k_distributions_sets.csv`` is present its ``set``
column gives the official 7058/1000/2015 train/val/test split.
"""

from __future__ import annotations

from typing import Optional

from swiniqa.data.readers.csv_reader import (NameChecker, RowProblems, cell, column_index, dataset_root,
                                             find_dir, parse_score, read_table, require_file)
from swiniqa.data.records import DatasetInfo, Record, register_reader
from swiniqa.errors import DataError

LABELS = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"
_SET_NAMES = {"training": "train", "train": "train", "validation": "val", "val": "val", "test": "test"}


@register_reader("koniq10k", display_name="KonIQ-10k", kind="in-the-wild photos", aliases=("koniq",),
                 score_range={"MOS_zscore": (0.0, 100.0), "MOS": (1.0, 5.0)})
def read_koniq(root: Optional[str], score_column: str = "MOS_zscore", image_dir: Optional[str] = None,
               **_: object) -> DatasetInfo:
    base = dataset_root(root, "koniq10k", LABELS)
    labels = require_file(base / LABELS, "koniq10k", "label file")
    img_dir = find_dir(base, [image_dir] if image_dir else ["1024x768", "512x384"], "koniq10k")
    header, rows = read_table(labels)
    i_name = column_index(header, "image_name", labels)
    i_score = column_index(header, score_column, labels, " (use --score-col MOS or MOS_zscore)")
    names = NameChecker(labels, "image_name")
    records = []
    problems = RowProblems(labels)
    for line, cells in rows:
        where = f"line {line}"
        with problems.row():
            name = names(cell(cells, i_name), where)
            score = parse_score(cell(cells, i_score), labels, where, score_column)
            records.append(Record(str(img_dir / name), score, name))
    problems.raise_if_any()
    if not records:
        raise DataError(f"{labels} lists no images; expected one row per image after the header")
    split = None
    sets = base / SETS
    if sets.is_file():
        sh, srows = read_table(sets)
        si_name = column_index(sh, "image_name", sets)
        si_set = column_index(sh, "set", sets)
        split = {}
        for line, cells in srows:
            raw = cell(cells, si_set).strip()
            if raw not in _SET_NAMES:
                raise DataError(f"{sets} line {line}: set is {raw!r}; expected training, validation or test")
            split[str(img_dir / cell(cells, si_name).strip().strip('"'))] = _SET_NAMES[raw]
        missing = sum(1 for r in records if r.path not in split)
        if missing:
            raise DataError(f"{sets}: {missing} image(s) of {LABELS} have no set; use matching files of one release")
    return DatasetInfo("koniq10k", str(base), records, score_column=score_column, official_split=split)
