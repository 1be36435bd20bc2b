"""Aggregation maths (hand-computed means / t-intervals / paired and Welch differences), trial records, and
the report built from an experiment folder alone (synthetic trial records as the driver writes them, no Ray)."""

from __future__ import annotations

import json
import math
import os

import pytest

from tune_experiments.aggregate import build_report
from tune_experiments.experiment import load_experiment, merge_result, new_record, trial_row
from tune_experiments.stats import compare, mean_ci
from tune_experiments.tables import cell_table

T2 = 4.302652729911275  # t(0.975, df=2)
T1 = 12.706204736174707  # t(0.975, df=1)


def test_mean_ci_hand_computed():
    ci = mean_ci([0.90, 0.92, 0.94])
    assert ci["n"] == 3
    assert ci["mean"] == pytest.approx(0.92)
    assert ci["std"] == pytest.approx(0.02)  # sample std, ddof 1
    half = T2 * 0.02 / math.sqrt(3)  # = 0.049683
    assert ci["half"] == pytest.approx(half, rel=1e-6)
    assert (ci["lo"], ci["hi"]) == (pytest.approx(0.92 - half), pytest.approx(0.92 + half))


def test_mean_ci_two_values_and_gaps():
    ci = mean_ci([0.5, None, float("nan"), 0.7, "x"])  # non-finite / missing values are ignored
    assert ci["n"] == 2 and ci["mean"] == pytest.approx(0.6)
    assert ci["std"] == pytest.approx(math.sqrt(0.02))
    assert ci["half"] == pytest.approx(T1 * math.sqrt(0.02) / math.sqrt(2))
    one = mean_ci([0.8])
    assert one["n"] == 1 and one["mean"] == 0.8 and math.isnan(one["std"]) and math.isnan(one["lo"])
    none = mean_ci([])
    assert none["n"] == 0 and math.isnan(none["mean"])


def test_paired_difference_within_noise():
    a = {0: 0.90, 1: 0.92, 2: 0.94}
    b = {0: 0.91, 1: 0.94, 2: 0.95}  # d = 0.01, 0.02, 0.01
    c = compare(a, b)
    sd = math.sqrt(((0.01 - 0.04 / 3) ** 2 * 2 + (0.02 - 0.04 / 3) ** 2) / 2)  # 0.0057735
    half = T2 * sd / math.sqrt(3)
    assert c["method"].startswith("paired")
    assert c["diff"] == pytest.approx(0.04 / 3)
    assert c["lo"] == pytest.approx(0.04 / 3 - half) and c["lo"] < 0 < c["hi"]
    assert c["verdict"] == "within noise"


def test_paired_difference_significant():
    c = compare({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.91, 1: 0.921, 2: 0.932})  # d = 0.010, 0.011, 0.012
    assert c["diff"] == pytest.approx(0.011)
    assert c["hi"] - c["diff"] == pytest.approx(T2 * 0.001 / math.sqrt(3), rel=1e-6)
    assert c["verdict"] == "higher"
    assert compare({0: 0.91, 1: 0.921, 2: 0.932}, {0: 0.90, 1: 0.91, 2: 0.92})["verdict"] == "lower"


def test_welch_when_seeds_differ():
    from scipy.stats import t

    a = {0: 1.0, 1: 2.0, 2: 3.0}  # var 1, n 3
    b = {5: 2.0, 6: 4.0}  # var 2, n 2
    c = compare(a, b)
    se2 = 1 / 3 + 2 / 2
    df = se2 ** 2 / ((1 / 3) ** 2 / 2 + 1.0 ** 2 / 1)  # Welch-Satterthwaite = 1.6842
    assert c["method"].startswith("Welch")
    assert c["df"] == pytest.approx(df) and df == pytest.approx(1.684210526)
    assert c["diff"] == pytest.approx(1.0)
    assert c["hi"] - 1.0 == pytest.approx(t.ppf(0.975, df) * math.sqrt(se2))
    assert c["verdict"] == "within noise"


def test_single_seed_has_no_interval():
    c = compare({0: 0.9}, {0: 0.95})
    assert c["diff"] == pytest.approx(0.05) and math.isnan(c["lo"]) and "no interval" in c["verdict"]
    assert compare({}, {0: 1.0})["verdict"] == "no results"


def _epoch(e, val, best, best_epoch, loss=1.0):
    return {"epoch": e, "train_loss": loss, "val_srcc": val, "val_plcc": val - 0.01, "best_val_srcc": best,
            "best_epoch": best_epoch, "trial_id": "t1", "time_total_s": 10.0 * e,
            "checkpoint_path": f"/x/checkpoint_epoch{e:04d}"}


