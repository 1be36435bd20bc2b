"""Study grids, dry runs, input checks, resource planning and one real small sweep on Ray Tune."""

from __future__ import annotations

import glob
import json
import math
import os

import pytest

from swiniqa.config import DEMO_TUNE_OVERRIDES, preset
from swiniqa.errors import ConfigError, SwiniqaError
from tune_experiments.driver import StudyOptions, run_study, tune_base_config
from tune_experiments.grids import (ABLATION_STUDY, AUGMENT_STUDY, LR_STUDY, LR_VALUES, SIZE_STUDY, STUDIES,
                                    resolve_cells, trial_specs)


# ------------------------------------------------------------------------------------------ grids
def test_grid_definitions_match_the_paper():
    assert set(STUDIES) == {"lr", "size", "ablation", "augment"}
    assert [c.overrides["lr"] for c in LR_STUDY.cells] == [5e-6, 3e-6, 1e-6, 5e-7, 1e-7]
    for study in (LR_STUDY, SIZE_STUDY, AUGMENT_STUDY):  # full model
        for c in study.cells:
            assert (c.overrides["backbone"], c.overrides["multiscale"], c.overrides["attention"]) == ("swin", True, True)
    assert [c.overrides["model_size"] for c in SIZE_STUDY.cells] == ["tiny", "small", "base"]
    abl = {c.name: (c.overrides["backbone"], c.overrides["multiscale"], c.overrides["attention"])
           for c in ABLATION_STUDY.cells}
    assert abl == {"C0": ("resnet50", False, False), "A2": ("swin", False, False), "A1": ("swin", True, False),
                   "E6": ("swin", True, True)}
    assert ABLATION_STUDY.compare == (("C0", "A2"), ("A2", "A1"), ("A1", "E6"))
    assert [c.overrides["color_jitter"] for c in AUGMENT_STUDY.cells] == [False, True]
    assert AUGMENT_STUDY.compare == (("jitter-off", "jitter-on"),)


def test_paper_cells_are_unchanged_and_demo_uses_stand_ins():
    paper = preset("paper")
    cells, notes = resolve_cells(LR_STUDY, paper)
    assert [c.overrides["lr"] for c in cells] == list(LR_VALUES) and not notes
    demo = tune_base_config("demo")
    cells, notes = resolve_cells(LR_STUDY, demo)
    lrs = [c.overrides["lr"] for c in cells]
    assert lrs[2] == pytest.approx(demo.lr)  # the grid's centre sits at the demo lr
    for got, want in zip(lrs, LR_VALUES):  # same shape: every point scaled by the same factor
        assert got / want == pytest.approx(demo.lr / 1e-6)
    assert "scaled" in notes[0]
    sizes, notes = resolve_cells(SIZE_STUDY, demo)
    assert [c.overrides["model_size"] for c in sizes] == ["nano", "micro", "mini"] and "nano" in notes[0]
    abl, _ = resolve_cells(ABLATION_STUDY, demo)
    assert abl[0].overrides["backbone"] == "resnet10t"


def test_demo_tune_defaults_are_cheaper_than_demo_training():
    d, t = preset("demo"), tune_base_config("demo")
    for k, v in DEMO_TUNE_OVERRIDES.items():
        assert getattr(t, k) == v
    assert t.epochs <= d.epochs and t.train_patches <= d.train_patches
    assert tune_base_config("demo", overrides={"epochs": 3}).epochs == 3  # user overrides win
    assert tune_base_config("paper").epochs == preset("paper").epochs  # paper untouched


def test_trial_specs_seed_major():
    specs, _ = trial_specs(AUGMENT_STUDY, preset("paper"), [0, 1, 2])
    assert [(s["cell"], s["seed"]) for s in specs] == [
        ("jitter-off", 0), ("jitter-on", 0), ("jitter-off", 1), ("jitter-on", 1), ("jitter-off", 2), ("jitter-on", 2)]
    assert specs[3]["trial"] == "jitter-on-seed1"


def _cli_json(capsys, argv):
    from swiniqa.cli import main

    rc = main(argv)
    cap = capsys.readouterr()
    return rc, (json.loads(cap.out.strip().splitlines()[-1]) if rc == 0 else None), cap.err


