"""Run a study grid on Ray Tune: one Tune trial = one Ray Train run (so every trial can be multi-GPU).

    from tune_experiments.driver import run_study, tune_base_config
    from tune_experiments.planning import StudyOptions
    summary = run_study("lr", tune_base_config("demo"), StudyOptions(seeds=2, output="runs"))

Layout of ``<output>/<name>/`` (the experiment folder; ``name`` defaults to ``<study>-<preset>``)::

    study.json                 what was asked: study, seeds, cells (overrides), base config, notes
    <cell>-seed<k>/            Tune's own trial folder (params.json, result.json, progress.csv, error.txt)
    train/<cell>-seed<k>/      the trial's Ray Train run: checkpoint_epochNNNN/ folders, history.csv, curves.png,
                               and trial.json, the trial's record (status, epochs, final and post-hoc metrics)
    tensorboard/<cell>-seed<k>/  per-epoch curves (``tensorboard --logdir <experiment>``)
    results.json               one row per trial (also what ``swiniqa pull`` reads)
    report/                    tables (CSV, Markdown, LaTeX) and figures (PNG)

Early stopping is twofold: Tune's ASHA scheduler stops trials whose validation SRCC is in the bottom
part of a rung (time = epoch, grace period 2 epochs, max = epochs, finishers are never stopped), and
each trial stops itself after ``patience`` epochs without improvement. A trial ASHA stops never reaches
its own test evaluation, so after the sweep its best-validation checkpoint is evaluated on its test
split once (:mod:`tune_experiments.posthoc`, same code as the worker's).

Where the parts live: the trial and the callbacks watching trials in :mod:`tune_experiments.trial`,
planning (options, trials, resources) in :mod:`tune_experiments.planning`, the placement-group janitor in
:mod:`tune_experiments.placement`, the post-hoc test in :mod:`tune_experiments.posthoc`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional, Sequence, Union

import ray.tune

from swiniqa.config import DEMO_TUNE_OVERRIDES, TrainConfig, apply_overrides, load_file
from swiniqa.config import preset as load_preset
from swiniqa.errors import SwiniqaError
from swiniqa.layout import STUDY_FILE
from swiniqa.storage import ensure_writable, read_json, write_json
from tune_experiments.grids import Study
from tune_experiments.placement import (PlacementGroupJanitor, release_leaked_placement_groups, worker_bundle,
                                         worker_counts)
from tune_experiments.planning import StudyOptions, StudyPlan, check_same_experiment, make_plan, plan_resources
from tune_experiments.trial import TrialLines, TrialRecorder, study_trial, trial_name

def _show(line: str) -> None:
    """A progress line on stderr (only called when the caller asked for ``progress``); problems go to
    the ``swiniqa.tune`` logger instead, so they reach whatever handler the application configured."""
    print(line, file=sys.stderr, flush=True)


def tune_base_config(preset_name: Optional[str] = "demo", config_file: Optional[str] = None,
                     overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """The base config of a study: preset, then :data:`swiniqa.config.DEMO_TUNE_OVERRIDES` (demo only: cheaper
    trials), then the file, then overrides (later wins)."""
    cfg = load_preset(preset_name) if preset_name else TrainConfig()
    if preset_name == "demo":
        cfg = apply_overrides(cfg, DEMO_TUNE_OVERRIDES)
    if config_file:
        cfg = apply_overrides(cfg, load_file(config_file))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


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


def _preflight(plan: StudyPlan, resume: bool) -> Optional[dict[str, Any]]:
    """Refuse what would fail inside Tune: an unwritable output, an existing experiment without
    ``resume`` (or with other settings), ``use_gpu`` without a GPU. Returns the saved ``study.json``."""
    ensure_writable(plan.output)
    saved = read_json(f"{plan.exp_uri}/{STUDY_FILE}")
    if saved is not None and not resume:
        raise SwiniqaError(f"experiment {plan.exp_uri} already exists; pass --resume to continue it, "
                           "`swiniqa report` to rebuild its tables, or --name for a new experiment")
    if saved is not None:
        check_same_experiment(saved, plan.meta, plan.exp_uri)
    if plan.base.use_gpu:
        import torch

        if not torch.cuda.is_available() and not os.environ.get("RAY_ADDRESS"):
            raise SwiniqaError("use_gpu is set (paper preset) but this machine has no CUDA GPU; use --preset demo "
                               "on CPU, or submit to a GPU cluster (RAY_ADDRESS)")
    return saved


def _announce(plan: StudyPlan, restoring: bool, n_conc: int) -> None:
    base = plan.base
    _show(f"tune {plan.study.name}: {'resuming' if restoring else 'starting'} {len(plan.cells)} cells x "
             f"{len(plan.seeds)} seed(s) = {len(plan.specs)} trials, {base.epochs} epochs each, {n_conc} at a time "
             f"({base.num_workers} worker(s) x {base.cpus_per_worker:g} CPU{' + 1 GPU' if base.use_gpu else ''} "
             f"per trial); early stopping: "
             f"{'ASHA on val SRCC (grace ' + str(plan.grace_period) + ' epochs) + ' if plan.asha_on else ''}"
             f"patience {base.patience}; experiment {plan.exp_uri}")
    for n in plan.notes:
        _show(f"  note: {n}")


def _new_tuner(plan: StudyPlan, trainable, n_conc: int, progress: bool):
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
                 PlacementGroupJanitor(worker_bundle(base), worker_counts(base)),
                 TrialRecorder(plan.exp_uri)]
    if progress:
        callbacks.append(TrialLines(len(plan.specs), base.epochs))
    return Tuner(
        trainable,
        param_space={"cell": ray.tune.grid_search([c.name for c in plan.cells]),
                     "seed": ray.tune.grid_search(plan.seeds)},
        tune_config=ray.tune.TuneConfig(metric="val_srcc", mode="max", scheduler=scheduler,
                                        max_concurrent_trials=n_conc, trial_dirname_creator=trial_name,
                                        trial_name_creator=trial_name),
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


def _tuner(plan: StudyPlan, splits: dict, saved: Optional[dict], resume: bool, progress: bool,
           max_concurrent: Optional[int], dataset: Optional[dict] = None) -> tuple[Any, bool, int]:
    """Start Ray, size the concurrency, write ``study.json`` and build (or restore) the Tuner.

    Returns ``(tuner, restoring, trials at a time)``."""
    from ray.tune import Tuner

    from swiniqa.resources import require_resources  # a cluster short of one trial's workers: say it waits
    from swiniqa.ray_runtime import ensure_ray
    from swiniqa.training.trainer import cpus_per_worker

    base = plan.base
    ensure_ray()
    driver_res, n_conc, rnotes = plan_resources(base, len(plan.specs), max_concurrent)
    plan.notes += rnotes
    require_resources(base.min_workers or base.num_workers, cpus_per_worker(base), base.use_gpu)
    configs = {c.name: c.config(base, plan.seeds[0]).to_dict() for c in plan.cells}
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(study_trial, exp_uri=plan.exp_uri, configs=configs, splits=splits,
                                 dataset=dataset), driver_res)
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


def run_study(study: Union[str, Study], base_cfg: TrainConfig, options: Optional[StudyOptions] = None
              ) -> dict[str, Any]:
    """Run (or continue, or list) every (cell, seed) trial of ``study`` on Ray Tune; return the summary.

    Everything the user can get wrong (config, data, output) is checked before Tune starts.

    Args:
        study: a study name (:data:`tune_experiments.grids.STUDIES`) or a :class:`~tune_experiments.grids.Study`.
        base_cfg: the config every cell overrides (e.g. :func:`tune_base_config`).
        options: seeds, output, name, resume, dry run, early stopping, ... (:class:`StudyOptions`; its defaults
            are the CLI's).

    Returns:
        The report summary of :func:`tune_experiments.aggregate.build_report` plus ``experiment``,
        ``resumed``, ``max_concurrent_trials``, ``data``, ``notes`` and ``wall_time_s``; with ``dry_run``
        ``{"trials": [config, ...], ...}``.

    Raises:
        ConfigError: bad seeds, ASHA settings or experiment name.
        SwiniqaError: the experiment exists (without ``resume``, or with other settings), no GPU for
            ``use_gpu``, or the cluster cannot fit one trial.
        DataError: the dataset cannot be read or split.
    """
    t0 = time.time()
    opts = options or StudyOptions()
    plan = make_plan(study, base_cfg, opts)
    if opts.dry_run:
        return {"study": plan.study.name, "experiment": plan.exp_uri, "dry_run": True, "trials": plan.specs,
                "cells": len(plan.cells), "seeds": plan.seeds, "epochs_full_grid": plan.meta["epochs_full_grid"],
                "notes": plan.notes, "early_stopping": plan.meta["early_stopping"]}
    saved = _preflight(plan, opts.resume)
    base = plan.base
    splits, data_report = _splits_for_seeds(base, plan.seeds, check=opts.check_data, progress=opts.progress)

    from tune_experiments.aggregate import build_report
    from tune_experiments.experiment import load_experiment
    from tune_experiments.posthoc import run_posthoc_tests

    tuner, restoring, n_conc = _tuner(plan, splits, saved, opts.resume, opts.progress, opts.max_concurrent,
                                      dataset=data_report.get("fingerprint"))
    _fit(tuner)
    # Nothing runs now: whatever worker placement group is left is a leak (see release_leaked_placement_groups).
    release_leaked_placement_groups(worker_bundle(base), worker_counts(base), {}, grace_s=0.0)
    run_posthoc_tests(plan.exp_uri, load_experiment(plan.exp_uri).rows, splits, base, progress=opts.progress)
    summary = build_report(plan.exp_uri, progress=opts.progress)
    summary.update({"experiment": plan.exp_uri, "resumed": restoring, "max_concurrent_trials": n_conc,
                    "data": data_report, "notes": plan.notes, "wall_time_s": round(time.time() - t0, 1)})
    return summary


__all__ = ["run_study", "tune_base_config", "StudyOptions"]
