"""``swiniqa report``: ``results.json``, the tables and the figures of an experiment folder alone (finished or
partial, local or ``s3://``/``gs://``).

Reading the folder is :mod:`tune_experiments.experiment` (one record per trial), the statistics
:mod:`tune_experiments.stats`, the tables :mod:`tune_experiments.tables`, the figures
:mod:`tune_experiments.plots`; this module puts them together and writes them back.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from typing import Any, Optional

from swiniqa.layout import REPORT_DIR, RESULTS_FILE, TENSORBOARD_DIR
from swiniqa.storage import copy_dir, is_remote, join, json_safe, write_json
from tune_experiments.experiment import UNFINISHED, Experiment, load_experiment
from tune_experiments.stats import as_float
from tune_experiments.tables import cell_table, comparison_table, latex_table, markdown_report


def results_rows(exp: Experiment) -> list[dict[str, Any]]:
    """The ``results.json`` rows (trials that have not started are left out)."""
    return [r for r in exp.rows if r["status"] != "pending"]


def best_trial(exp: Experiment) -> Optional[dict[str, Any]]:
    """The trial with the highest best-validation SRCC (selection never looks at test)."""
    cands = [r for r in exp.rows if math.isfinite(as_float(r.get("val_srcc")))]
    if not cands:
        return None
    r = max(cands, key=lambda r: as_float(r["val_srcc"]))
    return {"trial_id": r["trial_id"], "run": r["run"], "cell": r["cell"], "seed": r["seed"], "status": r["status"],
            "config": r["config"], "checkpoint": r["checkpoint"],
            "metrics": {k: r.get(k) for k in ("val_srcc", "val_plcc", "test_srcc", "test_plcc", "test_krcc",
                                              "best_epoch", "epochs_run")}}


def _summary(exp: Experiment) -> dict[str, Any]:
    meta = exp.meta
    status: dict[str, int] = {}
    for r in exp.rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    return {
        "study": meta["study"], "experiment": exp.uri, "trials": len(results_rows(exp)),
        "trials_planned": len(exp.rows), "status": status,
        "epochs_run": int(sum(int(r.get("epochs_run") or 0) for r in exp.rows)),
        "epochs_full_grid": int(meta.get("epochs_full_grid") or len(exp.rows) * int(meta.get("epochs", 0))),
        "partial": any(r["status"] in UNFINISHED for r in exp.rows),
        "cpu_stand_ins": bool(meta.get("cpu_stand_ins")),
        "provenance": provenance_summary(exp),
    }


def provenance_summary(exp: Experiment) -> dict[str, Any]:
    """Whether every trial that ran shares one environment and one dataset (:func:`swiniqa.provenance.compare`),
    naming those that do not and the fields that differ; trials that wrote no provenance are ``missing``."""
    from swiniqa.provenance import compare

    return compare(exp.provenance)


def _write_tables(exp: Experiment, table, diffs, summary: dict[str, Any], out_dir: str) -> dict[str, str]:
    """The table files into the local ``out_dir``; {kind: file name}."""
    study = exp.meta["study"]
    files = {"csv": f"table_{study}.csv", "md": f"table_{study}.md", "tex": f"table_{study}.tex",
             "diffs": f"differences_{study}.csv"}
    table.to_csv(os.path.join(out_dir, files["csv"]), index=False, float_format="%.6g")
    diffs.to_csv(os.path.join(out_dir, files["diffs"]), index=False, float_format="%.6g")
    with open(os.path.join(out_dir, files["md"]), "w") as f:
        f.write(markdown_report(exp, table, diffs, summary))
    with open(os.path.join(out_dir, files["tex"]), "w") as f:
        f.write(latex_table(exp, table))
    return files


def build_report(uri: str, progress: bool = False, plots: bool = True) -> dict[str, Any]:
    """(Re)build ``results.json``, the tables and the figures of an experiment folder (finished or partial).

    Args:
        uri: the experiment folder (local or ``s3://``/``gs://``), as :func:`~tune_experiments.driver.run_study`
            wrote it.
        progress: print the Markdown table's path on stderr.
        plots: also draw the PNG figures.

    Returns:
        The summary: trial counts and status, ``partial`` (a planned trial is pending, incomplete or missing),
        per-cell means with 95 % CIs (``cells``), ``comparisons``, ``best`` trial, and where the tables, plots
        and ``results.json`` were written.

    Raises:
        SwiniqaError: the folder holds no ``study.json`` (not an experiment) or cannot be read or written.
    """
    exp = load_experiment(uri)
    uri = exp.uri
    table, diffs = cell_table(exp), comparison_table(exp)
    summary = _summary(exp)
    remote = is_remote(uri)
    out_dir = tempfile.mkdtemp(prefix="swiniqa-report-") if remote else os.path.join(uri, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    files = _write_tables(exp, table, diffs, summary, out_dir)
    pngs: list[str] = []
    if plots:
        from tune_experiments.plots import make_figures

        pngs = make_figures(exp, table, out_dir)
    target = join(uri, REPORT_DIR)
    if remote:
        copy_dir(out_dir, target)
    results_uri = join(uri, RESULTS_FILE)
    write_json(results_uri, results_rows(exp))
    summary.update({
        "table": join(target, files["csv"]),
        "tables": {k: join(target, v) for k, v in files.items()},
        "plots": [join(target, os.path.basename(p)) for p in pngs],
        "results": results_uri,
        "best": best_trial(exp),
        "comparisons": [{k: d[k] for k in ("from", "to", "metric", "diff", "ci95_lo", "ci95_hi", "method", "verdict")}
                        for d in diffs.to_dict("records")],
        "tensorboard": f"tensorboard --logdir {join(uri, TENSORBOARD_DIR)}",
        "cells": table[["cell", "trials", "seeds_tested", "test_srcc_mean", "test_srcc_std", "test_srcc_ci95_lo",
                        "test_srcc_ci95_hi", "val_srcc_mean", "epochs_run_total"]].to_dict("records"),
    })
    if progress:
        print(f"report: {summary['tables']['md']}", file=sys.stderr, flush=True)  # progress line
    return json_safe(summary)


__all__ = ["build_report", "best_trial", "results_rows", "provenance_summary"]
