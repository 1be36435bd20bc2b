"""The report's tables from an :class:`~tune_experiments.experiment.Experiment`: one row per cell (spread over
seeds), the study's comparisons, and their Markdown and LaTeX renderings."""

from __future__ import annotations

import json
import math
from typing import Any, Optional

from tune_experiments.experiment import Experiment
from tune_experiments.stats import as_float, compare, finite, mean_ci

METRICS = ("test_srcc", "test_plcc", "val_srcc", "val_plcc")
_NAMES = {"test_srcc": "test SRCC", "test_plcc": "test PLCC", "val_srcc": "val SRCC", "val_plcc": "val PLCC"}

_PARAMS_CACHE: dict[tuple, int] = {}
_ARCH_KEYS = ("backbone", "model_size", "multiscale", "attention", "lda_out", "hyper_in_channels", "target_in",
              "target_hidden", "feature_size", "patch_size")


def count_params(config: dict[str, Any]) -> Optional[int]:
    """Parameters of the architecture a config describes (built without pretrained weights), cached
    per architecture."""
    key = tuple(json.dumps(config.get(k), sort_keys=True) for k in _ARCH_KEYS)
    if key not in _PARAMS_CACHE:
        try:
            from swiniqa.config import config_from_dict
            from swiniqa.models import build_model, count_parameters

            cfg = config_from_dict({k: v for k, v in config.items()}).replace(pretrained=False, pretrained_path=None)
            _PARAMS_CACHE[key] = count_parameters(build_model(cfg))
        except Exception:  # noqa: BLE001 - a config from another version: leave the column empty
            return None
    return _PARAMS_CACHE[key]


def cell_table(exp: Experiment, with_params: bool = True) -> "pd.DataFrame":  # noqa: F821
    """One row per cell (study order): spread over seeds of test and val metrics, epochs, time, params."""
    import pandas as pd

    meta = exp.meta
    varied = [k for k in meta.get("varied", []) if k != "seed"]
    recs = []
    for c in meta.get("cells", []):
        rows = [r for r in exp.rows if r["cell"] == c["name"]]
        ran = [r for r in rows if r["status"] != "pending"]
        cfg = rows[0]["config"] if rows else dict(meta.get("base_config", {}), **c["overrides"])
        rec: dict[str, Any] = {"cell": c["name"], "label": c["label"]}
        for k in varied:
            rec[k] = cfg.get(k)
        rec["trials"] = len(ran)
        rec["seeds_tested"] = int(sum(1 for r in rows if len(finite([r.get("test_srcc")]))))
        for m in METRICS:
            ci = mean_ci(r.get(m) for r in rows)
            rec.update({f"{m}_mean": ci["mean"], f"{m}_std": ci["std"], f"{m}_ci95_lo": ci["lo"],
                        f"{m}_ci95_hi": ci["hi"], f"{m}_ci95_half": ci["half"]})
        rec["best_epoch_mean"] = mean_ci(r.get("best_epoch") for r in ran)["mean"]
        rec["epochs_run_mean"] = mean_ci(r.get("epochs_run") for r in ran)["mean"]
        rec["epochs_run_total"] = int(sum(int(r.get("epochs_run") or 0) for r in rows))
        rec["early_stopped"] = int(sum(1 for r in rows if r.get("stopped_early")))
        rec["wall_time_s_mean"] = mean_ci(r.get("wall_time_s") for r in ran)["mean"]
        rec["params"] = count_params(cfg) if with_params else None
        ref = c.get("reference") or [None, None]
        rec["paper_srcc"], rec["paper_plcc"] = (ref + [None, None])[:2]
        recs.append(rec)
    return pd.DataFrame.from_records(recs)


def comparison_table(exp: Experiment) -> "pd.DataFrame":  # noqa: F821
    """Differences (to - from) of test and val SRCC/PLCC for the study's compared cells."""
    import pandas as pd

    recs = []
    for a, b in exp.meta.get("compare", []):
        for m in METRICS:
            va = {r["seed"]: r.get(m) for r in exp.rows if r["cell"] == a}
            vb = {r["seed"]: r.get(m) for r in exp.rows if r["cell"] == b}
            c = compare(va, vb)
            recs.append({"from": a, "to": b, "metric": m, "diff": c["diff"], "ci95_lo": c["lo"], "ci95_hi": c["hi"],
                         "method": c["method"], "verdict": c["verdict"], "n_from": c["n_a"], "n_to": c["n_b"]})
    return pd.DataFrame.from_records(recs, columns=["from", "to", "metric", "diff", "ci95_lo", "ci95_hi", "method",
                                                    "verdict", "n_from", "n_to"])


def _num(v: Any, spec: str = ".4f") -> str:
    f = as_float(v)
    return format(f, spec) if math.isfinite(f) else "–"


def _spread(rec: dict[str, Any], m: str) -> str:
    mean, std, lo, hi = (rec.get(f"{m}_{s}") for s in ("mean", "std", "ci95_lo", "ci95_hi"))
    if not math.isfinite(as_float(mean)):
        return "–"
    if not math.isfinite(as_float(std)):
        return f"{_num(mean)} (1 seed)"
    return f"{_num(mean)} ± {_num(std)} [{_num(lo)}, {_num(hi)}]"


def _params_text(p: Any) -> str:
    f = as_float(p)
    return f"{f / 1e6:.2f} M" if math.isfinite(f) else "–"


