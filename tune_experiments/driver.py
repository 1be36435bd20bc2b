"""Run a study grid on Ray Tune: one Tune trial = one Ray Train run (so every trial can be multi-GPU).

    from swiniqa.config import preset
    from tune_experiments.driver import run_study, tune_base_config
    summary = run_study("lr", tune_base_config("demo"), seeds=2, output="runs")

Layout of ``<output>/<name>/`` (the experiment folder; ``name`` defaults to ``<study>-<preset>``)::

    study.json                 what was asked: study, seeds, cells (overrides), base config, notes
    <cell>-seed<k>/            Tune's trial folder: params.json, result.json (one line per epoch
                               + a final line with the test metrics), progress.csv, error.txt
    train/<cell>-seed<k>/      the trial's Ray Train run: checkpoint_epochNNNN/ folders, history.csv, curves.png
    tensorboard/<cell>-seed<k>/  per-epoch curves (``tensorboard --logdir <experiment>``)
    posthoc_test.json          test metrics of trials that ASHA stopped (computed after the sweep)
    results.json               one row per trial (also what ``swiniqa pull`` reads)
    report/                    tables (CSV, Markdown, LaTeX) and figures (PNG)

Early stopping is twofold: Tune's ASHA scheduler stops trials whose validation SRCC is in the bottom
part of a rung (time = epoch, grace period 2 epochs, max = epochs, finishers are never stopped), and
each trial stops itself after ``patience`` epochs without improvement. A trial ASHA stops never reaches
its own test evaluation, so after the sweep its best-validation checkpoint is evaluated on its test
split once (same code as the worker's), recorded in ``posthoc_test.json``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import ray.tune

from swiniqa.config import DEMO_TUNE_OVERRIDES, TrainConfig, apply_overrides, config_from_dict, load_file
from swiniqa.config import preset as load_preset
from swiniqa.errors import ConfigError, SwiniqaError
from swiniqa.layout import FINAL_FILE, POSTHOC_FILE, STUDY_FILE, TRAIN_DIR
from swiniqa.storage import ensure_writable, is_remote
from tune_experiments.grids import Study, get_study, resolve_cells, run_name, trial_specs, uses_cpu_stand_ins

#: What ``--preset demo`` changes for studies on top of the demo preset (cheaper trials; the why is at
#: ``swiniqa.config.DEMO_TUNE_OVERRIDES``); ``swiniqa config --preset demo-tune`` shows the result.
DEMO_TUNE_DEFAULTS: dict[str, Any] = DEMO_TUNE_OVERRIDES
#: Keys whose difference makes an experiment folder a different experiment (checked on --resume).
_IDENTITY_IGNORES = ("output", "name")
DRIVER_RESOURCE = "TRAIN_DRIVER"
log = logging.getLogger("swiniqa.tune")


def _show(line: str) -> None:
    """A progress line on stderr (only called when the caller asked for ``progress``); problems go to
    ``log`` instead, so they reach whatever handler the application configured."""
    print(line, file=sys.stderr, flush=True)


def tune_base_config(preset_name: Optional[str] = "demo", config_file: Optional[str] = None,
                     overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """The base config of a study: preset, then :data:`DEMO_TUNE_DEFAULTS` (demo only), then the file,
    then overrides (later wins)."""
    from swiniqa.config import TrainConfig as _TC

    cfg = load_preset(preset_name) if preset_name else _TC()
    if preset_name == "demo":
        cfg = apply_overrides(cfg, DEMO_TUNE_DEFAULTS)
    if config_file:
        cfg = apply_overrides(cfg, load_file(config_file))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


# ------------------------------------------------------------------------------------------ trials
def _trial_dirname(trial) -> str:
    return run_name(trial.config["cell"], trial.config["seed"])


def _trial_name(trial) -> str:
    return run_name(trial.config["cell"], trial.config["seed"])


def study_trial(config: dict[str, Any], exp_uri: str = "", configs: Optional[dict] = None,
                splits: Optional[dict] = None) -> None:
    """One Tune trial: the Ray Train run of ``configs[cell]`` with ``seed``, then its test metrics.

    The Train run is named ``<cell>-seed<k>`` under ``<experiment>/train``: a trial restarted by
    ``--resume`` continues that run from its latest checkpoint.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    from swiniqa.training.trainer import _worker_error, make_trainer

    cell, seed = config["cell"], int(config["seed"])
    cfg = config_from_dict(configs[cell]).replace(seed=seed)
    run = run_name(cell, seed)
    trainer, _ = make_trainer(cfg, run, f"{exp_uri}/{TRAIN_DIR}", splits[seed], callbacks=[TuneReportCallback()],
                              tensorboard=f"{exp_uri}/tensorboard/{run}")
    try:
        result = trainer.fit()
    except Exception as e:  # noqa: BLE001 - one readable line in Tune's error.txt
        raise RuntimeError(str(_worker_error(e))) from None
    final = dict(result.return_value or {})
    history = final.pop("history", [])
    # Also next to the Train run: Tune syncs its trial folder lazily, a killed driver can lose this row.
    from tune_experiments.aggregate import write_json

    try:
        write_json(f"{exp_uri}/{TRAIN_DIR}/{run}/{FINAL_FILE}", final)
    except SwiniqaError:
        pass
    try:
        from swiniqa.training.curves import write_history

        write_history(f"{exp_uri}/{TRAIN_DIR}/{run}", history, run)
    except SwiniqaError:
        pass
    # Last row of the trial: the worker's test metrics of its best-validation weights.
    ray.tune.report({**final, "final_report": True, "epoch": final.get("epochs_run", 0),
                     "val_srcc": final.get("best_val_srcc", float("nan")),
                     "val_plcc": final.get("best_val_plcc", float("nan"))})


