"""One dataset interface: one spec per dataset, the same flags and config keys on every verb (issue #11 item 2,
issue #12 item 3)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swiniqa.cli import main
from swiniqa.data.records import DATASETS, dataset_spec, read_config_dataset, read_dataset, register_reader
from swiniqa.errors import DataError


def make_csv_dataset(folder: Path, n: int = 8, column: str = "mos", size: tuple[int, int] = (48, 40),
                     extra: str = "") -> Path:
    """``folder/labels.csv`` (image, <column>, group) and ``folder/images/im<i>.png``; returns the CSV."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        a = (np.random.default_rng(i).random((size[1], size[0], 3)) * 255).astype("uint8")
        Image.fromarray(a).save(folder / "images" / f"im{i}.png")
        rows.append((f"im{i}.png", f"{5 - i * 0.4:g}", f"g{i // 2}"))
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", column, "group"])
        w.writerows(rows)
        if extra:
            f.write(extra)
    return folder / "labels.csv"


def _json_out(capsys) -> tuple[dict, str]:
    out = capsys.readouterr()
    return json.loads(out.out.strip().splitlines()[-1]), out.err


# ----------------------------------------------------------------------------- one spec per dataset
def test_every_builtin_dataset_has_one_spec_with_its_facts():
    read_dataset  # registers the built-ins on first use
    dataset_spec("koniq10k")
    assert set(DATASETS) == {"koniq10k", "spaq", "kadid10k", "agiqa3k", "livec", "tid2013", "csv", "demo"}
    assert DATASETS["kadid10k"].display_name == "KADID-10K" and dataset_spec("KADID-10K").name == "kadid10k"
    assert DATASETS["koniq10k"].score_range["MOS"] == (1.0, 5.0)
    assert DATASETS["spaq"].eval_preprocessing == {"resize": None, "resize_short": 512}
    from swiniqa.evaluation.evaluate import EVAL_PREPROCESSING
    from swiniqa.evaluation.suite import DATASETS as SUITE_NAMES, roots_key_name

    assert EVAL_PREPROCESSING == {"spaq": {"resize": None, "resize_short": 512}}
    assert SUITE_NAMES["livec"] == ("LIVE-C", "authentic distortions")
    assert roots_key_name("ChallengeDB_release") == "livec"


def test_duplicate_dataset_names_and_aliases_are_refused():
    dataset_spec("spaq")
    with pytest.raises(ValueError, match="already registered"):
        register_reader("spaq")(lambda root, **_: None)
    with pytest.raises(ValueError, match="'kadid'"):
        register_reader("mykadid", aliases=("kadid",))(lambda root, **_: None)
    assert "mykadid" not in DATASETS


