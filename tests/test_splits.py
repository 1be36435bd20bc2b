import pytest

from swiniqa.data.records import DatasetInfo, Record
from swiniqa.data.splits import split_dataset, split_records
from swiniqa.errors import DataError


def _records(groups=20, per=5):
    return [Record(f"/x/{g}_{i}.png", float(i), f"g{g}") for g in range(groups) for i in range(per)]


@pytest.mark.core
def test_split_by_group_has_no_content_leak_and_covers_everything():
    recs = _records()
    s = split_records(recs, seed=1, val_fraction=0.2, test_fraction=0.2)
    groups = {k: {r.group for r in v} for k, v in s.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert sum(len(v) for v in s.values()) == len(recs)
    assert len(groups["val"]) == 4 and len(groups["test"]) == 4


@pytest.mark.core
def test_split_is_seeded():
    recs = _records()
    a = split_records(recs, 3, 0.2, 0.2)
    assert a == split_records(recs, 3, 0.2, 0.2)
    assert a != split_records(recs, 4, 0.2, 0.2)


@pytest.mark.core
def test_too_few_groups_is_a_clear_error():
    with pytest.raises(DataError, match="content groups"):
        split_records(_records(groups=2), 0, 0.3, 0.3)


@pytest.mark.core
def test_official_split_wins():
    recs = _records(groups=4, per=1)
    info = DatasetInfo("x", "/x", recs, official_split={recs[0].path: "train", recs[1].path: "val",
                                                         recs[2].path: "test", recs[3].path: "train"})
    s = split_dataset(info, 0, 0.5, 0.2)
    # by file, not by count: validation <-> test swapped would select the model on the test set
    assert s["train"] == [recs[0], recs[3]] and s["val"] == [recs[1]] and s["test"] == [recs[2]]
    # whatever the seed and fractions: the release's split is not re-drawn
    assert split_dataset(info, 7, 0.1, 0.1) == s


def test_demo_split_keeps_source_photos_apart(demo_root):
    from swiniqa.config import preset
    from swiniqa.data.records import read_dataset

    cfg = preset("demo")
    s = split_dataset(read_dataset("demo", str(demo_root)), cfg.seed, cfg.val_fraction, cfg.test_fraction)
    src = {k: {r.group for r in v} for k, v in s.items()}
    assert len(src["val"]) >= 3 and not (src["train"] & src["val"])
    # every distortion type and level is present in validation, with pristine references
    assert {round(r.score, 1) for r in s["val"]} == {5.0, 4.2, 3.4, 2.6, 1.8, 1.0}