def _fmt(v: Any, spec: str = ".4f") -> str:
    try:
        return format(float(v), spec) if v is not None and math.isfinite(float(v)) else "-"
    except (TypeError, ValueError):
        return "-"


class TrialLines(ray.tune.Callback):
    """One stderr line per finished, early-stopped or failed trial (module level: Tune pickles it)."""

    def __init__(self, total: int, epochs: int):
        self.total, self.epochs = total, epochs

    def _line(self, trials, trial, what: str) -> None:
        n = 1 + sum(1 for t in trials if t is not trial and t.status in ("TERMINATED", "ERROR"))
        r = trial.last_result or {}
        if r.get("final_report"):
            how = "stopped by patience" if r.get("stopped_early") else "finished"
            ep = r.get("epochs_run", r.get("epoch"))
            extra = (f"best val SRCC {_fmt(r.get('best_val_srcc'))}@{r.get('best_epoch', '-')}  "
                     f"test SRCC {_fmt(r.get('test_srcc'))} PLCC {_fmt(r.get('test_plcc'))}")
        else:
            how = what
            ep = r.get("epoch", 0)
            extra = f"val SRCC {_fmt(r.get('val_srcc'))}  best {_fmt(r.get('best_val_srcc'))}@{r.get('best_epoch', '-')}"
        _show(f"[{n}/{self.total}] {_trial_name(trial)}: {how} after {ep}/{self.epochs} epochs  {extra}  "
                 f"{_fmt(r.get('time_total_s'), '.0f')}s")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trials, trial, "early-stopped (ASHA)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trials, trial, "FAILED")


_JANITOR_WARNED: list[int] = []