def test_unknown_dataset_gets_did_you_mean_and_the_flag(capsys):
    with pytest.raises(DataError, match=r"unknown dataset 'kadid10' \(--dataset\); did you mean kadid10k"):
        read_dataset("kadid10", "/x")
    assert main(["data", "check", "--dataset", "koniqq", "--data-root", "/x"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_reader_option_a_layout_does_not_take_is_refused_by_flag(tmp_path, capsys):
    assert main(["data", "check", "--dataset", "koniq10k", "--data-root", str(tmp_path), "--labels", "x.csv"]) == 2
    err = capsys.readouterr().err
    assert "--labels does not apply to dataset koniq10k" in err


def test_data_range_warning_comes_from_the_spec(tmp_path):
    from swiniqa.data.check import check_dataset
    from swiniqa.data.records import DatasetInfo, Record

    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    info = DatasetInfo("tid2013", str(tmp_path), [Record(str(img), 42.0, "a"), Record(str(img), 3.0, "b")],
                       score_column="MOS")
    rep = check_dataset(info, min_side=16, progress=False, use_cache=False)
    assert any("range [0, 9]" in w for w in rep.warnings)


# ----------------------------------------------------------------------------- the same flags on every verb
def test_data_check_accepts_data_root_and_the_root_alias(tmp_path, capsys):
    make_csv_dataset(tmp_path / "d")
    for flag in ("--data-root", "--root"):
        assert main(["data", "check", "--dataset", "csv", flag, str(tmp_path / "d"), "--patch-size", "32",
                     "--json"]) == 0
        rep, _ = _json_out(capsys)
        assert rep["images"] == 8 and rep["ok"]


def test_train_and_tune_take_the_csv_flags_into_the_config(tmp_path, capsys, monkeypatch):
    lab = make_csv_dataset(tmp_path / "d", column="score")
    (tmp_path / "d" / "other.csv").write_text("x\n")  # two CSVs: the folder alone is ambiguous
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "csv", "--labels", "d/labels.csv", "--images", "d/images", "--score-col", "score",
            "--image-col", "image", "--group-col", "group", "--lower-is-better", "--json"]
    assert main(["config", "--preset", "demo", *argv]) == 0
    cfg, _ = _json_out(capsys)
    assert cfg["labels"] == str(lab) and cfg["images"] == str(tmp_path / "d" / "images")
    assert cfg["score_col"] == "score" and cfg["group_col"] == "group" and cfg["lower_is_better"] is True

    from tune_experiments.cli_verbs import _tune_config
    from swiniqa.cli import build_parser

    tcfg, _ = _tune_config(build_parser().parse_args(["tune", "lr", "--preset", "demo", *argv]))
    assert tcfg.labels == str(lab) and tcfg.lower_is_better
    (tmp_path / "d" / "sweep.yaml").write_text("dataset: csv\nlabels: labels.csv\nscore_col: score\n")
    monkeypatch.chdir(tmp_path / "d" / "images")  # a config file's relative paths mean the file's folder
    tcfg, _ = _tune_config(build_parser().parse_args(["tune", "lr", "--config", "../sweep.yaml", "--epochs", "3"]))
    assert tcfg.labels == str(lab) and tcfg.score_col == "score" and tcfg.epochs == 3

    from swiniqa.config import load_config

    info = read_config_dataset(load_config("demo", None, {k: cfg[k] for k in (
        "dataset", "labels", "images", "score_col", "image_col", "group_col", "lower_is_better")}))
    assert len(info.records) == 8 and info.records[0].score == pytest.approx(-5.0)  # negated: lower is better
    assert {r.group for r in info.records} == {"g0", "g1", "g2", "g3"}


def test_yaml_config_carries_the_dataset_keys_into_training_splits(tmp_path):
    """What `train --config` reads: a YAML config with labels/score_col reaches the split (no Ray)."""
    make_csv_dataset(tmp_path / "d", n=12, column="q", size=(40, 40))
    (tmp_path / "d" / "b.csv").write_text("x\n")
    y = tmp_path / "run.yaml"
    y.write_text(f"dataset: csv\nlabels: {tmp_path / 'd' / 'labels.csv'}\nscore_col: q\nval_fraction: 0.25\n"
                 "test_fraction: 0.25\n")
    from swiniqa.config import load_config
    from swiniqa.training.trainer import prepare_splits

    cfg = load_config("demo", str(y), {"patch_size": 64})
    splits, report = prepare_splits(cfg, check=True, progress=False)
    assert sum(len(v) for v in splits.values()) == 12
    assert any("scaled up" in n for n in report["notes"])  # the data check's warning travels to train


def test_suite_roots_file_takes_the_same_keys(tmp_path):
    make_csv_dataset(tmp_path / "d", column="dmos")
    roots = tmp_path / "roots.yaml"
    roots.write_text("csv: {root: d, labels: labels.csv, score_col: dmos, lower_is_better: true}\n")
    from swiniqa.evaluation.suite import _options, load_roots

    entry = load_roots(str(roots))["csv"]
    root, opts, _ = _options(entry)
    info = read_dataset("csv", root, **opts)  # labels relative to the entry's root, root to the roots file
    assert not info.higher_is_better and info.records[0].score == pytest.approx(-5.0)


def test_help_lists_the_registered_datasets():
    from swiniqa.cli_common import DATASET_CHOICES

    for name in DATASETS:
        assert name in DATASET_CHOICES
