"""LIVE In the Wild Challenge (LIVE-C, ``ChallengeDB_release``) in its release layout (see shared DATASETS.md).

``<root>/Data/AllImages_release.mat`` (cell of file names) and ``<root>/Data/AllMOS_release.mat``
(MOS 0-100, higher = better), images in ``<root>/Images/<name>``. The first 7 entries are the
training images (``Images/trainingImages/``) and are dropped as everyone does, leaving 1,162.
Each image is its own content group.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from swiniqa.data.readers.csv_reader import (NameChecker, RowProblems, case_resolver, dataset_root, find_dir,
                                             require_file)
from swiniqa.data.records import DatasetInfo, Record, note_label_file, register_reader
from swiniqa.errors import DataError

NAMES = ("Data", "AllImages_release.mat", "AllImages_release")
MOS = ("Data", "AllMOS_release.mat", "AllMOS_release")
TRAINING_ENTRIES = 7


def _load_var(base: Path, spec: tuple[str, str, str]):
    folder, fname, var = spec
    path = require_file(base / folder / fname, "LIVE-C", "label file")
    note_label_file(path)
    try:
        from scipy.io import loadmat

        m = loadmat(str(path))
    except Exception as e:  # noqa: BLE001 - scipy raises several types for bad files
        raise DataError(f"{path}: cannot read the .mat file ({type(e).__name__}: {e})") from None
    if var not in m:
        keys = [k for k in m if not k.startswith("__")]
        raise DataError(f"{path}: variable {var!r} not found (has {keys}); expected the LIVE-C release file")
    return path, m[var]


def _cell_str(x) -> Optional[str]:
    """Unwrap the nested arrays scipy makes of a MATLAB cell holding a char array."""
    while isinstance(x, np.ndarray):
        if x.size == 0:
            return None
        if x.dtype.kind in "US":
            vals = [str(c) for c in x.ravel()]
            return vals[0] if len(vals) == 1 else "".join(vals)
        x = x.ravel()[0]
    return None if x is None else str(x)


@register_reader("livec", display_name="LIVE-C", kind="authentic distortions",
                 aliases=("livechallenge", "challengedb", "challengedbrelease"),
                 score_range={"AllMOS_release": (0.0, 100.0)})
def read_livec(root: Optional[str], image_dir: Optional[str] = None, skip_training: bool = True,
               **_: object) -> DatasetInfo:
    base = dataset_root(root, "livec", "Data/AllImages_release.mat, Data/AllMOS_release.mat and Images/")
    names_path, names_var = _load_var(base, NAMES)
    mos_path, mos_var = _load_var(base, MOS)
    img_dir = find_dir(base, [image_dir] if image_dir else ["Images"], "LIVE-C")
    cells = list(np.asarray(names_var).ravel())
    try:
        mos = np.asarray(mos_var, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise DataError(f"{mos_path}: AllMOS_release is not numeric") from None
    if len(cells) != len(mos):
        raise DataError(f"{names_path} has {len(cells)} names but {mos_path} has {len(mos)} scores; "
                        "use the files of one release")
    skip = TRAINING_ENTRIES if skip_training not in (False, "false", "0", 0) else 0
    if len(cells) <= skip:
        raise DataError(f"{names_path}: only {len(cells)} entries; expected 7 training + the test images")
    resolve = case_resolver(img_dir)
    checker = NameChecker(names_path, "AllImages_release")
    records = []
    problems = RowProblems(names_path)
    for i in range(skip, len(cells)):
        where = f"entry {i + 1}"
        with problems.row():
            name = checker(_cell_str(cells[i]), where)
            score = float(mos[i])
            if not math.isfinite(score):
                raise DataError(f"{mos_path} {where}: AllMOS_release is {score}; scores must be finite numbers")
            records.append(Record(resolve(name), score, name))
    problems.raise_if_any()
    notes = [f"dropped the first {skip} (training) entries"] if skip else []
    return DatasetInfo("livec", str(base), records, score_column="AllMOS_release", notes=notes)