def provenance_line(p: dict[str, Any]) -> str:
    """One line for people: 'one environment and one dataset' or which trials differ, in what."""
    if p.get("one_environment") and p.get("one_dataset"):
        return f"provenance: every trial ran on one environment ({next(iter(p['environments']), '?')}) and one " \
               f"dataset ({next(iter(p['datasets']), '?')})"
    parts = []
    for d in p.get("differ", []):
        what = ([f"environment ({', '.join(d['environment_fields'])})"] if d["environment_fields"] else []) + \
               ([f"dataset {d['dataset']}"] if d.get("dataset") else [])
        parts.append(f"{d['run']}: {' and '.join(what)}")
    if p.get("missing"):
        parts.append(f"no provenance recorded: {', '.join(p['missing'])}")
    return (f"provenance: {len(p.get('environments', {}))} environment(s), {len(p.get('datasets', {}))} dataset(s); "
            + "; ".join(parts))


def markdown_report(exp: Experiment, table, diffs, summary: dict[str, Any]) -> str:
    meta = exp.meta
    varied = [k for k in meta.get("varied", []) if k != "seed"]
    paper = any(r is not None and not (isinstance(r, float) and math.isnan(r)) for r in table.get("paper_srcc", []))
    head = ["cell", *varied, "n", "test SRCC", "test PLCC", "val SRCC", "val PLCC", "best epoch", "epochs run",
            "wall s", "params"] + (["paper SRCC / PLCC"] if paper else [])
    lines = [f"# {meta.get('title', meta['study'])} — `{meta.get('experiment', '')}`", "",
             f"Test metrics of each trial's best-validation checkpoint; mean ± std [95 % t-CI] over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in table.to_dict("records"):
        cells = [f"{rec['label']}", *[str(rec.get(k)) for k in varied], f"{rec['seeds_tested']}/{rec['trials']}",
                 _spread(rec, "test_srcc"), _spread(rec, "test_plcc"), _spread(rec, "val_srcc"),
                 _spread(rec, "val_plcc"), _num(rec["best_epoch_mean"], ".1f"), _num(rec["epochs_run_mean"], ".1f"),
                 _num(rec["wall_time_s_mean"], ".0f"), _params_text(rec.get("params"))]
        if paper:
            cells.append(f"{_num(rec.get('paper_srcc'))} / {_num(rec.get('paper_plcc'))}")
        lines.append("| " + " | ".join(cells) + " |")
    if len(diffs):
        lines += ["", "## Differences (to − from)", "", "| from → to | metric | Δ mean | 95 % CI | method | verdict |",
                  "|---|---|---|---|---|---|"]
        for d in diffs.to_dict("records"):
            lines.append(f"| {d['from']} → {d['to']} | {_NAMES[d['metric']]} | {_num(d['diff'], '+.4f')} | "
                         f"[{_num(d['ci95_lo'], '+.4f')}, {_num(d['ci95_hi'], '+.4f')}] | {d['method']} | "
                         f"{d['verdict']} |")
    lines += ["", "## Notes", ""]
    lines.append(f"* trials: {summary['trials']} of {summary['trials_planned']} planned "
                 f"({', '.join(f'{v} {k}' for k, v in summary['status'].items())}); epochs run "
                 f"{summary['epochs_run']} of {summary['epochs_full_grid']} in the full grid.")
    es = meta.get("early_stopping") or {}
    if es:
        text = f"* early stopping: patience {es.get('patience')} epochs per trial"
        if es.get("asha"):
            text += (f"; ASHA on val SRCC by epoch (grace {es.get('grace_period')}, reduction factor "
                     f"{es.get('reduction_factor')}). Trials stopped by ASHA were tested after the sweep with their "
                     "best-validation checkpoint (`posthoc` in each trial's `train/<run>/trial.json`); they trained for fewer epochs, which "
                     "biases comparisons against them (rerun with --no-early-stop for a clean comparison)")
        lines.append(text + ".")
    if summary.get("provenance"):
        lines.append(f"* {provenance_line(summary['provenance'])}.")
    for n in meta.get("notes", []):
        lines.append(f"* {n}")
    if meta.get("cpu_stand_ins"):
        lines.append("* CPU stand-ins: numbers are not comparable with the paper's.")
    return "\n".join(lines) + "\n"


def latex_table(exp: Experiment, table) -> str:
    meta = exp.meta

    def esc(s: Any) -> str:
        return str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

    def pm(rec, m):
        mean, half = as_float(rec.get(f"{m}_mean")), as_float(rec.get(f"{m}_ci95_half"))
        if not math.isfinite(mean):
            return "--"
        return f"{mean:.4f}" + (f" $\\pm$ {half:.4f}" if math.isfinite(half) else "")

    out = [r"\begin{tabular}{lrrrrr}", r"\toprule",
           r"Cell & $n$ & Test SRCC & Test PLCC & Val SRCC & Params \\", r"\midrule"]
    for rec in table.to_dict("records"):
        out.append(f"{esc(rec['label'])} & {rec['seeds_tested']} & {pm(rec, 'test_srcc')} & {pm(rec, 'test_plcc')} & "
                   f"{pm(rec, 'val_srcc')} & {esc(_params_text(rec.get('params')))} \\\\")
    out += [r"\bottomrule", r"\end{tabular}",
            f"% {esc(meta.get('title', meta['study']))}: mean $\\pm$ 95\\% t-CI half-width over seeds"]
    return "\n".join(out) + "\n"


__all__ = ["cell_table", "comparison_table", "markdown_report", "latex_table", "count_params", "METRICS", "provenance_line"]
