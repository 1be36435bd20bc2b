"""Seeded train/val/test splits by content group (no content on two sides)."""

from __future__ import annotations

import numpy as np

from swiniqa.data.records import DatasetInfo, Record
from swiniqa.errors import DataError


def split_records(records: list[Record], seed: int, val_fraction: float, test_fraction: float
                  ) -> dict[str, list[Record]]:
    """Shuffle the content groups with ``seed`` and cut them into train/val/test by fraction.

    Fractions are of groups; every group lands wholly in one part. Each non-zero fraction gets at
    least one group when there are enough groups.
    """
    groups = sorted({r.group for r in records})
    if len(groups) < 2:
        raise DataError("dataset has fewer than 2 content groups; cannot make a validation split")
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    n = len(order)
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n_test + n_val >= n:
        raise DataError(f"only {n} content groups: too few for val_fraction={val_fraction} and "
                        f"test_fraction={test_fraction}; lower them or use more images")
    part = {g: "test" for g in order[:n_test]}
    part.update({g: "val" for g in order[n_test:n_test + n_val]})
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for r in records:
        out[part.get(r.group, "train")].append(r)
    return out


def split_dataset(info: DatasetInfo, seed: int, val_fraction: float, test_fraction: float
                  ) -> dict[str, list[Record]]:
    """Use the release's official split when it has one, else a seeded split by content."""
    if info.official_split:
        out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
        for r in info.records:
            part = info.official_split.get(r.path)
            if part in out:
                out[part].append(r)
        if out["train"] and out["val"]:
            return out
    return split_records(info.records, seed, val_fraction, test_fraction)
