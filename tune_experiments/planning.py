"""What a sweep will run, before anything runs: the options of :func:`~tune_experiments.driver.run_study`
(:class:`StudyOptions`), the study resolved into trials (:func:`make_plan`, :class:`StudyPlan`), what
``study.json`` records (:func:`study_meta`) and how many trials the cluster holds at a time
(:func:`plan_resources`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from swiniqa.config import TrainConfig
from swiniqa.errors import ConfigError, SwiniqaError
from swiniqa.layout import TRAIN_DIR
from swiniqa.storage import is_remote
from tune_experiments.grids import Study, get_study, resolve_cells, trial_specs, uses_cpu_stand_ins

#: Keys whose difference makes an experiment folder a different experiment (checked on --resume).
_IDENTITY_IGNORES = ("output", "name")
DRIVER_RESOURCE = "TRAIN_DRIVER"


@dataclass
class StudyOptions:
    """How to run a study (every field has the CLI's default).

    Attributes:
        seeds: a count K (seeds ``base_cfg.seed .. +K-1``) or explicit seeds.
        output: local folder or ``s3://``/``gs://`` URI (default ``base_cfg.output``).
        name: experiment folder name (default ``<study>-<preset>``); reusing it needs ``resume``.
        resume: continue the sweep (finished trials are not rerun, interrupted ones resume their Train run
            from its latest checkpoint).
        dry_run: list the trials, run nothing.
        progress: a line on stderr when the sweep starts and per finished trial.
        preset: tag recorded in ``study.json`` (default derived from the config).
        max_concurrent: trials at a time (default: what the cluster fits).
        early_stopping, grace_period, reduction_factor: ASHA on validation SRCC.
        cpu_stand_ins: map paper sizes to CPU sizes (default: when the base config is a CPU one).
        check_data: decode-check the dataset once before the sweep.
    """

    seeds: Union[int, Sequence[int]] = 1
    output: Optional[str] = None
    name: Optional[str] = None
    resume: bool = False
    dry_run: bool = False
    progress: bool = True
    preset: Optional[str] = None
    max_concurrent: Optional[int] = None
    early_stopping: bool = True
    grace_period: int = 2
    reduction_factor: int = 2
    cpu_stand_ins: Optional[bool] = None
    check_data: bool = True


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


# ------------------------------------------------------------------------------------------ the study
def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    base = {k: v for k, v in meta["base_config"].items() if k not in _IDENTITY_IGNORES}
    return {"study": meta["study"], "seeds": meta["seeds"], "cells": [(c["name"], c["overrides"]) for c in meta["cells"]],
            "base_config": base, "early_stopping": meta.get("early_stopping")}


def check_same_experiment(saved: dict[str, Any], now: dict[str, Any], exp_uri: str) -> None:
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
class StudyPlan:
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


def make_plan(study: Union[str, Study], base_cfg: TrainConfig, opts: StudyOptions) -> StudyPlan:
    """Validate the arguments and build every trial's config (nothing touches storage or Ray)."""
    st = get_study(study) if isinstance(study, str) else study
    seeds = opts.seeds
    seed_list = list(range(base_cfg.seed, base_cfg.seed + int(seeds))) if isinstance(seeds, int) else \
        [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("--seeds must be >= 1")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds must be distinct, got {seed_list}")
    if opts.grace_period < 1 or opts.reduction_factor < 2:
        raise ConfigError("ASHA needs grace_period >= 1 and reduction_factor >= 2")
    demo = uses_cpu_stand_ins(base_cfg) if opts.cpu_stand_ins is None else opts.cpu_stand_ins
    preset_tag = opts.preset or ("demo" if demo else "paper" if base_cfg.use_gpu else "custom")
    name = opts.name or base_cfg.name or f"{st.name}-{preset_tag}"
    if "/" in name or name.startswith("."):
        raise ConfigError(f"experiment name '{name}' must be a plain folder name")
    output = opts.output or base_cfg.output
    exp_uri = f"{output.rstrip('/')}/{name}" if is_remote(output) else os.path.join(os.path.abspath(output), name)
    base = base_cfg.replace(name=None, output=f"{exp_uri}/{TRAIN_DIR}")
    specs, notes = trial_specs(st, base, seed_list, demo)  # builds (validates) every trial's config
    cells, _ = resolve_cells(st, base, demo)
    asha_on = bool(opts.early_stopping and base.epochs - 1 >= opts.grace_period)
    if opts.early_stopping and not asha_on:
        notes = notes + [f"ASHA off: {base.epochs} epoch(s) leave no rung after the {opts.grace_period}-epoch grace period"]
    meta = study_meta(st, base, seed_list, demo, name, notes, preset_tag,
                      early_stopping={"asha": asha_on, "grace_period": opts.grace_period,
                                      "reduction_factor": opts.reduction_factor})
    return StudyPlan(st, base, seed_list, name, output, exp_uri, specs, cells, list(notes), asha_on, opts.grace_period,
                     opts.reduction_factor, meta)


__all__ = ["StudyOptions", "StudyPlan", "make_plan", "plan_resources", "study_meta", "check_same_experiment",
           "DRIVER_RESOURCE"]