def _record(results, status="running", cell="c", seed=4, **extra):
    """A trial record as the driver's TrialRecorder leaves it after these Tune results."""
    rec = new_record(f"{cell}-seed{seed}", cell, seed)
    for r in results:
        merge_result(rec, r)
    rec.update(status=status, trial_id="t1", **extra)
    return rec


_FINAL = {"final_report": True, "best_val_srcc": 0.7, "best_val_plcc": 0.69, "best_epoch": 2, "epochs_run": 3,
          "stopped_early": True, "test_srcc": 0.65, "test_plcc": 0.66, "test_krcc": 0.5, "epoch": 3,
          "val_srcc": 0.7, "trial_id": "t1", "time_total_s": 35.0}


def test_trial_row_completed_early_stopped_and_failed(tmp_path):
    meta = {"base_config": {"lr": 1e-3, "seed": 0}, "cells": [{"name": "c", "label": "C", "overrides": {"lr": 2e-3}}]}
    res = [_epoch(1, 0.5, 0.5, 1), _epoch(2, 0.7, 0.7, 2), _epoch(3, 0.6, 0.7, 2), _FINAL]
    row, curve = trial_row(str(tmp_path), meta, "c", 4, _record(res, "completed"))
    assert row["status"] == "completed" and row["stopped_by"] == "patience"
    assert (row["val_srcc"], row["val_plcc"], row["test_srcc"], row["best_epoch"], row["epochs_run"]) == \
        (0.7, 0.69, 0.65, 2, 3)
    assert row["config"] == {"lr": 2e-3, "seed": 4} and row["wall_time_s"] == 35.0 and row["trial_id"] == "t1"
    assert [p["epoch"] for p in curve] == [1, 2, 3] and curve[1]["val_srcc"] == 0.7
    assert row["checkpoint"] is None  # no such folder under tmp_path

    ck = tmp_path / "train" / "c-seed4" / "checkpoint_epoch0002"
    ck.mkdir(parents=True)
    row, _ = trial_row(str(tmp_path), meta, "c", 4, _record(res[:2], "early_stopped", posthoc={
        "test_srcc": 0.61, "test_plcc": 0.62, "test_krcc": 0.4}))
    assert row["status"] == "early_stopped" and row["stopped_by"] == "asha"
    assert row["val_plcc"] == pytest.approx(0.69) and row["epochs_run"] == 2
    assert row["test_srcc"] == 0.61 and row["test_source"] == "posthoc" and row["checkpoint"] == str(ck)

    row, _ = trial_row(str(tmp_path), meta, "c", 4, _record(res[:1], "error", error="boom"))
    assert row["status"] == "error" and math.isnan(row["test_srcc"]) and row["error"] == "boom"
    assert trial_row(str(tmp_path), meta, "c", 4, _record(res[:1]))[0]["status"] == "incomplete"
    assert trial_row(str(tmp_path), meta, "c", 4, None)[0]["status"] == "pending"
    assert trial_row(str(tmp_path), meta, "c", 4, _record([], "early_stopped"))[0]["status"] == "missing"


def test_record_counts_each_epoch_once_across_a_resume_and_takes_the_final_history():
    """A trial continued after a driver kill reports epoch 2 again and then its final summary, whose history
    (the loop's own, complete) fills an epoch whose report never reached the driver."""
    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_srcc": 0.1 * e, "val_plcc": 0.1 * e} for e in (1, 2, 3)]
    rec = _record([_epoch(2, 0.2, 0.2, 2), _epoch(2, 0.25, 0.25, 2), _epoch(3, 0.3, 0.3, 3)])
    assert [(e["epoch"], e["val_srcc"]) for e in rec["epochs"]] == [(2, 0.25), (3, 0.3)]  # the later report wins
    merge_result(rec, {**_FINAL, "best_epoch": 3, "history": hist})
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2, 3] and "history" not in rec["final"]
    assert rec["epochs"][0]["val_srcc"] == pytest.approx(0.1) and rec["epochs"][1]["val_srcc"] == pytest.approx(0.2)
    rec["status"] = "completed"
    meta = {"base_config": {}, "cells": [{"name": "c", "label": "C", "overrides": {}}]}
    row, curve = trial_row("/nonexistent", meta, "c", 4, rec)
    assert row["status"] == "completed" and row["epochs_run"] == 3 and [p["epoch"] for p in curve] == [1, 2, 3]


