"""An experiment folder read into one row per trial (finished or partial; local folder or ``s3://``/``gs://``).

What is read, all inside ``<experiment>/``:

* ``study.json``: study, cells (with their config overrides), seeds, base config (written by the driver);
* ``train/<cell>-seed<k>/trial.json``: **the** record of one trial, the only per-trial source. The sweep's
  driver writes it, and only the driver (:class:`tune_experiments.trial.TrialRecorder`, as Tune hands it each
  result): ``status`` (``running``, ``completed``, ``early_stopped`` when ASHA stopped it, ``error``),
  ``epochs`` (one entry per epoch, merged by epoch number, so a resumed or restarted trial never counts an
  epoch twice), ``final`` (the worker's final summary: best validation metrics, test metrics of the selected
  weights, epochs run, patience stop; its per-epoch history replaces the epoch entries), ``error`` and
  ``posthoc`` (the test of an ASHA-stopped trial's best checkpoint, run after the sweep).

:func:`read_trial` is the single place where a trial's files are read; :func:`trial_row` turns one record
into a ``results.json`` row. A planned trial without a record is ``pending``; one whose record holds no
epoch (its data never reached storage) is ``missing``; either makes the experiment partial.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from swiniqa.errors import SwiniqaError
from swiniqa.layout import DATASET_FINGERPRINT, ENVIRONMENT, STUDY_FILE, TRAIN_DIR, TRIAL_FILE, checkpoint_dir_name
from swiniqa.storage import is_remote, join, list_dirs, read_json
from tune_experiments.stats import as_float

#: Statuses of a trial that make the experiment partial (not all planned trials have ended with data).
UNFINISHED = ("pending", "incomplete", "missing")
#: What the record keeps of each per-epoch result.
EPOCH_KEYS = ("epoch", "train_loss", "val_srcc", "val_plcc", "best_val_srcc", "best_epoch", "time_total_s")
_TEST_KEYS = ("test_srcc", "test_plcc", "test_krcc")


@dataclass
class Experiment:
    uri: str
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    #: run name -> per-epoch dicts (epoch, train_loss, val_srcc, val_plcc), sorted by epoch.
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: run name -> (``environment.json``, ``dataset.json``) of every trial that started (None: not written).
    provenance: dict[str, tuple[Optional[dict], Optional[dict]]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ the record
def trial_record_uri(exp_uri: str, run: str) -> str:
    return join(exp_uri, TRAIN_DIR, run, TRIAL_FILE)


def new_record(run: str, cell: str, seed: int) -> dict[str, Any]:
    return {"run": run, "cell": cell, "seed": int(seed), "trial_id": None, "status": "running", "epochs": [],
            "final": None}


def merge_result(record: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Add one Tune result of the trial to its record: an epoch's metrics (replacing an earlier report of the
    same epoch) or the final report (whose ``history`` then fills every epoch's entry)."""
    by_epoch = {int(e["epoch"]): e for e in record.get("epochs", [])}
    if result.get("final_report"):
        final = {k: v for k, v in result.items() if k not in ("history", "final_report", "config")}
        record["final"] = final
        for h in result.get("history") or []:
            by_epoch.setdefault(int(h["epoch"]), {}).update({k: h[k] for k in EPOCH_KEYS if k in h},
                                                            epoch=int(h["epoch"]))
    elif result.get("epoch") is not None and "train_loss" in result:
        by_epoch[int(result["epoch"])] = {k: result.get(k) for k in EPOCH_KEYS}
    if result.get("time_total_s") is not None:
        record["wall_time_s"] = result["time_total_s"]
    record["epochs"] = [by_epoch[e] for e in sorted(by_epoch)]
    return record


def read_trial(exp_uri: str, run: str) -> Optional[dict[str, Any]]:
    """The record of trial ``run`` (``train/<run>/trial.json``), or None when the trial never started.

    This is the one function that reads a trial's files: whatever else a trial row needs from its folder
    is read here."""
    rec = read_json(trial_record_uri(exp_uri, run))
    return rec if isinstance(rec, dict) and "cell" in rec and "seed" in rec else None


# ------------------------------------------------------------------------------------------ rows
def read_provenance(exp_uri: str, run: str) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]]]:
    """A trial's ``environment.json`` and ``dataset.json`` (rank 0 of its Train run writes them), or Nones."""
    env = read_json(join(exp_uri, TRAIN_DIR, run, ENVIRONMENT))
    ds = read_json(join(exp_uri, TRAIN_DIR, run, DATASET_FINGERPRINT))
    return (env if isinstance(env, dict) else None), (ds if isinstance(ds, dict) else None)


def _status(record: Optional[dict[str, Any]], epochs: dict[int, dict[str, Any]]) -> str:
    if record is None:
        return "pending"
    if record.get("final"):
        return "completed"
    if record.get("status") == "error":
        return "error"
    if not epochs:
        return "missing"  # started, but no epoch reached storage
    return "early_stopped" if record.get("status") == "early_stopped" else "incomplete"


