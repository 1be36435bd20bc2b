"""Reader for the embedded demo dataset (generated on first use)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from swiniqa.data.demo import write_demo
from swiniqa.data.records import DatasetInfo, Record, note_label_file, register_reader
from swiniqa.errors import DataError


@register_reader("demo", display_name="demo", kind="generated (blur/noise tiles)", score_range={"mos": (1.0, 5.0)})
def read_demo(root: Optional[str] = None, **_: object) -> DatasetInfo:
    base = Path(root) if root else write_demo()
    labels = base / "labels.csv"
    if not labels.is_file():
        raise DataError(f"demo labels not found: {labels}; run `swiniqa data demo --out {base}` first")
    note_label_file(labels)
    with open(labels, newline="") as f:
        records = [Record(str((base / "images" / r["image"]).resolve()), float(r["mos"]), r["source"])
                   for r in csv.DictReader(f)]
    return DatasetInfo("demo", str(base), records, score_column="mos")
