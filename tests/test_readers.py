"""Dataset readers on tiny copies of the official layouts, and their refusals of bad label files."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_datasets import make_fixtures  # noqa: E402

from swiniqa.data import read_dataset  # noqa: E402
from swiniqa.errors import DataError  # noqa: E402

pytestmark = pytest.mark.core

N = 6
NAMES = ["koniq10k", "spaq", "kadid10k", "agiqa3k", "livec", "tid2013"]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("datasets"), n=N)


@pytest.fixture
def copy_of(roots, tmp_path):
    def make(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(roots[name], dst)
        return dst
    return make


def cleanliness(path: str) -> float:
    """Minus the high-frequency energy: fixture degradation adds noise, so cleaner = higher."""
    g = Image.open(path).convert("L")
    a = np.asarray(g, dtype=np.float64)
    return -np.abs(a - np.asarray(g.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float64)).mean()


@pytest.mark.parametrize("name", NAMES)
def test_reader_reads_fixture(roots, name):
    info = read_dataset(name, roots[name])
    assert info.name == name
    assert len(info.records) == N
    assert os.path.isabs(info.root)
    for r in info.records:
        assert os.path.isabs(r.path), r.path
        assert os.path.isfile(r.path), r.path
        assert isinstance(r.score, float) and np.isfinite(r.score)
    assert len({r.path for r in info.records}) == N
    assert info.higher_is_better


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_higher_is_better(roots, name):
    """Fixture images degrade as the score drops, so score must rank with image quality."""
    info = read_dataset(name, roots[name])
    rho = spearmanr([r.score for r in info.records], [cleanliness(r.path) for r in info.records])[0]
    assert rho > 0.5, rho


def test_score_ranges(roots):
    rng = {"koniq10k": (0, 100), "spaq": (0, 100), "kadid10k": (1, 5), "agiqa3k": (0, 5), "livec": (0, 100),
           "tid2013": (0, 9)}
    for name, (lo, hi) in rng.items():
        scores = [r.score for r in read_dataset(name, roots[name]).records]
        assert lo <= min(scores) and max(scores) <= hi, name


def test_koniq_official_split_and_columns(roots):
    info = read_dataset("koniq10k", roots["koniq10k"])
    assert info.score_column == "MOS_zscore"
    assert info.official_split is not None
    parts = [info.official_split[r.path] for r in info.records]
    assert parts.count("train") == N - 2 and parts.count("val") == 1 and parts.count("test") == 1
    # by file, not by count: each image lands in the split its `set` cell names (validation <-> test swapped,
    # the model would be selected on the test set)
    from swiniqa.data.splits import split_dataset

    with open(os.path.join(roots["koniq10k"], "koniq10k_distributions_sets.csv"), newline="") as f:
        want = {row["image_name"]: {"training": "train", "validation": "val", "test": "test"}[row["set"]]
                for row in csv.DictReader(f)}
    assert {os.path.basename(r.path): info.official_split[r.path] for r in info.records} == want
    s = split_dataset(info, seed=0, val_fraction=0.3, test_fraction=0.3)
    for part in ("train", "val", "test"):
        assert sorted(os.path.basename(r.path) for r in s[part]) == sorted(k for k, v in want.items() if v == part)
    mos = read_dataset("koniq10k", roots["koniq10k"], score_column="MOS")
    assert all(1 <= r.score <= 5 for r in mos.records)
    assert [r.group for r in info.records] == [os.path.basename(r.path) for r in info.records]


def test_kadid_groups_are_references_and_refs_not_listed(roots):
    info = read_dataset("kadid10k", roots["kadid10k"])
    groups = {r.group for r in info.records}
    assert groups == {"I01.png", "I02.png"}
    for r in info.records:
        assert os.path.basename(r.path).startswith(r.group[:-4] + "_")
    assert info.score_column == "dmos" and info.higher_is_better


def test_tid2013_groups_and_case_fallback(roots):
    info = read_dataset("tid2013", roots["tid2013"])
    assert {r.group for r in info.records} == {"i01", "i02"}
    upper = [r for r in info.records if os.path.basename(r.path).startswith("I")]
    assert len(upper) == 1 and os.path.isfile(upper[0].path)


def test_livec_drops_training_entries(roots):
    info = read_dataset("livec", roots["livec"])
    names = [os.path.basename(r.path) for r in info.records]
    assert not any(n.startswith("t") for n in names)
    assert names[0] == "3.bmp" and names[1] == "4.JPG"
    assert all(os.path.dirname(r.path) == os.path.join(roots["livec"], "Images") for r in info.records)


@pytest.mark.parametrize("layout", ["", "Images"])
def test_agiqa_image_folder_detected(copy_of, layout):
    root = copy_of("agiqa3k")
    src = root / "images"
    dst = root / layout if layout else root
    if layout:
        src.rename(root / "tmp_move")
        (root / "tmp_move").rename(dst)
    else:
        for p in src.iterdir():
            p.rename(root / p.name)
        src.rmdir()
    info = read_dataset("agiqa3k", str(root))
    assert all(os.path.isfile(r.path) for r in info.records)


def test_agiqa_crlf_and_quoted_prompt(roots):
    raw = Path(roots["agiqa3k"], "data.csv").read_bytes()
    assert b"\r\n" in raw and b'"a cat sitting on a sofa, anime style"' in raw
    info = read_dataset("agiqa3k", roots["agiqa3k"])
    assert len(info.records) == N and all(0 <= r.score <= 5 for r in info.records)


@pytest.mark.parametrize("name", NAMES)
def test_relative_root_gives_absolute_paths(roots, monkeypatch, name):
    monkeypatch.chdir(Path(roots[name]).parent)
    info = read_dataset(name, name)
    assert all(os.path.isabs(r.path) and os.path.isfile(r.path) for r in info.records)


def test_unknown_options_are_ignored(roots):
    for name in NAMES:
        assert len(read_dataset(name, roots[name], some_future_option=3).records) == N


# ----------------------------------------------------------------------------- csv reader

def _write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_csv_reader_autodetect_and_direction(roots, tmp_path):
    img = Path(roots["spaq"], "TestImage")
    rows = [(f"{i + 1:05d}.jpg", str(10 * i + 5)) for i in range(N)]
    _write_csv(tmp_path / "labels.csv", ["Filename", "DMOS"], rows)
    up = read_dataset("csv", str(tmp_path), images=str(img))
    assert up.score_column == "DMOS" and up.higher_is_better
    assert [r.score for r in up.records] == [10 * i + 5 for i in range(N)]
    assert all(os.path.isfile(r.path) for r in up.records)
    down = read_dataset("csv", str(tmp_path), images=str(img), higher_is_better=False)
    assert [r.score for r in down.records] == [-(10 * i + 5) for i in range(N)]
    assert down.higher_is_better is False
    assert [r.group for r in down.records] == [n for n, _ in rows]


def test_csv_reader_explicit_columns_labels_only_and_groups(roots, tmp_path):
    img = Path(roots["kadid10k"], "images")
    _write_csv(tmp_path / "my.csv", ["pic", "q", "ref_img"],
               [("I01_01_01.png", "3.5", "I01"), ("I02_01_01.png", "2", "I02")])
    info = read_dataset("csv", None, labels=str(tmp_path / "my.csv"), images=str(img), image_col="pic", score_col="q")
    assert [r.score for r in info.records] == [3.5, 2.0]
    assert [r.group for r in info.records] == ["I01", "I02"]
    assert info.records[0].path == str(img / "I01_01_01.png")
    # the KADID label file itself works through the generic reader
    k = read_dataset("csv", roots["kadid10k"], labels="dmos.csv")
    assert k.score_column == "dmos" and {r.group for r in k.records} == {"I01.png", "I02.png"}


def test_csv_reader_errors(tmp_path):
    with pytest.raises(DataError, match="--data-root"):
        read_dataset("csv", None)
    with pytest.raises(DataError, match="found 0 .csv"):
        read_dataset("csv", str(tmp_path))
    _write_csv(tmp_path / "a.csv", ["image", "mos"], [("x.jpg", "1")])
    with pytest.raises(DataError, match="nope.csv"):
        read_dataset("csv", str(tmp_path), labels="nope.csv")
    with pytest.raises(DataError, match="--image-col"):
        read_dataset("csv", str(tmp_path), labels="a.csv", image_col="missing")
    _write_csv(tmp_path / "b.csv", ["picture", "mos"], [("x.jpg", "1")])
    with pytest.raises(DataError, match=r"b\.csv line 1.*--image-col"):
        read_dataset("csv", str(tmp_path), labels="b.csv")
    with pytest.raises(DataError, match="imgs"):
        read_dataset("csv", str(tmp_path), labels="a.csv", images="imgs")


# ----------------------------------------------------------------------------- missing roots / files

@pytest.mark.parametrize("name", NAMES + ["csv"])
def test_root_none_or_missing(name, tmp_path):
    with pytest.raises(DataError, match="data.root"):
        read_dataset(name, None)
    with pytest.raises(DataError, match="does-not-exist"):
        read_dataset(name, str(tmp_path / "does-not-exist"))


LABEL_FILES = {
    "koniq10k": "koniq10k_scores_and_distributions.csv",
    "spaq": "Annotations/MOS and Image attribute scores.xlsx",
    "kadid10k": "dmos.csv",
    "agiqa3k": "data.csv",
    "livec": "Data/AllMOS_release.mat",
    "tid2013": "mos_with_names.txt",
}
IMAGE_DIRS = {"koniq10k": "1024x768", "spaq": "TestImage", "kadid10k": "images", "livec": "Images",
              "tid2013": "distorted_images"}


@pytest.mark.parametrize("name", NAMES)
def test_missing_label_file_named(copy_of, name):
    root = copy_of(name)
    (root / LABEL_FILES[name]).unlink()
    with pytest.raises(DataError, match=os.path.basename(LABEL_FILES[name])):
        read_dataset(name, str(root))


@pytest.mark.parametrize("name", sorted(IMAGE_DIRS))
def test_missing_image_folder_named(copy_of, name):
    root = copy_of(name)
    shutil.rmtree(root / IMAGE_DIRS[name])
    with pytest.raises(DataError, match="image folder not found"):
        read_dataset(name, str(root))


# ----------------------------------------------------------------------------- bad labels

CSV_SETS = {  # name: (label file, score column)
    "koniq10k": ("koniq10k_scores_and_distributions.csv", "MOS_zscore"),
    "kadid10k": ("dmos.csv", "dmos"),
    "agiqa3k": ("data.csv", "mos_quality"),
}


def _edit_csv(path: Path, row: int, column: str, value: str):
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    lines[row][lines[0].index(column)] = value
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(lines)


@pytest.mark.parametrize("name", sorted(CSV_SETS))
@pytest.mark.parametrize("value,why", [("nan", "NaN|nan"), ("", "empty"), ("good", "not a number")])
def test_csv_bad_score(copy_of, name, value, why):
    root = copy_of(name)
    label, col = CSV_SETS[name]
    _edit_csv(root / label, 3, col, value)
    if name == "koniq10k":  # koniq.py (not this module's) words the empty case as "not a number"
        why += "|not a number"
    with pytest.raises(DataError, match=rf"{label} line 4: {col} .*({why})"):
        read_dataset(name, str(root))


@pytest.mark.parametrize("name", sorted(CSV_SETS))
def test_csv_wrong_header(copy_of, name):
    root = copy_of(name)
    label, col = CSV_SETS[name]
    _edit_csv(root / label, 0, col, "quality_score")
    with pytest.raises(DataError, match=rf"{label}(:| line 1).*{col}"):
        read_dataset(name, str(root))


@pytest.mark.parametrize("name", ["koniq10k", "kadid10k", "agiqa3k"])
def test_csv_duplicate_image(copy_of, name):
    root = copy_of(name)
    label, _ = CSV_SETS[name]
    with open(root / label, newline="") as f:
        lines = list(csv.reader(f))
    lines.append(lines[2])
    with open(root / label, "w", newline="") as f:
        csv.writer(f).writerows(lines)
    with pytest.raises(DataError, match=rf"{label} line {N + 2}: .*listed again \(first at line 3\)"):
        read_dataset(name, str(root))


def _edit_xlsx(path: Path, cell: str, value):
    import openpyxl

    wb = openpyxl.load_workbook(path)
    wb.worksheets[0][cell] = value
    wb.save(path)


@pytest.mark.parametrize("cell,value,match", [
    ("B4", "good", r"row 4: MOS is 'good', not a number"),
    ("B4", None, r"row 4: MOS is empty"),
    ("B4", float("nan"), r"row 4: MOS"),
    ("B1", "Score", r"row 1: .*no column 'MOS'"),
    ("A5", "00002.jpg", r"row 5: image '00002.jpg' is listed again \(first at row 3\)"),
])
def test_spaq_bad_labels(copy_of, cell, value, match):
    root = copy_of("spaq")
    label = root / LABEL_FILES["spaq"]
    _edit_xlsx(label, cell, value)
    with pytest.raises(DataError, match=r"MOS and Image attribute scores\.xlsx " + match):
        read_dataset("spaq", str(root))


def test_spaq_not_a_workbook(copy_of):
    root = copy_of("spaq")
    (root / LABEL_FILES["spaq"]).write_text("not a zip")
    with pytest.raises(DataError, match="cannot read the workbook"):
        read_dataset("spaq", str(root))


@pytest.mark.parametrize("line,match", [
    ("abc i01_01_1.bmp", r"line 2: MOS is 'abc', not a number"),
    ("nan i01_01_1.bmp", r"line 2: MOS is nan"),
    ("3.2", r"line 2: expected '<MOS> <image name>'"),
    ("3.2 i01_01_1.bmp", r"line 2: image 'i01_01_1.bmp' is listed again \(first at line 1\)"),
])
def test_tid2013_bad_labels(copy_of, line, match):
    root = copy_of("tid2013")
    path = root / "mos_with_names.txt"
    lines = path.read_text().splitlines()
    lines[1] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"mos_with_names\.txt " + match):
        read_dataset("tid2013", str(root))


def test_livec_bad_labels(copy_of):
    from scipy.io import loadmat, savemat

    root = copy_of("livec")
    mos_path = root / "Data" / "AllMOS_release.mat"
    mos = loadmat(mos_path)["AllMOS_release"].copy()
    bad = mos.copy()
    bad[0, 9] = np.nan
    savemat(mos_path, {"AllMOS_release": bad})
    with pytest.raises(DataError, match=r"AllMOS_release\.mat entry 10: .*nan"):
        read_dataset("livec", str(root))
    savemat(mos_path, {"AllMOS_release": mos[:, :-1]})
    with pytest.raises(DataError, match="names but"):
        read_dataset("livec", str(root))
    savemat(mos_path, {"MOS": mos})
    with pytest.raises(DataError, match=r"AllMOS_release\.mat: variable 'AllMOS_release' not found"):
        read_dataset("livec", str(root))
    names_path = root / "Data" / "AllImages_release.mat"
    names = loadmat(names_path)["AllImages_release"]
    names[8, 0] = names[9, 0]
    savemat(names_path, {"AllImages_release": names})
    savemat(mos_path, {"AllMOS_release": mos})
    with pytest.raises(DataError, match=r"AllImages_release\.mat entry 10: image '5.bmp' is listed again "
                                        r"\(first at entry 9\)"):
        read_dataset("livec", str(root))


def test_kadid_missing_reference(copy_of):
    root = copy_of("kadid10k")
    _edit_csv(root / "dmos.csv", 2, "ref_img", "")
    with pytest.raises(DataError, match=r"dmos\.csv line 3: ref_img is empty"):
        read_dataset("kadid10k", str(root))