def _fake_experiment(root, values, study=None):
    """An experiment folder (default: augment) as the driver + Tune leave it: study.json + trial folders."""
    from swiniqa.config import preset
    from swiniqa.config import DEMO_TUNE_OVERRIDES
    from tune_experiments.planning import study_meta
    from tune_experiments.grids import AUGMENT_STUDY

    study = study or AUGMENT_STUDY
    base = preset("demo").replace(**DEMO_TUNE_OVERRIDES)
    seeds = sorted({s for v in values.values() for s in v})
    meta = study_meta(study, base, seeds, True, f"{study.name}-demo", ["a note"], "demo")
    exp = root / f"{study.name}-demo"
    exp.mkdir()
    (exp / "study.json").write_text(json.dumps(meta))
    for cell, by_seed in values.items():
        for seed, (val, test) in by_seed.items():
            d = exp / "train" / f"{cell}-seed{seed}"
            d.mkdir(parents=True)
            lines = [_epoch(1, val - 0.1, val - 0.1, 1), _epoch(2, val, val, 2)]
            lines.append({"final_report": True, "best_val_srcc": val, "best_val_plcc": val, "best_epoch": 2,
                          "epochs_run": 2, "test_srcc": test, "test_plcc": test + 0.01, "test_krcc": test - 0.1,
                          "epoch": 2, "val_srcc": val, "trial_id": f"{cell}{seed}", "time_total_s": 20.0})
            rec = _record(lines, "completed", cell, seed)
            (d / "trial.json").write_text(json.dumps({**rec, "trial_id": f"{cell}{seed}"}))
    return exp


def test_report_from_folder_alone(tmp_path):
    exp = _fake_experiment(tmp_path, {
        "jitter-off": {0: (0.80, 0.90), 1: (0.82, 0.92), 2: (0.81, 0.94)},
        "jitter-on": {0: (0.83, 0.91), 1: (0.79, 0.94)},  # seed 2 missing: partial experiment
    })
    e = load_experiment(str(exp))
    assert [r["status"] for r in e.rows] == ["completed"] * 5 + ["pending"]
    table = cell_table(e, with_params=False)
    off = table.set_index("cell").loc["jitter-off"]
    assert off["test_srcc_mean"] == pytest.approx(0.92) and off["test_srcc_std"] == pytest.approx(0.02)
    assert off["test_srcc_ci95_hi"] == pytest.approx(0.92 + T2 * 0.02 / math.sqrt(3))
    assert off["trials"] == 3 and off["epochs_run_total"] == 6
    s = build_report(str(exp))
    assert s["trials"] == 5 and s["trials_planned"] == 6 and s["partial"]
    assert s["epochs_run"] == 10 and s["epochs_full_grid"] == 6 * 6  # 6 planned trials x 6 epochs (demo tune)
    cmp = [c for c in s["comparisons"] if c["metric"] == "test_srcc"][0]
    assert cmp["method"].startswith("Welch") and cmp["verdict"] == "within noise"  # seeds differ: 0,1,2 vs 0,1
    assert s["best"]["run"] == "jitter-on-seed0" and s["best"]["metrics"]["test_srcc"] == 0.91
    for p in s["plots"]:
        assert os.path.getsize(p) > 1000 and p.endswith(".png")
    md = open(s["tables"]["md"]).read()
    assert "within noise" in md and "0.9200 ± 0.0200" in md and "a note" in md
    import pandas as pd

    csv = pd.read_csv(s["table"])
    for col in ("test_srcc_mean", "test_srcc_std", "test_srcc_ci95_lo", "test_srcc_ci95_hi", "test_plcc_std",
                "val_srcc_mean", "best_epoch_mean", "epochs_run_mean", "wall_time_s_mean", "params"):
        assert col in csv.columns
    assert csv["params"].iloc[0] > 1e5  # counted from the architecture (nano Swin)
    rows = json.load(open(s["results"]))
    assert len(rows) == 5
    for k in ("trial_id", "cell", "seed", "config", "val_srcc", "val_plcc", "test_srcc", "test_plcc", "best_epoch",
              "epochs_run", "checkpoint", "status"):
        assert k in rows[0]
    assert rows[0]["config"]["color_jitter"] is False and rows[3]["config"]["color_jitter"] is True


@pytest.mark.parametrize("study_name,figure", [("lr", "lr_sensitivity.png"), ("size", "size_scatter.png"),
                                               ("ablation", "bars_ablation.png")])