def test_a_sweep_with_a_failed_trial_exits_3_after_its_report(capsys, tmp_path, monkeypatch):
    """A trial that ran out of restarts is an `error` row of the report, and the command says so: exit code 3,
    one `swiniqa: error:` line naming how many and how to retry, and under --json the summary (the last stdout
    line) carries the same `error` and `exit_code`. A sweep whose trials all ended exits 0."""
    import tune_experiments.driver as driver
    from swiniqa.cli import main

    planned = {"study": "augment", "experiment": str(tmp_path / "augment-demo"), "trials": 2, "trials_planned": 2,
               "results": str(tmp_path / "augment-demo" / "results.json")}
    for status, code in (({"completed": 1, "error": 1}, 3), ({"completed": 1, "early_stopped": 1}, 0)):
        monkeypatch.setattr(driver, "run_study", lambda *a, **k: {**planned, "status": status})
        rc = main(["tune", "augment", "--preset", "demo", "--output", str(tmp_path), "--json"])
        cap = capsys.readouterr()
        s = json.loads(cap.out.strip().splitlines()[-1])
        assert rc == code and s["status"] == status, (rc, cap.err)
        if code:
            last = cap.err.strip().splitlines()[-1]
            assert last == f"swiniqa: error: {s['error']}" and s["exit_code"] == 3
            assert s["error"].startswith("1 of 2 trial(s) failed") and planned["results"] in s["error"]
            assert "--resume" in s["error"]
        else:
            assert "error" not in s and "swiniqa: error" not in cap.err


def test_dry_run_lists_the_grid(capsys, tmp_path):
    rc, s, _ = _cli_json(capsys, ["tune", "ablation", "--preset", "paper", "--dry-run", "--json", "--seeds", "3",
                                  "--output", str(tmp_path)])
    assert rc == 0 and s["dry_run"] and len(s["trials"]) == 12 and s["epochs_full_grid"] == 120
    for t in s["trials"]:
        for k in ("lr", "model_size", "backbone", "multiscale", "attention", "color_jitter", "seed"):
            assert k in t
    c0 = [t for t in s["trials"] if t["cell"] == "C0"]
    assert [t["seed"] for t in c0] == [0, 1, 2]
    assert (c0[0]["backbone"], c0[0]["multiscale"], c0[0]["attention"]) == ("resnet50", False, False)
    assert not os.listdir(tmp_path)  # ran (wrote) nothing
    rc, s, _ = _cli_json(capsys, ["tune", "lr", "--preset", "demo", "--dry-run", "--json", "--seeds", "2"])
    assert rc == 0 and len(s["trials"]) == 10 and any("scaled" in n for n in s["notes"])
    assert sorted({t["lr"] for t in s["trials"]}) == pytest.approx([1e-4, 5e-4, 1e-3, 3e-3, 5e-3])
    rc, s, _ = _cli_json(capsys, ["tune", "size", "--preset", "demo", "--dry-run", "--json"])
    assert [t["model_size"] for t in s["trials"]] == ["nano", "micro", "mini"]
    # the early-stopping flags reach the plan: defaults, then --grace-period/--reduction-factor, --no-early-stop
    assert (s["early_stopping"]["asha"], s["early_stopping"]["grace_period"], s["early_stopping"]["reduction_factor"]) \
        == (True, 2, 2)
    rc, s, _ = _cli_json(capsys, ["tune", "augment", "--preset", "demo", "--dry-run", "--json", "--grace-period", "1",
                                  "--reduction-factor", "3"])
    assert rc == 0 and (s["early_stopping"]["grace_period"], s["early_stopping"]["reduction_factor"]) == (1, 3)
    rc, s, _ = _cli_json(capsys, ["tune", "augment", "--preset", "demo", "--dry-run", "--json", "--no-early-stop"])
    assert rc == 0 and s["early_stopping"]["asha"] is False


def test_user_errors_are_one_line(capsys, tmp_path):
    rc, _, err = _cli_json(capsys, ["tune", "lr", "--dry-run", "--set", "lrr=1"])
    assert rc == 2 and "unknown config key 'lrr'" in err
    rc, _, err = _cli_json(capsys, ["tune", "lr", "--dry-run", "--seeds", "0"])
    assert rc == 2 and "--seeds" in err
    with pytest.raises(ConfigError):
        run_study("nope", preset("demo"), StudyOptions(dry_run=True))
    # an existing experiment is never silently reused: --resume or another --name
    cfg = tune_base_config("demo")
    exp = tmp_path / "augment-demo"
    exp.mkdir()
    from tune_experiments.planning import study_meta
    from tune_experiments.grids import AUGMENT_STUDY as A

    base = cfg.replace(output=str(exp / "train"))
    (exp / "study.json").write_text(json.dumps(study_meta(A, base, [0], True, "augment-demo")))
    with pytest.raises(SwiniqaError, match="already exists"):
        run_study("augment", cfg, StudyOptions(seeds=1, output=str(tmp_path)))
    with pytest.raises(SwiniqaError, match="other settings.*seeds"):
        run_study("augment", cfg, StudyOptions(seeds=2, output=str(tmp_path), resume=True))