def release_leaked_placement_groups(bundle: dict[str, float], workers: int, unused_since: dict[str, float],
                                    grace_s: float = 30.0) -> int:
    """Remove Train worker placement groups (``workers`` x ``bundle``, unnamed) that no live actor has used
    for ``grace_s`` seconds; returns how many were removed.

    Ray Train's detached ``PlacementGroupCleaner`` frees the workers' placement group of a trial that Tune
    stopped, but it finds its cluster through the state API *without an address*: with two local Ray
    instances on one machine it fails ("Found multiple active Ray instances") and the CPUs/GPUs stay
    reserved, so later trials (and the post-hoc tests) wait forever. This does the same from the driver,
    which knows its cluster.
    """
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_actors, list_placement_groups

    try:
        addr = ray.get_runtime_context().gcs_address
        job = ray.get_runtime_context().get_job_id()
        pgs = list_placement_groups(address=addr, filters=[("state", "=", "CREATED")], detail=True, limit=10000,
                                    raise_on_missing_output=False)
        # detail=True: placement_group_id is only filled in detailed rows
        actors = list_actors(address=addr, filters=[("state", "!=", "DEAD")], detail=True, limit=10000,
                             raise_on_missing_output=False)
    except Exception as e:  # noqa: BLE001 - state API unavailable: try again later
        if not _JANITOR_WARNED:
            _JANITOR_WARNED.append(1)
            log.warning(f"swiniqa: warning: cannot list placement groups ({str(e).splitlines()[0][:200]}); stopped "
                        "trials' workers may keep their CPUs/GPUs")
        return 0
    used = {a.placement_group_id for a in actors if getattr(a, "placement_group_id", None)}
    want = [{k: float(v) for k, v in bundle.items() if v}] * workers
    now = time.monotonic()
    removed = 0
    seen = set()
    for pg in pgs:
        pg_id = pg.placement_group_id
        seen.add(pg_id)
        bundles = [{k: float(v) for k, v in (b.get("unit_resources") or {}).items() if v} for b in (pg.bundles or [])]
        if pg.name or pg.is_detached or pg_id in used or bundles != want or (pg.creator_job_id or job) != job:
            unused_since.pop(pg_id, None)
            continue
        first = unused_since.setdefault(pg_id, now)
        if now - first >= grace_s:
            try:
                remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))
                removed += 1
            except Exception:  # noqa: BLE001 - already gone
                pass
            unused_since.pop(pg_id, None)
    for pg_id in list(unused_since):
        if pg_id not in seen:
            unused_since.pop(pg_id)
    return removed


class PlacementGroupJanitor(ray.tune.Callback):
    """Every ``every_s`` seconds of the sweep: :func:`release_leaked_placement_groups`."""

    def __init__(self, bundle: dict[str, float], workers: int, every_s: float = 5.0, grace_s: float = 15.0):
        self.bundle, self.workers, self.every_s, self.grace_s = dict(bundle), workers, every_s, grace_s
        self._unused: dict[str, float] = {}
        self._last = 0.0
        self.removed = 0

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.removed += release_leaked_placement_groups(self.bundle, self.workers, self._unused, self.grace_s)


def _worker_bundle(cfg: TrainConfig) -> dict[str, float]:
    from swiniqa.training.trainer import cpus_per_worker

    b = {"CPU": float(cpus_per_worker(cfg))}
    if cfg.use_gpu:
        b["GPU"] = 1.0
    return b


# ------------------------------------------------------------------------------------------ resources
def _autoscaler_gpus() -> float:
    """GPUs a launcher cluster can grow to, read from the head's ``~/ray_bootstrap_config.yaml``
    (best effort, 0 when unknown): sum over node types of max_workers x GPUs per node."""
    path = os.path.expanduser("~/ray_bootstrap_config.yaml")
    try:
        import yaml

        with open(path) as f:
            conf = yaml.safe_load(f) or {}
        total = 0.0
        for nt in (conf.get("available_node_types") or {}).values():
            total += float((nt.get("resources") or {}).get("GPU", 0)) * int(nt.get("max_workers", 0) or 0)
        return total
    except Exception:  # noqa: BLE001 - no launcher config: not an autoscaling cluster
        return 0.0


