"""KonIQ-10k in its official release layout (see shared DATASETS.md).

``<root>/koniq10k_scores_and_distributions.csv`` (``image_name``, ``MOS_zscore``/``MOS``) and images in
``<root>/1024x768/`` (or ``512x384/``). When ``koniq10k_distributions_sets.csv`` is present its ``set``
column gives the official 7058/1000/2015 train/val/test split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from swiniqa.data.records import DatasetInfo, Record, register_reader
from swiniqa.errors import DataError

LABELS = "koniq10k_scores_and_distributions.csv"
SETS = "koniq10k_distributions_sets.csv"
_SET_NAMES = {"training": "train", "train": "train", "validation": "val", "val": "val", "test": "test"}


@register_reader("koniq10k")
def read_koniq(root: Optional[str], score_column: str = "MOS_zscore", image_dir: Optional[str] = None,
               **_: object) -> DatasetInfo:
    if not root:
        raise DataError("dataset koniq10k needs --data-root: the folder holding " + LABELS)
    base = Path(root)
    labels = base / LABELS
    if not labels.is_file():
        raise DataError(f"KonIQ-10k label file not found: {labels}; point --data-root at the unpacked release")
    dirs = [image_dir] if image_dir else ["1024x768", "512x384"]
    img_dir = next((base / d for d in dirs if (base / d).is_dir()), None)
    if img_dir is None:
        raise DataError(f"KonIQ-10k image folder not found under {base} (looked for {', '.join(dirs)})")
    records = []
    with open(labels, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in reader.fieldnames or []]
        if "image_name" not in cols or score_column not in cols:
            raise DataError(f"{labels}: header {cols} lacks image_name or {score_column}")
        for i, row in enumerate(reader, start=2):
            name = row["image_name"].strip().strip('"')
            raw = (row.get(score_column) or "").strip()
            try:
                score = float(raw)
            except ValueError:
                raise DataError(f"{labels} line {i}: {score_column} is {raw!r}, not a number") from None
            if score != score:
                raise DataError(f"{labels} line {i}: {score_column} is NaN")
            records.append(Record(str(img_dir / name), score, name))
    split = None
    if (base / SETS).is_file():
        with open(base / SETS, newline="", encoding="utf-8-sig") as f:
            split = {str(img_dir / r["image_name"].strip().strip('"')): _SET_NAMES.get(r.get("set", "").strip(), "")
                     for r in csv.DictReader(f)}
    return DatasetInfo("koniq10k", str(base), records, score_column=score_column, official_split=split)