def test_plan_resources_fits_the_cluster(ray_session):
    from tune_experiments.planning import plan_resources

    cfg = tune_base_config("demo")  # 0.9 CPU per worker: two trials + two 0.01-CPU drivers fit 2 CPUs
    assert plan_resources(cfg, 10) == ({"cpu": 0.01}, 2, [])
    assert plan_resources(cfg, 1)[1] == 1
    assert plan_resources(cfg.replace(cpus_per_worker=1.0), 10)[1] == 1  # 2 x 1.01 > 2: only one fits
    with pytest.raises(SwiniqaError, match="one trial needs"):
        plan_resources(cfg.replace(cpus_per_worker=3.0), 10)
    _, n, notes = plan_resources(cfg, 10, max_concurrent=4)
    assert n == 4 and notes


def test_leaked_worker_placement_groups_are_released(ray_session):
    """Only unnamed, actor-less placement groups of the trial-worker shape are removed, after the grace time."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    from tune_experiments.placement import release_leaked_placement_groups

    leaked = placement_group([{"CPU": 0.3}])
    named = placement_group([{"CPU": 0.3}], name="keep-me")
    other = placement_group([{"CPU": 0.2}])
    busy = placement_group([{"CPU": 0.3}])
    ray.get([pg.ready() for pg in (leaked, named, other, busy)])

    @ray.remote(num_cpus=0.3)
    class Holder:
        def ping(self):
            return 1

    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    h = Holder.options(scheduling_strategy=PlacementGroupSchedulingStrategy(busy)).remote()
    ray.get(h.ping.remote())
    try:
        unused: dict = {}
        assert release_leaked_placement_groups({"CPU": 0.3}, 1, unused, grace_s=60) == 0  # within grace
        assert release_leaked_placement_groups({"CPU": 0.3}, 1, unused, grace_s=0) == 1
        state = {pg.id.hex(): placement_group_table(pg)["state"] for pg in (leaked, named, other, busy)}
        assert state[leaked.id.hex()] == "REMOVED"
        assert {state[pg.id.hex()] for pg in (named, other, busy)} == {"CREATED"}
    finally:
        ray.kill(h)
        for pg in (named, other, busy):
            remove_placement_group(pg)


def test_elastic_trials_leaked_groups_of_any_size_between_min_and_max_are_released(ray_session):
    """An elastic trial (``--num-workers 1-2``) leaves a group of 1 or 2 worker bundles; a fixed 1-worker
    sweep never touches a 2-bundle group."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    from tune_experiments.placement import release_leaked_placement_groups

    two = placement_group([{"CPU": 0.3}, {"CPU": 0.3}])
    ray.get(two.ready())
    try:
        release_leaked_placement_groups({"CPU": 0.3}, 1, {}, grace_s=0)
        assert placement_group_table(two)["state"] == "CREATED"
        assert release_leaked_placement_groups({"CPU": 0.3}, (1, 2), {}, grace_s=0) >= 1
        assert placement_group_table(two)["state"] == "REMOVED"
    finally:
        if placement_group_table(two)["state"] != "REMOVED":
            remove_placement_group(two)


