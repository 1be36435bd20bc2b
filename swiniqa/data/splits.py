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


#: A validation or test split with fewer images than this gets a warning: its SRCC means next to nothing.
MIN_MEANINGFUL_SPLIT = 10


def srcc_interval(srcc: float, n: int) -> tuple[float, float]:
    """95 % interval of an SRCC of ``srcc`` measured on ``n`` images (Fisher z, Bonett-Wright standard error
    ``sqrt(1.06 / (n - 3))``); ``(-1, 1)`` when ``n <= 3``, where no interval can be given."""
    if n <= 3:
        return -1.0, 1.0
    z, half = float(np.arctanh(np.clip(srcc, -0.999999, 0.999999))), 1.96 * float(np.sqrt(1.06 / (n - 3)))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def split_size_notes(sizes: dict[str, int], where: str = "") -> list[str]:
    """Warnings for validation/test splits too small for their correlations to mean anything; raises for a
    validation split that cannot rank at all.

    Why fewer than :data:`MIN_MEANINGFUL_SPLIT` (10) images: the 95 % interval of an SRCC of 0.8 measured on 10
    images is 0.32-0.95 (:func:`srcc_interval`), wider than any difference between two runs worth making;
    on 2 images an SRCC is +1 or -1 by construction, on 1 it is undefined. Model selection and early stopping
    follow the validation SRCC, so under 10 they follow noise; the test SRCC is the number a run is judged by.
    A validation split of fewer than 2 images is refused (its SRCC would be NaN and the best epoch -inf);
    a test split of fewer than 2 gives no test SRCC (null), which the note says.

    Raises:
        DataError: the validation split has fewer than 2 images (names the numbers and the fix).
    """
    at = f" of {where}" if where else ""
    def fix(part: str) -> str:
        key = "val_fraction" if part == "val" else "test_fraction"
        return f"use more images or a larger {key} (--set {key}=0.3)"

    n_val = int(sizes.get("val", 0))
    if n_val < 2:
        raise DataError(f"the validation split{at} holds {n_val} image(s): an SRCC needs at least 2 (and means "
                        f"little under {MIN_MEANINGFUL_SPLIT}), so no epoch could be selected; {fix('val')}")
    notes = []
    for part, name in (("val", "validation"), ("test", "test")):
        n = int(sizes.get(part, 0))
        if part == "test" and n == 0:
            continue  # no test split asked for (test_fraction 0) or none given: nothing is reported as test
        if n < 2:
            notes.append(f"the {name} split{at} holds {n} image: no {name} SRCC can be computed (null); {fix(part)}")
        elif n < MIN_MEANINGFUL_SPLIT:
            lo, hi = srcc_interval(0.8, n)
            what = ("an SRCC on 2 images is +1 or -1 by construction" if n == 2 else
                    f"an SRCC of 0.8 on {n} images has a 95 % interval of {lo:.2f} to {hi:.2f}" if n > 3 else
                    f"an SRCC on {n} images can take only a few values")
            notes.append(f"the {name} split{at} holds only {n} images, too few for its SRCC to mean anything "
                         f"({what}); {fix(part)}")
    return notes
