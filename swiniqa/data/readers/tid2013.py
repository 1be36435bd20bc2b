"""TID2013 in its release layout (see shared DATASETS.md).

``<root>/mos_with_names.txt`` (lines ``<MOS> <name>``, MOS 0-9, higher = better) and
``<root>/distorted_images/iXX_YY_Z.bmp`` (some copies spell names upper-case; matched
case-insensitively). Content group = reference id ``iXX``.
"""

from __future__ import annotations

import re
from typing import Optional

from swiniqa.data.readers.csv_reader import (NameChecker, RowProblems, case_resolver, dataset_root, find_dir,
                                             parse_score, require_file)
from swiniqa.data.records import DatasetInfo, Record, register_reader
from swiniqa.errors import DataError

LABELS = "mos_with_names.txt"
_REF = re.compile(r"^i(\d+)_", re.IGNORECASE)


@register_reader("tid2013", display_name="TID2013", kind="synthetic distortions", aliases=("tid",),
                 score_range={"MOS": (0.0, 9.0)})
def read_tid2013(root: Optional[str], image_dir: Optional[str] = None, **_: object) -> DatasetInfo:
    base = dataset_root(root, "tid2013", f"distorted_images/ and {LABELS}")
    labels = require_file(base / LABELS, "TID2013", "label file")
    img_dir = find_dir(base, [image_dir] if image_dir else ["distorted_images"], "TID2013")
    try:
        raw = labels.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as e:
        raise DataError(f"cannot read label file {labels}: {e.strerror or e}") from None
    resolve = case_resolver(img_dir)
    names = NameChecker(labels, "name")
    records = []
    problems = RowProblems(labels)
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        with problems.row():
            parts = line.split()
            if len(parts) != 2:
                raise DataError(f"{labels} {where}: expected '<MOS> <image name>', got {line.strip()!r}")
            score = parse_score(parts[0], labels, where, "MOS")
            name = names(parts[1], where)
            m = _REF.match(name)
            group = f"i{int(m.group(1)):02d}" if m else name.rsplit(".", 1)[0]
            records.append(Record(resolve(name), score, group))
    problems.raise_if_any()
    if not records:
        raise DataError(f"{labels} is empty; expected lines '<MOS> <image name>'")
    return DatasetInfo("tid2013", str(base), records, score_column="MOS")