# ------------------------------------------------------------------------------------------ real sweeps
def test_patience_and_asha_stop_trials_for_real(ray_session, tmp_path):
    """Three trials, two at a time, on learnable data, one ASHA rung at epoch 3 (reduction factor 3):

    * ``frozen-patience`` (lr 1e-30: no weight moves, so val SRCC never improves; patience 1) stops itself
      after epoch 2, before the rung, and tests its best weights in the worker;
    * ``learns`` (started beside it) passes the rung and runs all 4 epochs;
    * ``frozen-asha`` (the same frozen model, patience 100) starts when ``frozen-patience`` ends, so it
      reaches the rung after ``learns`` did, scores the frozen value there, below the rung's cut, and ASHA
      stops it; its best checkpoint is tested after the sweep, and as it holds the same weights as
      ``frozen-patience`` on the same split, the post-hoc test must give the worker's test metrics.
    No result line is edited: every stop is the real one. Then every report file of the study is checked.
    """
    from learnable_data import write_noise_dataset
    from tune_experiments.grids import Cell, Study

    root, _ = write_noise_dataset(tmp_path / "data")
    cfg = tune_base_config("demo", overrides=dict(
        dataset="csv", data_root=root, patch_size=64, resize=None, train_patches=4, test_patches=2, batch_size=16,
        epochs=4, lr=2e-3, warmup_epochs=0, content_aug=False, val_fraction=0.25, test_fraction=0.2))
    study = Study(name="stops", title="Early stopping for real", varied=("lr", "patience"), figure="bars",
                  cells=(Cell("frozen-patience", "frozen, patience 1", {"lr": 1e-30, "patience": 1}),
                         Cell("learns", "learns", {"lr": 2e-3, "patience": 100}),
                         Cell("frozen-asha", "frozen, patience 100", {"lr": 1e-30, "patience": 100})),
                  compare=(("frozen-patience", "learns"),))
    s = run_study(study, cfg, StudyOptions(seeds=1, output=str(tmp_path / "runs"), max_concurrent=2, grace_period=3,
                                          reduction_factor=3, cpu_stand_ins=False, progress=False))
    exp = s["experiment"]
    rows = {r["cell"]: r for r in json.load(open(os.path.join(exp, "results.json")))}
    p, learn, a = rows["frozen-patience"], rows["learns"], rows["frozen-asha"]
    assert (p["stopped_by"], p["epochs_run"], p["test_source"]) == ("patience", 2, "worker"), p
    assert (learn["stopped_by"], learn["epochs_run"], learn["status"]) == (None, 4, "completed"), learn
    assert learn["val_srcc"] > p["val_srcc"] + 0.2
    assert (a["stopped_by"], a["status"], a["epochs_run"], a["test_source"]) == ("asha", "early_stopped", 3,
                                                                                "posthoc"), a
    assert a["val_srcc"] == p["val_srcc"]
    assert math.isfinite(a["test_srcc"]) and a["test_srcc"] == pytest.approx(p["test_srcc"], abs=1e-4)
    assert s["status"] == {"completed": 2, "early_stopped": 1}
    assert s["epochs_run"] == 2 + 4 + 3 and s["epochs_full_grid"] == 12
    assert s["max_concurrent_trials"] == 2
    # every trial wrote what made it; one environment, one dataset (with its label file hashed)
    assert s["provenance"]["one_environment"] and s["provenance"]["one_dataset"], s["provenance"]
    for run in rows.values():
        ds = json.load(open(os.path.join(exp, "train", run["run"], "dataset.json")))
        assert ds["label_files"] and ds["fingerprint"] == run["dataset_fingerprint"]
    for r in rows.values():
        assert os.path.isfile(os.path.join(r["checkpoint"], "model.safetensors"))
        assert r["checkpoint"].endswith(f"checkpoint_epoch{r['best_epoch']:04d}")
    # the report: tables (CSV, Markdown, LaTeX), the compared difference, bars and training curves
    rep = os.path.join(exp, "report")
    for name in ("table_stops.csv", "table_stops.md", "table_stops.tex", "differences_stops.csv"):
        assert os.path.getsize(os.path.join(rep, name)) > 100, name
    for name in ("bars_stops.png", "training_curves.png"):
        assert open(os.path.join(rep, name), "rb").read(8) == b"\x89PNG\r\n\x1a\n", name
    tex = open(os.path.join(rep, "table_stops.tex")).read()
    assert "\\begin{tabular}" in tex and all(c.label in tex for c in study.cells)
    import pandas as pd

    diffs = pd.read_csv(os.path.join(rep, "differences_stops.csv"))
    d = diffs[(diffs["from"] == "frozen-patience") & (diffs["to"] == "learns") & (diffs["metric"] == "test_srcc")]
    assert len(d) == 1 and float(d["diff"].iloc[0]) == pytest.approx(learn["test_srcc"] - p["test_srcc"], abs=1e-6)


def _driver_env(ray_session) -> dict:
    """The CLI in a subprocess, attached to the session's Ray (no second Ray on 2 cores)."""
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    return env


def _kill_once_registered(args: list, env: dict, snapshot, checkpoint: str) -> None:
    """Run the CLI ``args`` and SIGKILL it once Ray Train has *registered* ``checkpoint`` (its ``snapshot`` names
    it): a kill between the folder's upload and its registration legitimately restarts that run from scratch."""
    import signal
    import subprocess
    import time

    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 400
        while not (snapshot.is_file() and checkpoint in snapshot.read_text()):
            assert driver.poll() is None, driver.stderr.read()[-2000:]
            assert time.time() < deadline, f"{checkpoint} was never registered"
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()