def test_report_writes_every_file_of_each_study(tmp_path, study_name, figure):
    """Each study's report: table_<study>.csv/md/tex, differences_<study>.csv (one row per compared pair and
    metric, the difference of the cells' means), the study's own figure and training_curves.png."""
    import pandas as pd

    from swiniqa.config import preset
    from swiniqa.config import DEMO_TUNE_OVERRIDES
    from tune_experiments.grids import STUDIES, resolve_cells

    study = STUDIES[study_name]
    cells, _ = resolve_cells(study, preset("demo").replace(**DEMO_TUNE_OVERRIDES), True)
    values = {c.name: {0: (0.70 + 0.02 * i, 0.60 + 0.03 * i), 1: (0.71 + 0.02 * i, 0.62 + 0.03 * i)}
              for i, c in enumerate(cells)}
    exp = _fake_experiment(tmp_path, values, study)
    s = build_report(str(exp))
    rep = exp / "report"
    names = set(os.listdir(rep))
    want = {f"table_{study_name}.csv", f"table_{study_name}.md", f"table_{study_name}.tex", figure,
            "training_curves.png"}
    if study.compare:
        want.add(f"differences_{study_name}.csv")
    assert want <= names, want - names
    for n in want:
        if n.endswith(".png"):
            assert open(rep / n, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(rep / n) > 5000, n
    assert str(rep / figure) in s["plots"]
    tex = (rep / f"table_{study_name}.tex").read_text()
    assert "\\begin{tabular}" in tex and all(c.name in tex or c.label in tex for c in cells)
    table = pd.read_csv(rep / f"table_{study_name}.csv").set_index("cell")
    for i, c in enumerate(cells):
        assert table.loc[c.name, "test_srcc_mean"] == pytest.approx(0.61 + 0.03 * i)
    if study.compare:
        diffs = pd.read_csv(rep / f"differences_{study_name}.csv")
        assert len(diffs) == len(study.compare) * 4  # test/val x SRCC/PLCC per compared pair
        by = {c.name: i for i, c in enumerate(cells)}
        for _, d in diffs[diffs["metric"] == "test_srcc"].iterrows():
            assert d["diff"] == pytest.approx(0.03 * (by[d["to"]] - by[d["from"]]))


def test_report_cli_and_not_an_experiment(tmp_path, capsys):
    from swiniqa.cli import main

    exp = _fake_experiment(tmp_path, {"jitter-off": {0: (0.8, 0.9), 1: (0.82, 0.91)},
                                      "jitter-on": {0: (0.81, 0.92), 1: (0.83, 0.95)}})
    assert main(["report", str(exp), "--json", "--no-plots"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["trials"] == 4 and not s["partial"] and s["plots"] == []
    cmp = [c for c in s["comparisons"] if c["metric"] == "test_srcc"][0]
    assert cmp["method"].startswith("paired") and cmp["diff"] == pytest.approx(0.03)
    assert main(["report", str(tmp_path)]) == 2
    assert "not a swiniqa tune experiment" in capsys.readouterr().err


def test_report_on_s3(tmp_path, monkeypatch):
    """The same report from an s3:// experiment (moto S3 server): read, tables/figures/results written back."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    import pyarrow.fs as pafs

    from helpers import S3_CREDENTIALS, local_s3

    with local_s3() as endpoint:
        for k, v in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(k, v)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bkt")
        exp = _fake_experiment(tmp_path, {"jitter-off": {0: (0.8, 0.9), 1: (0.82, 0.91)},
                                          "jitter-on": {0: (0.81, 0.92)}})
        s3, _ = pafs.FileSystem.from_uri("s3://bkt")
        pafs.copy_files(str(exp), "bkt/runs/augment-demo", destination_filesystem=s3)
        uri = "s3://bkt/runs/augment-demo"
        s = build_report(uri)
        assert s["trials"] == 3 and s["table"] == uri + "/report/table_augment.csv"
        names = {i.base_name for i in s3.get_file_info(pafs.FileSelector("bkt/runs/augment-demo/report"))}
        assert {"table_augment.csv", "table_augment.md", "bars_augment.png", "training_curves.png"} <= names
        rows = json.loads(s3.open_input_stream("bkt/runs/augment-demo/results.json").read())
        assert len(rows) == 3 and rows[0]["checkpoint"] == uri + "/train/jitter-off-seed0/checkpoint_epoch0002"


def test_trial_that_left_no_data_is_missing_and_the_experiment_partial(tmp_path):
    """A trial the driver saw start and end but whose results never reached its record (the driver died first)
    is "missing", not "early_stopped", and the report says partial."""
    exp = _fake_experiment(tmp_path, {"jitter-off": {0: (0.8, 0.9), 1: (0.82, 0.91)},
                                      "jitter-on": {0: (0.81, 0.92)}})
    lost = exp / "train" / "jitter-on-seed1"
    lost.mkdir()
    (lost / "trial.json").write_text(json.dumps(_record([], "early_stopped", "jitter-on", 1)))
    rows = {r["run"]: r for r in load_experiment(str(exp)).rows}
    assert rows["jitter-on-seed1"]["status"] == "missing" and not rows["jitter-on-seed1"]["stopped_early"]
    s = build_report(str(exp), plots=False)
    assert s["partial"] is True and s["status"] == {"completed": 3, "missing": 1}