def plan_resources(cfg: TrainConfig, n_trials: int, max_concurrent: Optional[int] = None
                   ) -> tuple[dict[str, float], int, list[str]]:
    """(driver resources, trials at a time, notes) from the cluster and the per-trial scaling.

    A trial needs ``num_workers`` x (``cpus_per_worker`` CPU [+ 1 GPU]) for its Train workers (their own
    placement group, outside Tune's accounting) plus its driver: 0.01 of the ``TRAIN_DRIVER`` custom
    resource when the cluster has it (drivers on the head), else 0.01 CPU. Running more trials than
    fit would leave workers waiting forever, so concurrency = what fits.
    """
    import ray

    from swiniqa.training.trainer import cpus_per_worker

    res = ray.cluster_resources()
    notes: list[str] = []
    cpw = cpus_per_worker(cfg)
    need = {"CPU": cfg.num_workers * cpw}
    if cfg.use_gpu:
        need["GPU"] = float(cfg.num_workers)
    if res.get(DRIVER_RESOURCE, 0) > 0:
        driver = {DRIVER_RESOURCE: 0.01}
        need_driver = {DRIVER_RESOURCE: 0.01}
    else:
        driver = {"cpu": 0.01}
        need_driver = {"CPU": 0.01}
    per_trial = dict(need)
    for k, v in need_driver.items():
        per_trial[k] = per_trial.get(k, 0.0) + v
    fits = min(int(math.floor(res.get(k, 0.0) / v + 1e-9)) for k, v in per_trial.items())
    if max_concurrent:
        n = max_concurrent
        if n > fits:
            notes.append(f"--max-concurrent {n} > {fits} trial(s) the cluster fits now (autoscaling expected)")
    elif fits >= 1:
        n = fits
    else:
        have = ", ".join(f"{res.get(k, 0):g} {k}" for k in per_trial)
        want = ", ".join(f"{v:g} {k}" for k, v in per_trial.items())
        if not os.environ.get("RAY_ADDRESS"):
            raise SwiniqaError(f"one trial needs {want} but this machine has {have}; lower num_workers or "
                               "cpus_per_worker (--set cpus_per_worker=0.5), or drop --gpu")
        gpus = _autoscaler_gpus() if cfg.use_gpu else 0.0
        n = max(1, int(gpus // need["GPU"])) if gpus else 1
        notes.append(f"the cluster has {have} now (one trial needs {want}); assuming the autoscaler adds nodes: "
                     f"{n} trial(s) at a time (pass --max-concurrent N to change)")
    return driver, max(1, min(n, n_trials)), notes


# ------------------------------------------------------------------------------------------ data
def _splits_for_seeds(cfg: TrainConfig, seeds: Sequence[int], check: bool, progress: bool):
    """Validate the dataset once (decode-check), then the split of every seed."""
    from swiniqa.training.trainer import prepare_splits

    out, report = {}, {}
    skipped: set[str] = set()
    for i, seed in enumerate(seeds):
        splits, rep = prepare_splits(cfg.replace(seed=seed), check=check and i == 0, progress=progress)
        if i == 0:
            skipped = set(rep.get("skipped", []))
            report = rep
        elif skipped:
            splits = {k: [r for r in v if r.path not in skipped] for k, v in splits.items()}
        out[int(seed)] = splits
    return out, report


# ------------------------------------------------------------------------------------------ post-hoc test
def _posthoc_test(config: dict[str, Any], test_rows: list, checkpoint: str, cpus: float = 1.0) -> dict[str, Any]:
    """Test metrics of one checkpoint folder's weights (runs as a Ray task with the trial's resources)."""
    import tempfile

    import torch

    from swiniqa.data.loader import ImageCache
    from swiniqa.data.records import Record
    from swiniqa.models import build_model
    from swiniqa.training.checkpoint import read_weights
    from swiniqa.evaluation.inference import evaluate_split

    cfg = config_from_dict(config).replace(pretrained=False, pretrained_path=None)
    local = checkpoint
    if is_remote(checkpoint):
        import pyarrow.fs as pafs

        from swiniqa.storage import filesystem

        fs, path = filesystem(checkpoint)
        local = tempfile.mkdtemp(prefix="swiniqa-posthoc-")
        pafs.copy_files(path, local, source_filesystem=fs)
    torch.set_num_threads(max(1, int(cpus)))  # the task's CPUs (cpus_per_worker may be 0 = derived)
    device = torch.device("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu")
    model = build_model(cfg)
    model.load_state_dict(read_weights(local))
    model.to(device)
    records = [Record(*r) for r in test_rows]
    cache = ImageCache(cfg.resize, cfg.resize_short, cfg.patch_size)
    metrics, _ = evaluate_split(model, records, cfg, cache, device, cfg.amp and device.type == "cuda")
    return {f"test_{k}": float(v) for k, v in metrics.items()}


def run_posthoc_tests(exp_uri: str, rows: list[dict[str, Any]], splits: dict[int, dict], base: TrainConfig,
                      progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate on the test split the best-validation checkpoint of every trial that has none yet
    (ASHA-stopped trials); results are merged into ``<experiment>/posthoc_test.json``."""
    import ray

    from tune_experiments.aggregate import read_json, write_json

    done = read_json(f"{exp_uri}/{POSTHOC_FILE}") or {}
    todo = [r for r in rows if r.get("status") == "early_stopped" and r.get("checkpoint")
            and not _finite(r.get("test_srcc")) and r["run"] not in done]
    if not todo:
        return done
    from swiniqa.training.trainer import cpus_per_worker

    cpus = cpus_per_worker(base)
    task = ray.remote(_posthoc_test).options(num_cpus=cpus, num_gpus=1 if base.use_gpu else 0, max_retries=2)
    refs = {}
    for r in todo:
        test = [(x.path, x.score, x.group) for x in splits[int(r["seed"])]["test"]]
        if test:
            refs[r["run"]] = (task.remote(r["config"], test, r["checkpoint"], cpus), r["checkpoint"])
    if progress and refs:
        _show(f"testing the best checkpoint of {len(refs)} early-stopped trial(s)")
    for run, (ref, ckpt) in refs.items():
        try:
            done[run] = {**ray.get(ref), "checkpoint": ckpt}
        except Exception as e:  # noqa: BLE001 - recorded, the table shows the gap
            done[run] = {"error": str(e).strip().splitlines()[-1][:300], "checkpoint": ckpt}
    write_json(f"{exp_uri}/{POSTHOC_FILE}", done)
    return done


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------ the study
def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    base = {k: v for k, v in meta["base_config"].items() if k not in _IDENTITY_IGNORES}
    return {"study": meta["study"], "seeds": meta["seeds"], "cells": [(c["name"], c["overrides"]) for c in meta["cells"]],
            "base_config": base, "early_stopping": meta.get("early_stopping")}


def _check_same_experiment(saved: dict[str, Any], now: dict[str, Any], exp_uri: str) -> None:
    a, b = _identity(saved), _identity(now)
    if a == b:
        return
    diffs = []
    for k in ("study", "seeds", "cells", "early_stopping"):
        if a[k] != b[k]:
            diffs.append(f"{k} {a[k]!r} -> {b[k]!r}" if k != "cells" else "cells")
    for k in sorted(set(a["base_config"]) | set(b["base_config"])):
        if a["base_config"].get(k) != b["base_config"].get(k):
            diffs.append(f"{k} {a['base_config'].get(k)!r} -> {b['base_config'].get(k)!r}")
    raise SwiniqaError(f"experiment {exp_uri} was started with other settings ({'; '.join(diffs[:6])}); resume it "
                       "with the same flags, or pass --name for a new experiment")


def study_meta(study: Study, base: TrainConfig, seeds: Sequence[int], cpu_stand_ins: bool, name: str,
               notes: Sequence[str] = (), preset_tag: str = "custom",
               early_stopping: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What ``study.json`` holds: everything ``swiniqa report`` needs besides Tune's trial folders."""
    cells, _ = resolve_cells(study, base, cpu_stand_ins)
    es = {"asha": True, "grace_period": 2, "reduction_factor": 2, **(early_stopping or {})}
    es.update({"time_attr": "epoch", "metric": "val_srcc", "patience": base.patience})
    return {
        "study": study.name, "title": study.title, "preset": preset_tag, "seeds": list(seeds),
        "cpu_stand_ins": cpu_stand_ins,
        "cells": [{"name": c.name, "label": c.label, "overrides": c.overrides,
                   "reference": list(c.reference) if c.reference else None} for c in cells],
        "varied": list(study.varied), "compare": [list(p) for p in study.compare], "figure": study.figure,
        "base_config": base.to_dict(), "epochs": base.epochs, "epochs_full_grid": len(cells) * len(seeds) * base.epochs,
        "notes": list(notes), "early_stopping": es, "experiment": name,
    }


@dataclass
class _Plan:
    """A study resolved against its base config: what :func:`run_study` runs (or lists with ``dry_run``)."""

    study: Study
    base: TrainConfig
    seeds: list[int]
    name: str
    output: str
    exp_uri: str
    specs: list[dict[str, Any]]
    cells: list
    notes: list[str]
    asha_on: bool
    grace_period: int
    reduction_factor: int
    meta: dict[str, Any]


def _plan(study: Union[str, Study], base_cfg: TrainConfig, seeds: Union[int, Sequence[int]], output: Optional[str],
          name: Optional[str], preset: Optional[str], early_stopping: bool, grace_period: int,
          reduction_factor: int, cpu_stand_ins: Optional[bool]) -> _Plan:
    """Validate the arguments and build every trial's config (nothing touches storage or Ray)."""
    st = get_study(study) if isinstance(study, str) else study
    seed_list = list(range(base_cfg.seed, base_cfg.seed + int(seeds))) if isinstance(seeds, int) else \
        [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("--seeds must be >= 1")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds must be distinct, got {seed_list}")
    if grace_period < 1 or reduction_factor < 2:
        raise ConfigError("ASHA needs grace_period >= 1 and reduction_factor >= 2")
    demo = uses_cpu_stand_ins(base_cfg) if cpu_stand_ins is None else cpu_stand_ins
    preset_tag = preset or ("demo" if demo else "paper" if base_cfg.use_gpu else "custom")
    name = name or base_cfg.name or f"{st.name}-{preset_tag}"
    if "/" in name or name.startswith("."):
        raise ConfigError(f"experiment name '{name}' must be a plain folder name")
    output = output or base_cfg.output
    exp_uri = f"{output.rstrip('/')}/{name}" if is_remote(output) else os.path.join(os.path.abspath(output), name)
    base = base_cfg.replace(name=None, output=f"{exp_uri}/{TRAIN_DIR}")
    specs, notes = trial_specs(st, base, seed_list, demo)  # builds (validates) every trial's config
    cells, _ = resolve_cells(st, base, demo)
    asha_on = bool(early_stopping and base.epochs - 1 >= grace_period)
    if early_stopping and not asha_on:
        notes = notes + [f"ASHA off: {base.epochs} epoch(s) leave no rung after the {grace_period}-epoch grace period"]
    meta = study_meta(st, base, seed_list, demo, name, notes, preset_tag,
                      early_stopping={"asha": asha_on, "grace_period": grace_period,
                                      "reduction_factor": reduction_factor})
    return _Plan(st, base, seed_list, name, output, exp_uri, specs, cells, list(notes), asha_on, grace_period,
                 reduction_factor, meta)


def _preflight(plan: _Plan, resume: bool) -> Optional[dict[str, Any]]:
    """Refuse what would fail inside Tune: an unwritable output, an existing experiment without
    ``resume`` (or with other settings), ``use_gpu`` without a GPU. Returns the saved ``study.json``."""
    from tune_experiments.aggregate import read_json

    ensure_writable(plan.output)
    saved = read_json(f"{plan.exp_uri}/{STUDY_FILE}")
    if saved is not None and not resume:
        raise SwiniqaError(f"experiment {plan.exp_uri} already exists; pass --resume to continue it, "
                           "`swiniqa report` to rebuild its tables, or --name for a new experiment")
    if saved is not None:
        _check_same_experiment(saved, plan.meta, plan.exp_uri)
    if plan.base.use_gpu:
        import torch

        if not torch.cuda.is_available() and not os.environ.get("RAY_ADDRESS"):
            raise SwiniqaError("use_gpu is set (paper preset) but this machine has no CUDA GPU; use --preset demo "
                               "on CPU, or submit to a GPU cluster (RAY_ADDRESS)")
    return saved


def _announce(plan: _Plan, restoring: bool, n_conc: int) -> None:
    base = plan.base
    _show(f"tune {plan.study.name}: {'resuming' if restoring else 'starting'} {len(plan.cells)} cells x "
             f"{len(plan.seeds)} seed(s) = {len(plan.specs)} trials, {base.epochs} epochs each, {n_conc} at a time "
             f"({base.num_workers} worker(s) x {base.cpus_per_worker:g} CPU{' + 1 GPU' if base.use_gpu else ''} "
             f"per trial); early stopping: "
             f"{'ASHA on val SRCC (grace ' + str(plan.grace_period) + ' epochs) + ' if plan.asha_on else ''}"
             f"patience {base.patience}; experiment {plan.exp_uri}")
    for n in plan.notes:
        _show(f"  note: {n}")


def _new_tuner(plan: _Plan, trainable, n_conc: int, progress: bool):
    """A fresh Tuner over the (cell, seed) grid: ASHA (or FIFO), JSON/CSV loggers, the janitor."""
    from ray.tune import Tuner
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    base = plan.base
    if plan.asha_on:
        # Rungs at grace * rf^k strictly before the last epoch (ASHA puts one at max_t when max_t/grace is
        # a power of rf: a trial stopped there would lose its test evaluation for nothing).
        scheduler = ASHAScheduler(time_attr="epoch", max_t=base.epochs - 1, grace_period=plan.grace_period,
                                  reduction_factor=plan.reduction_factor, stop_last_trials=False)
    else:
        scheduler = FIFOScheduler()
    callbacks = [JsonLoggerCallback(), CSVLoggerCallback(),
                 PlacementGroupJanitor(_worker_bundle(base), base.num_workers)]
    if progress:
        callbacks.append(TrialLines(len(plan.specs), base.epochs))
    return Tuner(
        trainable,
        param_space={"cell": ray.tune.grid_search([c.name for c in plan.cells]),
                     "seed": ray.tune.grid_search(plan.seeds)},
        tune_config=ray.tune.TuneConfig(metric="val_srcc", mode="max", scheduler=scheduler,
                                        max_concurrent_trials=n_conc, trial_dirname_creator=_trial_dirname,
                                        trial_name_creator=_trial_name),
        run_config=ray.tune.RunConfig(name=plan.name, storage_path=plan.output, verbose=0, callbacks=callbacks,
                                      failure_config=ray.tune.FailureConfig(max_failures=0)),
    )


def _fit(tuner) -> None:
    """``tuner.fit()`` with Tune's auto loggers and new output engine off (restored afterwards).

    Tune's own TensorBoard logger would duplicate every curve (by training iteration) in each trial folder;
    our curves (by epoch) are under tensorboard/. The new output engine prints its experiment table to
    stdout even with verbose=0: use the old one."""
    env = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        tuner.fit()
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tuner(plan: _Plan, splits: dict, saved: Optional[dict], resume: bool, progress: bool,
           max_concurrent: Optional[int]) -> tuple[Any, bool, int]:
    """Start Ray, size the concurrency, write ``study.json`` and build (or restore) the Tuner.

    Returns ``(tuner, restoring, trials at a time)``."""
    from ray.tune import Tuner

    from swiniqa.resources import require_resources  # a cluster short of one trial's workers: say it waits
    from swiniqa.training.trainer import cpus_per_worker, ensure_ray
    from tune_experiments.aggregate import write_json

    base = plan.base
    ensure_ray()
    driver_res, n_conc, rnotes = plan_resources(base, len(plan.specs), max_concurrent)
    plan.notes += rnotes
    require_resources(base.num_workers, cpus_per_worker(base), base.use_gpu)
    configs = {c.name: c.config(base, plan.seeds[0]).to_dict() for c in plan.cells}
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(study_trial, exp_uri=plan.exp_uri, configs=configs, splits=splits), driver_res)
    restoring = bool(resume and Tuner.can_restore(plan.exp_uri))
    if progress:
        _announce(plan, restoring, n_conc)
    if saved is None:
        write_json(f"{plan.exp_uri}/{STUDY_FILE}", plan.meta)
    if restoring:
        return Tuner.restore(plan.exp_uri, trainable=trainable, resume_unfinished=True, resume_errored=True), \
            True, n_conc
    if resume and progress:
        _show("  note: nothing to resume there yet; starting the sweep")
    return _new_tuner(plan, trainable, n_conc, progress), False, n_conc


def run_study(study: Union[str, Study], base_cfg: TrainConfig, seeds: Union[int, Sequence[int]] = 1,
              output: Optional[str] = None, name: Optional[str] = None, resume: bool = False,
              dry_run: bool = False, progress: bool = True, *, preset: Optional[str] = None,
              max_concurrent: Optional[int] = None, early_stopping: bool = True, grace_period: int = 2,
              reduction_factor: int = 2, cpu_stand_ins: Optional[bool] = None, check_data: bool = True
              ) -> dict[str, Any]:
    """Run (or continue, or list) every (cell, seed) trial of ``study`` on Ray Tune; return the summary.

    Everything the user can get wrong (config, data, output) is checked before Tune starts.

    Args:
        study: a study name (:data:`tune_experiments.grids.STUDIES`) or a :class:`~tune_experiments.grids.Study`.
        base_cfg: the config every cell overrides (e.g. :func:`tune_base_config`).
        seeds: a count K (seeds ``base_cfg.seed .. +K-1``) or explicit seeds.
        output: local folder or ``s3://``/``gs://`` URI (default ``base_cfg.output``).
        name: experiment folder name (default ``<study>-<preset>``); reusing it needs ``resume``.
        resume: continue the sweep (finished trials are not rerun, interrupted ones resume their Train run
            from its latest checkpoint).
        dry_run: return ``{"trials": [config, ...], ...}`` and run nothing.
        progress: a line on stderr when the sweep starts and per finished trial.
        preset: tag recorded in ``study.json`` (default derived from the config).
        max_concurrent: trials at a time (default: what the cluster fits).
        early_stopping, grace_period, reduction_factor: ASHA on validation SRCC.
        cpu_stand_ins: map paper sizes to CPU sizes (default: when the base config is a CPU one).
        check_data: decode-check the dataset once before the sweep.

    Returns:
        The report summary of :func:`tune_experiments.aggregate.build_report` plus ``experiment``,
        ``resumed``, ``max_concurrent_trials``, ``data``, ``notes`` and ``wall_time_s``.

    Raises:
        ConfigError: bad seeds, ASHA settings or experiment name.
        SwiniqaError: the experiment exists (without ``resume``, or with other settings), no GPU for
            ``use_gpu``, or the cluster cannot fit one trial.
        DataError: the dataset cannot be read or split.
    """
    t0 = time.time()
    plan = _plan(study, base_cfg, seeds, output, name, preset, early_stopping, grace_period, reduction_factor,
                 cpu_stand_ins)
    if dry_run:
        return {"study": plan.study.name, "experiment": plan.exp_uri, "dry_run": True, "trials": plan.specs,
                "cells": len(plan.cells), "seeds": plan.seeds, "epochs_full_grid": plan.meta["epochs_full_grid"],
                "notes": plan.notes, "early_stopping": plan.meta["early_stopping"]}
    saved = _preflight(plan, resume)
    base = plan.base
    splits, data_report = _splits_for_seeds(base, plan.seeds, check=check_data, progress=progress)

    from tune_experiments.aggregate import build_report, load_experiment

    tuner, restoring, n_conc = _tuner(plan, splits, saved, resume, progress, max_concurrent)
    _fit(tuner)
    # Nothing runs now: whatever worker placement group is left is a leak (see release_leaked_placement_groups).
    release_leaked_placement_groups(_worker_bundle(base), base.num_workers, {}, grace_s=0.0)
    run_posthoc_tests(plan.exp_uri, load_experiment(plan.exp_uri).rows, splits, base, progress=progress)
    summary = build_report(plan.exp_uri, progress=progress)
    summary.update({"experiment": plan.exp_uri, "resumed": restoring, "max_concurrent_trials": n_conc,
                    "data": data_report, "notes": plan.notes, "wall_time_s": round(time.time() - t0, 1)})
    return summary


__all__ = ["run_study", "tune_base_config", "plan_resources", "study_trial", "run_posthoc_tests",
           "study_meta", "TrialLines", "PlacementGroupJanitor",
           "release_leaked_placement_groups", "DEMO_TUNE_DEFAULTS"]