def test_cli_sweep_killed_mid_trial_resumes_without_rerunning(ray_session, demo_root, tmp_path, capsys):
    """`swiniqa tune augment` through the console entry point, one trial at a time, ASHA off: the driver is
    SIGKILLed while the second trial is running; `--resume` then reruns nothing finished, continues the
    second trial from its checkpoint (its epoch 1 is not trained again), and the experiment reports,
    pulls and lists every file."""
    import subprocess
    import sys
    import time

    out = tmp_path / "runs"
    args = [sys.executable, "-m", "swiniqa.cli", "tune", "augment", "--preset", "demo", "--seeds", "1",
            "--max-concurrent", "1", "--no-early-stop", "--epochs", "3", "--set", f"data_root={demo_root}",
            "--set", "max_images=32", "--set", "patch_size=64", "--set", "batch_size=16", "--set", "test_patches=1",
            "--set", "warmup_epochs=0", "--output", str(out), "--json"]
    env = _driver_env(ray_session)
    exp = out / "augment-demo"
    first, second = exp / "train" / "jitter-off-seed0", exp / "train" / "jitter-on-seed0"
    _kill_once_registered(args, env, second / "checkpoint_manager_snapshot.json", "checkpoint_epoch0001")
    record = json.loads((first / "trial.json").read_text())
    assert record["status"] == "completed" and record["final"]  # the first trial ended before the kill
    assert json.loads((second / "trial.json").read_text())["final"] is None  # killed mid-trial
    done_before = (first / "trial.json").read_text()
    epoch1 = json.loads((second / "checkpoint_epoch0001" / "metrics.json").read_text())
    first_lines = len(open(exp / "jitter-off-seed0" / "result.json").read().splitlines())
    time.sleep(3)  # let Ray release the killed driver's actors

    r = subprocess.run(args + ["--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["resumed"] is True and s["trials"] == 2 and s["status"] == {"completed": 2}
    assert s["max_concurrent_trials"] == 1 and s["epochs_run"] == 6 and s["epochs_full_grid"] == 6
    assert json.load(open(exp / "study.json"))["early_stopping"]["asha"] is False
    # the finished trial was not rerun
    assert (first / "trial.json").read_text() == done_before
    assert len(open(exp / "jitter-off-seed0" / "result.json").read().splitlines()) == first_lines
    # the interrupted one continued from its checkpoint: epoch 1 kept its recorded row, no epoch twice
    import csv

    hist = list(csv.DictReader(open(second / "history.csv")))
    assert [int(float(h["epoch"])) for h in hist] == [1, 2, 3]
    assert float(hist[0]["epoch_time_s"]) == pytest.approx(epoch1["epoch_time_s"], rel=1e-9)
    assert float(hist[0]["train_loss"]) == pytest.approx(epoch1["train_loss"], rel=1e-9)
    rows = json.load(open(exp / "results.json"))
    assert [(x["cell"], x["status"], x["epochs_run"]) for x in rows] == [("jitter-off", "completed", 3),
                                                                        ("jitter-on", "completed", 3)]
    for x in rows:
        assert math.isfinite(x["test_srcc"]) and x["test_source"] == "worker"
        assert glob.glob(str(exp / "tensorboard" / f"{x['cell']}-seed0" / "events.out.tfevents.*"))
    assert rows[1]["config"]["color_jitter"] is True and rows[0]["config"]["color_jitter"] is False

    # `swiniqa report` rebuilds every file of the study; `swiniqa pull` fetches the best checkpoint
    # (in this process: the console entry point was shown above, the verbs need no Ray)
    rc, rep, err = _cli_json(capsys, ["report", str(exp), "--json"])
    assert rc == 0, err[-2000:]
    for k in ("table", "plots", "trials", "epochs_run", "epochs_full_grid", "best"):
        assert k in rep, k
    names = set(os.listdir(exp / "report"))
    assert {"table_augment.csv", "table_augment.md", "table_augment.tex", "differences_augment.csv",
            "bars_augment.png", "training_curves.png"} <= names
    import pandas as pd

    table = pd.read_csv(exp / "report" / "table_augment.csv")
    assert {"test_srcc_mean", "test_srcc_std", "test_srcc_ci95_lo", "test_plcc_mean", "params"} <= set(table.columns)
    rc, pulled, err = _cli_json(capsys, ["pull", str(exp), "--dest", str(tmp_path / "best"), "--json"])
    assert rc == 0, err[-2000:]
    assert os.path.isfile(os.path.join(pulled["checkpoint"], "model.safetensors"))
    assert pulled["srcc"] == pytest.approx(max(x["val_srcc"] for x in rows))
    assert pulled["config"]["color_jitter"] == rows[[x["val_srcc"] for x in rows].index(pulled["srcc"])]["config"][
        "color_jitter"]