def _checkpoint(exp_uri: str, run: str, best_epoch: Optional[int]) -> Optional[str]:
    if not best_epoch:
        return None
    path = join(exp_uri, TRAIN_DIR, run, checkpoint_dir_name(best_epoch))
    return path if is_remote(exp_uri) or os.path.isdir(path) else None


def _test_metrics(final: Optional[dict[str, Any]], posthoc: Optional[dict[str, Any]]) -> tuple[dict, Optional[str]]:
    test = {k: as_float((final or {}).get(k)) for k in _TEST_KEYS}
    if final is not None and test["test_srcc"] == test["test_srcc"]:
        return test, "worker"
    if posthoc and "test_srcc" in posthoc:
        return {k: as_float(posthoc.get(k)) for k in _TEST_KEYS}, "posthoc"
    return test, None


def trial_config(meta: dict[str, Any], cell: str, seed: int) -> dict[str, Any]:
    """The config a trial ran with: the base config, the cell's overrides, the seed."""
    cfg = dict(meta.get("base_config", {}))
    cfg.update({c["name"]: c for c in meta.get("cells", [])}.get(cell, {}).get("overrides", {}))
    cfg["seed"] = seed
    return cfg


def trial_row(exp_uri: str, meta: dict[str, Any], cell: str, seed: int, record: Optional[dict[str, Any]]
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``results.json`` row and the per-epoch curve of a trial from its record (None: never started)."""
    from tune_experiments.grids import run_name

    run = run_name(cell, seed)
    rec = record or {}
    epochs = {int(e["epoch"]): e for e in rec.get("epochs", [])}
    final = rec.get("final") or None
    status = _status(record, epochs)
    src = final or (epochs[max(epochs)] if epochs else {})
    best_epoch = int(src["best_epoch"]) if src.get("best_epoch") not in (None, 0) else None
    if final is not None:
        val_plcc = as_float(final.get("best_val_plcc"))
    else:
        val_plcc = as_float(epochs.get(best_epoch, {}).get("val_plcc")) if best_epoch else float("nan")
    test, test_source = _test_metrics(final, rec.get("posthoc"))
    patience = bool(final and final.get("stopped_early"))
    row = {
        "trial_id": rec.get("trial_id"), "run": run, "cell": cell, "seed": seed,
        "label": {c["name"]: c for c in meta.get("cells", [])}.get(cell, {}).get("label", cell), "status": status,
        "val_srcc": as_float(src.get("best_val_srcc")), "val_plcc": val_plcc, **test, "test_source": test_source,
        "best_epoch": best_epoch,
        "epochs_run": int(final.get("epochs_run") or 0) if final else (max(epochs) if epochs else 0),
        "stopped_early": patience or status == "early_stopped",
        "stopped_by": "patience" if patience else "asha" if status == "early_stopped" else None,
        "wall_time_s": as_float(rec.get("wall_time_s")),
        "checkpoint": _checkpoint(exp_uri, run, best_epoch), "config": trial_config(meta, cell, seed),
    }
    if rec.get("error"):
        row["error"] = rec["error"]
    if (rec.get("posthoc") or {}).get("error") and test_source is None:
        row["test_error"] = rec["posthoc"]["error"]
    curve = [{"epoch": e, "train_loss": as_float(p.get("train_loss")), "val_srcc": as_float(p.get("val_srcc")),
              "val_plcc": as_float(p.get("val_plcc"))} for e, p in sorted(epochs.items())]
    return row, curve


def load_experiment(uri: str) -> Experiment:
    """Every planned trial of an experiment folder (any state), plus any other recorded one, as rows + curves."""
    uri = uri.rstrip("/") if is_remote(uri) else os.path.abspath(uri)
    meta = read_json(join(uri, STUDY_FILE))
    if not isinstance(meta, dict):
        raise SwiniqaError(f"{uri} is not a swiniqa tune experiment (no {STUDY_FILE}); give the folder "
                           "`swiniqa tune` printed (<output>/<study>-<preset>)")
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for run in list_dirs(join(uri, TRAIN_DIR)):
        rec = read_trial(uri, run)
        if rec is not None:
            records[(rec["cell"], int(rec["seed"]))] = rec
    planned = [(c["name"], int(s)) for s in meta.get("seeds", []) for c in meta.get("cells", [])]
    rows, curves, provenance = [], {}, {}
    for cell, seed in planned + sorted(k for k in records if k not in planned):
        row, curve = trial_row(uri, meta, cell, seed, records.get((cell, seed)))
        if row["status"] != "pending":
            env, ds = provenance[row["run"]] = read_provenance(uri, row["run"])
            row["environment_id"] = (env or {}).get("environment_id")
            row["dataset_fingerprint"] = (ds or {}).get("fingerprint")
        rows.append(row)
        if curve:
            curves[row["run"]] = curve
    return Experiment(uri, meta, rows, curves, provenance)


__all__ = ["Experiment", "load_experiment", "read_trial", "read_provenance", "trial_row", "merge_result", "new_record",
           "trial_record_uri", "trial_config", "UNFINISHED", "EPOCH_KEYS"]
