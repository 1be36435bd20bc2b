"""Study grids, dry runs, input checks, resource planning and one real small sweep on Ray Tune."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil

import pytest

from swiniqa.config import preset
from swiniqa.errors import ConfigError, SwiniqaError
from tune_experiments.driver import DEMO_TUNE_DEFAULTS, run_study, tune_base_config
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
    for k, v in DEMO_TUNE_DEFAULTS.items():
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


def test_user_errors_are_one_line(capsys, tmp_path):
    rc, _, err = _cli_json(capsys, ["tune", "lr", "--dry-run", "--set", "lrr=1"])
    assert rc == 2 and "unknown config key 'lrr'" in err
    rc, _, err = _cli_json(capsys, ["tune", "lr", "--dry-run", "--seeds", "0"])
    assert rc == 2 and "--seeds" in err
    with pytest.raises(ConfigError):
        run_study("nope", preset("demo"), dry_run=True)
    # an existing experiment is never silently reused: --resume or another --name
    cfg = tune_base_config("demo")
    exp = tmp_path / "augment-demo"
    exp.mkdir()
    from tune_experiments.driver import study_meta
    from tune_experiments.grids import AUGMENT_STUDY as A

    base = cfg.replace(output=str(exp / "train"))
    (exp / "study.json").write_text(json.dumps(study_meta(A, base, [0], True, "augment-demo")))
    with pytest.raises(SwiniqaError, match="already exists"):
        run_study("augment", cfg, seeds=1, output=str(tmp_path))
    with pytest.raises(SwiniqaError, match="other settings.*seeds"):
        run_study("augment", cfg, seeds=2, output=str(tmp_path), resume=True)


def test_plan_resources_fits_the_cluster(ray_session):
    from tune_experiments.driver import plan_resources

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

    from tune_experiments.driver import release_leaked_placement_groups

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


# ------------------------------------------------------------------------------------------ a real sweep
def test_small_sweep_report_resume_and_posthoc(ray_session, demo_root, tmp_path, capsys):
    """2 trials x 2 epochs of a nano model on a few demo images, then report, resume and the
    post-hoc test of an (artificially) early-stopped trial."""
    cfg = tune_base_config("demo", overrides=dict(
        data_root=str(demo_root), epochs=2, train_patches=1, test_patches=1, batch_size=16, warmup_epochs=0,
        patch_size=64, max_images=48))
    out = str(tmp_path / "runs")
    s = run_study("augment", cfg, seeds=1, output=out)
    err = capsys.readouterr().err
    assert "[1/2]" in err and "[2/2]" in err and "jitter-on-seed0" in err
    exp = s["experiment"]
    assert s["trials"] == 2 and s["status"] == {"completed": 2} and s["max_concurrent_trials"] == 2
    assert 2 <= s["epochs_run"] <= s["epochs_full_grid"] == 4
    for p in s["plots"]:
        assert os.path.getsize(p) > 1000
    import pandas as pd

    table = pd.read_csv(s["table"])
    assert {"test_srcc_mean", "test_srcc_std", "test_srcc_ci95_lo", "test_plcc_mean", "params"} <= set(table.columns)
    rows = json.load(open(os.path.join(exp, "results.json")))
    assert [(r["cell"], r["seed"], r["status"]) for r in rows] == [("jitter-off", 0, "completed"),
                                                                   ("jitter-on", 0, "completed")]
    for r in rows:
        assert math.isfinite(r["test_srcc"]) and r["test_source"] == "worker"
        assert os.path.isfile(os.path.join(r["checkpoint"], "model.safetensors"))
        assert r["checkpoint"].endswith(f"checkpoint_epoch{r['best_epoch']:04d}")
        assert glob.glob(os.path.join(exp, "tensorboard", f"{r['cell']}-seed0", "events.out.tfevents.*"))
        final = json.load(open(os.path.join(exp, "train", f"{r['cell']}-seed0", "final.json")))
        assert final["test_srcc"] == pytest.approx(r["test_srcc"])
    assert rows[1]["config"]["color_jitter"] is True and rows[0]["config"]["model_size"] == "nano"
    assert s["best"]["checkpoint"] in {r["checkpoint"] for r in rows}

    # `swiniqa pull` of the finished sweep returns the best trial's checkpoint, verified
    from swiniqa.cli import main

    assert main(["pull", exp, "--dest", str(tmp_path / "best"), "--json"]) == 0
    pulled = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pulled["checkpoints"][0]["source"].rstrip("/").endswith(
        os.path.relpath(s["best"]["checkpoint"], exp).replace(os.sep, "/"))
    assert os.path.isfile(os.path.join(pulled["checkpoint"], "model.safetensors"))
    assert pulled["srcc"] == pytest.approx(max(r["val_srcc"] for r in rows))

    # no silent reuse; --resume of a finished sweep reruns nothing
    with pytest.raises(SwiniqaError, match="already exists"):
        run_study("augment", cfg, seeds=1, output=out)
    s2 = run_study("augment", cfg, seeds=1, output=out, resume=True, progress=False)
    assert s2["resumed"] and s2["trials"] == 2 and s2["epochs_run"] == s["epochs_run"]

    # A trial stopped by ASHA has no final line: its best checkpoint is tested after the sweep and
    # must give the worker's own test metrics (same weights, same fixed test crops).
    from tune_experiments.aggregate import load_experiment
    from tune_experiments.driver import _splits_for_seeds, run_posthoc_tests

    res = os.path.join(exp, "jitter-on-seed0", "result.json")
    lines = open(res).read().splitlines()
    open(res, "w").write("\n".join(ln for ln in lines if '"final_report": true' not in ln) + "\n")
    os.remove(os.path.join(exp, "train", "jitter-on-seed0", "final.json"))
    e = load_experiment(exp)
    stopped = [r for r in e.rows if r["cell"] == "jitter-on"][0]
    assert stopped["status"] == "early_stopped" and not math.isfinite(stopped["test_srcc"])
    splits, _ = _splits_for_seeds(cfg, [0], check=False, progress=False)
    done = run_posthoc_tests(exp, e.rows, splits, cfg, progress=False)
    assert done["jitter-on-seed0"]["test_srcc"] == pytest.approx(rows[1]["test_srcc"], abs=1e-4)
    rc, rep, _ = _cli_json(capsys, ["report", exp, "--json", "--no-plots"])
    assert rc == 0 and rep["status"] == {"completed": 1, "early_stopped": 1}
    again = json.load(open(os.path.join(exp, "results.json")))
    assert again[1]["test_source"] == "posthoc" and again[1]["stopped_by"] == "asha"
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
