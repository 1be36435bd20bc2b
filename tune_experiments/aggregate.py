"""Tables, comparisons and ``results.json`` from an experiment folder alone (finished or partial).

Sources, all inside ``<experiment>/`` (local folder or ``s3://``/``gs://`` URI):

* ``study.json``: study, cells (with their config overrides), seeds, base config (written by the driver);
* each Tune trial folder ``<cell>-seed<k>/``: ``params.json`` and ``result.json`` (one JSON line per
  epoch, forwarded from the Train run, plus a final line with the worker's test metrics);
* ``experiment_state-*.json`` (Tune): which trials ASHA stopped, which failed or were interrupted;
* ``posthoc_test.json``: test metrics of the best checkpoint of trials that ASHA stopped.

Statistics are over seeds, per cell: mean, sample std (ddof 1) and a 95 % t-interval of the mean
(``mean +- t(0.975, n-1) * std / sqrt(n)``). Differences between compared cells use a paired t-interval
when both cells have results for the same seeds (seed fixes the split, so pairing removes split noise),
else Welch's interval; a difference whose interval contains 0 is reported as "within noise".
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np

from swiniqa.errors import SwiniqaError
from swiniqa.layout import (FINAL_FILE, POSTHOC_FILE, REPORT_DIR, RESULTS_FILE, STUDY_FILE,  # noqa: F401 (re-exported)
                            TRAIN_DIR, checkpoint_dir_name)
from swiniqa.storage import is_remote

METRICS = ("test_srcc", "test_plcc", "val_srcc", "val_plcc")
_NAMES = {"test_srcc": "test SRCC", "test_plcc": "test PLCC", "val_srcc": "val SRCC", "val_plcc": "val PLCC"}


# ------------------------------------------------------------------------------------------ storage
def _join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def _fs(uri: str):
    from swiniqa.storage import filesystem

    return filesystem(uri)


def read_text(uri: str) -> Optional[str]:
    """A file's text, or None when it does not exist."""
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, OSError):
        return None


def read_json(uri: str) -> Any:
    text = read_text(uri)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def write_text(uri: str, text: str) -> None:
    fs, path = _fs(uri)
    try:
        fs.create_dir(os.path.dirname(path) if not is_remote(uri) else path.rsplit("/", 1)[0], recursive=True)
        if not is_remote(uri):
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
            return
        with fs.open_output_stream(path) as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise SwiniqaError(f"cannot write {uri}: {str(e).splitlines()[0]}") from None


def write_json(uri: str, obj: Any) -> None:
    write_text(uri, json.dumps(_clean(obj), indent=2, default=str) + "\n")


def _clean(o: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def _list(uri: str, want: str) -> list[str]:
    """Names of the entries of one folder of type ``want`` ("Directory" or "File"); [] if missing."""
    import pyarrow.fs as pafs

    fs, path = _fs(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    except OSError:
        return []
    return sorted(i.base_name for i in infos if i.type == getattr(pafs.FileType, want))


def list_dirs(uri: str) -> list[str]:
    return _list(uri, "Directory")


def list_files(uri: str) -> list[str]:
    return _list(uri, "File")


# ------------------------------------------------------------------------------------------ statistics
def _finite(values: Iterable[Any]) -> np.ndarray:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=np.float64)


def t_quantile(df: float, level: float = 0.95) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_ci(values: Iterable[Any], level: float = 0.95) -> dict[str, float]:
    """n, mean, sample std (ddof 1) and the t-interval of the mean over the finite values."""
    x = _finite(values)
    n = len(x)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "lo": nan, "hi": nan, "half": nan}
    m = float(x.mean())
    if n < 2:
        return {"n": 1, "mean": m, "std": nan, "lo": nan, "hi": nan, "half": nan}
    s = float(x.std(ddof=1))
    h = t_quantile(n - 1, level) * s / math.sqrt(n)
    return {"n": n, "mean": m, "std": s, "lo": m - h, "hi": m + h, "half": h}


def compare(a: dict[int, Any], b: dict[int, Any], level: float = 0.95) -> dict[str, Any]:
    """Difference b - a of per-seed values with its interval: paired by seed when both have the same
    seeds (n >= 2), else Welch (n >= 2 each); ``verdict`` says "within noise" when the interval holds 0."""
    fa = {s: float(v) for s, v in a.items() if len(_finite([v]))}
    fb = {s: float(v) for s, v in b.items() if len(_finite([v]))}
    nan = float("nan")
    out: dict[str, Any] = {"diff": nan, "lo": nan, "hi": nan, "method": "", "n_a": len(fa), "n_b": len(fb),
                           "df": nan}
    if not fa or not fb:
        out.update(method="missing", verdict="no results")
        return out
    if set(fa) == set(fb) and len(fa) >= 2:
        d = [fb[s] - fa[s] for s in sorted(fa)]
        ci = mean_ci(d, level)
        out.update(diff=ci["mean"], lo=ci["lo"], hi=ci["hi"], method=f"paired t, {len(d)} seeds", df=len(d) - 1)
    elif len(fa) >= 2 and len(fb) >= 2:
        xa, xb = np.array(list(fa.values())), np.array(list(fb.values()))
        va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
        se = math.sqrt(va + vb)
        if se > 0:
            df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
        else:
            df = len(xa) + len(xb) - 2
        diff = float(xb.mean() - xa.mean())
        h = t_quantile(df, level) * se
        out.update(diff=diff, lo=diff - h, hi=diff + h, method=f"Welch t, {len(xa)}+{len(xb)} seeds", df=float(df))
    else:
        out.update(diff=float(np.mean(list(fb.values())) - np.mean(list(fa.values()))),
                   method="single seed", verdict="no interval (needs >= 2 seeds per cell)")
        return out
    if out["lo"] <= 0 <= out["hi"]:
        out["verdict"] = "within noise"
    else:
        out["verdict"] = "higher" if out["lo"] > 0 else "lower"
    return out


# ------------------------------------------------------------------------------------------ reading
@dataclass
class Experiment:
    uri: str
    meta: dict[str, Any]
    rows: list[dict[str, Any]]
    #: run name -> per-epoch dicts (epoch, train_loss, val_srcc, val_plcc), sorted by epoch.
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _trial_states(uri: str) -> dict[str, str]:
    """Tune's view of every trial (``<cell>-seed<k>`` -> status) from the newest experiment state."""
    names = [f for f in list_files(uri) if f.startswith("experiment_state") and f.endswith(".json")]
    out: dict[str, str] = {}
    for fname in sorted(names)[-1:]:
        data = read_json(_join(uri, fname)) or {}
        for item in data.get("trial_data", []):
            try:
                st = item[0] if isinstance(item, (list, tuple)) else item
                st = json.loads(st) if isinstance(st, str) else st
                cfg = st.get("config") or {}
                if isinstance(cfg, str):
                    cfg = json.loads(cfg)
                status = st.get("status")
                key = st.get("relative_logdir") or (f"{cfg.get('cell')}-seed{cfg.get('seed')}" if cfg else None)
                if key and status:
                    out[str(key)] = str(status)
            except Exception:  # noqa: BLE001 - another Ray version's format: statuses unknown
                continue
    return out


def _read_results(uri: str) -> list[dict[str, Any]]:
    text = read_text(_join(uri, "result.json")) or ""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    return rows


def _f(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def tensorboard_curve(exp_uri: str, run: str) -> list[dict[str, Any]]:
    """Per-epoch train loss / val SRCC / val PLCC from the trial's TensorBoard events (local folders only):
    complete even after a resume, when Tune's result.json restarts."""
    d = os.path.join(exp_uri, "tensorboard", run)
    if is_remote(exp_uri) or not os.path.isdir(d):
        return []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(d, size_guidance={"scalars": 0})
        acc.Reload()
        tags = set(acc.Tags().get("scalars", []))
        by: dict[int, dict[str, Any]] = {}
        for tag, key in (("train/loss", "train_loss"), ("val/srcc", "val_srcc"), ("val/plcc", "val_plcc")):
            if tag in tags:
                for ev in acc.Scalars(tag):
                    by.setdefault(int(ev.step), {"epoch": int(ev.step), "train_loss": float("nan"),
                                                 "val_srcc": float("nan"), "val_plcc": float("nan")})[key] = ev.value
        return [by[e] for e in sorted(by)]
    except Exception:  # noqa: BLE001 - unreadable events: the curve stays as Tune has it
        return []


def trial_row(exp_uri: str, meta: dict[str, Any], cell: str, seed: int, results: list[dict[str, Any]],
              state: Optional[str], has_error: bool, posthoc: Optional[dict[str, Any]],
              error: Optional[str] = None, final_file: Optional[dict[str, Any]] = None
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``results.json`` row and the per-epoch curve of a trial from its Tune result lines
    (``final_file``: the trial's ``final.json``, used when Tune's copy lost the final line)."""
    from tune_experiments.grids import run_name

    run = run_name(cell, seed)
    by_epoch: dict[int, dict[str, Any]] = {}
    final: Optional[dict[str, Any]] = None
    for r in results:
        if r.get("final_report"):
            final = r
        elif r.get("epoch") is not None and "train_loss" in r:
            by_epoch[int(r["epoch"])] = r
    if final is None and final_file:
        final = {**final_file, "final_report": True}
    curve = [{"epoch": e, "train_loss": _f(r.get("train_loss")), "val_srcc": _f(r.get("val_srcc")),
              "val_plcc": _f(r.get("val_plcc"))} for e, r in sorted(by_epoch.items())]
    n_epochs = int(final.get("epochs_run") or 0) if final else (max(by_epoch) if by_epoch else 0)
    if len(curve) < n_epochs:
        tb = {p["epoch"]: p for p in tensorboard_curve(exp_uri, run)}
        tb.update({p["epoch"]: p for p in curve})
        curve = [tb[e] for e in sorted(tb)]
    last = by_epoch[max(by_epoch)] if by_epoch else {}
    src = final or last
    best_epoch = int(src["best_epoch"]) if src.get("best_epoch") not in (None, 0) else None
    val_srcc = _f(src.get("best_val_srcc"))
    if final is not None:
        val_plcc = _f(final.get("best_val_plcc"))
    else:
        val_plcc = _f(by_epoch.get(best_epoch, {}).get("val_plcc")) if best_epoch else float("nan")
    epochs_run = int(final.get("epochs_run") or 0) if final else (max(by_epoch) if by_epoch else 0)
    if final is not None:
        status = "completed"
    elif has_error or state == "ERROR":
        status = "error"
    elif not results:  # nothing recorded: never started, or its data never reached storage
        status = "missing" if state else "pending"
    elif state == "TERMINATED":
        status = "early_stopped"
    else:
        status = "incomplete"
    checkpoint = None
    if best_epoch:
        checkpoint = _join(exp_uri, TRAIN_DIR, run, checkpoint_dir_name(best_epoch))
        if not is_remote(exp_uri) and not os.path.isdir(checkpoint):
            checkpoint = None
    test = {k: _f((final or {}).get(k)) for k in ("test_srcc", "test_plcc", "test_krcc")}
    test_source = "worker" if final is not None and math.isfinite(test["test_srcc"]) else None
    if test_source is None and posthoc and "test_srcc" in posthoc:
        test = {k: _f(posthoc.get(k)) for k in test}
        test_source = "posthoc"
    cfg = dict(meta.get("base_config", {}))
    cells = {c["name"]: c for c in meta.get("cells", [])}
    cfg.update(cells.get(cell, {}).get("overrides", {}))
    cfg["seed"] = seed
    row = {
        "trial_id": (final or last or {}).get("trial_id"), "run": run, "cell": cell, "seed": seed,
        "label": cells.get(cell, {}).get("label", cell), "status": status,
        "val_srcc": val_srcc, "val_plcc": val_plcc, **test, "test_source": test_source,
        "best_epoch": best_epoch, "epochs_run": epochs_run,
        "stopped_early": bool(final.get("stopped_early")) if final else status == "early_stopped",
        "stopped_by": ("patience" if final and final.get("stopped_early") else
                       "asha" if status == "early_stopped" else None),
        "wall_time_s": _f((results[-1] if results else {}).get("time_total_s")),
        "checkpoint": checkpoint, "config": cfg,
    }
    if error:
        row["error"] = error
    if posthoc and "error" in posthoc and test_source is None:
        row["test_error"] = posthoc["error"]
    return row, curve


def load_experiment(uri: str) -> Experiment:
    """Read every trial of an experiment folder (any state) into rows + curves."""
    uri = uri.rstrip("/") if is_remote(uri) else os.path.abspath(uri)
    meta = read_json(_join(uri, STUDY_FILE))
    if meta is None:
        raise SwiniqaError(f"{uri} is not a swiniqa tune experiment (no {STUDY_FILE}); give the folder "
                           "`swiniqa tune` printed (<output>/<study>-<preset>)")
    states = _trial_states(uri)
    posthoc = read_json(_join(uri, POSTHOC_FILE)) or {}
    from tune_experiments.grids import run_name

    planned = [(c["name"], int(s)) for s in meta.get("seeds", []) for c in meta.get("cells", [])]
    found: dict[tuple[str, int], tuple[list, bool, Optional[str]]] = {}
    skip = {TRAIN_DIR, "tensorboard", REPORT_DIR}
    for d in list_dirs(uri):
        if d in skip or d.startswith("."):
            continue
        params = read_json(_join(uri, d, "params.json"))
        if not isinstance(params, dict) or "cell" not in params:
            continue
        err_text = read_text(_join(uri, d, "error.txt"))
        err = None
        if err_text:
            lines = [ln for ln in err_text.splitlines() if ln.strip()]
            err = lines[-1][:300] if lines else "failed"
        found[(params["cell"], int(params["seed"]))] = (_read_results(_join(uri, d)), err_text is not None, err)
    rows, curves = [], {}
    for key in planned + sorted(k for k in found if k not in planned):
        cell, seed = key
        results, has_err, err = found.get(key, ([], False, None))
        run = run_name(cell, seed)
        final_file = None
        if not any(r.get("final_report") for r in results):
            final_file = read_json(_join(uri, TRAIN_DIR, run, FINAL_FILE))
        row, curve = trial_row(uri, meta, cell, seed, results, states.get(run), has_err, posthoc.get(run), err,
                               final_file if isinstance(final_file, dict) else None)
        rows.append(row)
        if curve:
            curves[run] = curve
    return Experiment(uri, meta, rows, curves)


# ------------------------------------------------------------------------------------------ tables
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
        rec["seeds_tested"] = int(sum(1 for r in rows if len(_finite([r.get("test_srcc")]))))
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
    f = _f(v)
    return format(f, spec) if math.isfinite(f) else "–"


def _spread(rec: dict[str, Any], m: str) -> str:
    mean, std, lo, hi = (rec.get(f"{m}_{s}") for s in ("mean", "std", "ci95_lo", "ci95_hi"))
    if not math.isfinite(_f(mean)):
        return "–"
    if not math.isfinite(_f(std)):
        return f"{_num(mean)} (1 seed)"
    return f"{_num(mean)} ± {_num(std)} [{_num(lo)}, {_num(hi)}]"


def _params_text(p: Any) -> str:
    f = _f(p)
    return f"{f / 1e6:.2f} M" if math.isfinite(f) else "–"


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
                     "best-validation checkpoint (`posthoc_test.json`); they trained for fewer epochs, which "
                     "biases comparisons against them (rerun with --no-early-stop for a clean comparison)")
        lines.append(text + ".")
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
        mean, half = _f(rec.get(f"{m}_mean")), _f(rec.get(f"{m}_ci95_half"))
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


def results_rows(exp: Experiment) -> list[dict[str, Any]]:
    """The ``results.json`` rows (trials that have not started are left out)."""
    return [r for r in exp.rows if r["status"] != "pending"]


def best_trial(exp: Experiment) -> Optional[dict[str, Any]]:
    """The trial with the highest best-validation SRCC (selection never looks at test)."""
    cands = [r for r in exp.rows if math.isfinite(_f(r.get("val_srcc")))]
    if not cands:
        return None
    r = max(cands, key=lambda r: _f(r["val_srcc"]))
    return {"trial_id": r["trial_id"], "run": r["run"], "cell": r["cell"], "seed": r["seed"], "status": r["status"],
            "config": r["config"], "checkpoint": r["checkpoint"],
            "metrics": {k: r.get(k) for k in ("val_srcc", "val_plcc", "test_srcc", "test_plcc", "test_krcc",
                                              "best_epoch", "epochs_run")}}


def build_report(uri: str, progress: bool = False, plots: bool = True) -> dict[str, Any]:
    """(Re)build ``results.json``, the tables and the figures of an experiment folder (finished or partial).

    Args:
        uri: the experiment folder (local or ``s3://``/``gs://``), as :func:`~tune_experiments.driver.run_study`
            wrote it.
        progress: print the Markdown table's path on stderr.
        plots: also draw the PNG figures.

    Returns:
        The summary: trial counts and status, per-cell means with 95 % CIs (``cells``), ``comparisons``,
        ``best`` trial, and where the tables, plots and ``results.json`` were written.

    Raises:
        SwiniqaError: the folder holds no ``study.json`` (not an experiment) or cannot be read or written.
    """
    exp = load_experiment(uri)
    uri = exp.uri
    meta = exp.meta
    table = cell_table(exp)
    diffs = comparison_table(exp)
    status: dict[str, int] = {}
    for r in exp.rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    ran = results_rows(exp)
    summary: dict[str, Any] = {
        "study": meta["study"], "experiment": uri, "trials": len(ran), "trials_planned": len(exp.rows),
        "status": status, "epochs_run": int(sum(int(r.get("epochs_run") or 0) for r in exp.rows)),
        "epochs_full_grid": int(meta.get("epochs_full_grid") or len(exp.rows) * int(meta.get("epochs", 0))),
        "partial": any(r["status"] in ("pending", "incomplete", "missing") for r in exp.rows),
        "cpu_stand_ins": bool(meta.get("cpu_stand_ins")),
    }
    study = meta["study"]
    remote = is_remote(uri)
    out_dir = tempfile.mkdtemp(prefix="swiniqa-report-") if remote else os.path.join(uri, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    files = {"csv": f"table_{study}.csv", "md": f"table_{study}.md", "tex": f"table_{study}.tex",
             "diffs": f"differences_{study}.csv"}
    table.to_csv(os.path.join(out_dir, files["csv"]), index=False, float_format="%.6g")
    diffs.to_csv(os.path.join(out_dir, files["diffs"]), index=False, float_format="%.6g")
    with open(os.path.join(out_dir, files["md"]), "w") as f:
        f.write(markdown_report(exp, table, diffs, summary))
    with open(os.path.join(out_dir, files["tex"]), "w") as f:
        f.write(latex_table(exp, table))
    pngs: list[str] = []
    if plots:
        from tune_experiments.plots import make_figures

        pngs = make_figures(exp, table, out_dir)
    target = _join(uri, REPORT_DIR)
    if remote:
        from swiniqa.storage import copy_dir

        copy_dir(out_dir, target)
    results_uri = _join(uri, RESULTS_FILE)
    write_json(results_uri, results_rows(exp))
    summary.update({
        "table": _join(target, files["csv"]),
        "tables": {k: _join(target, v) for k, v in files.items()},
        "plots": [_join(target, os.path.basename(p)) for p in pngs],
        "results": results_uri,
        "best": best_trial(exp),
        "comparisons": [{k: d[k] for k in ("from", "to", "metric", "diff", "ci95_lo", "ci95_hi", "method", "verdict")}
                        for d in diffs.to_dict("records")],
        "tensorboard": f"tensorboard --logdir {_join(uri, 'tensorboard')}",
        "cells": _clean(table[["cell", "trials", "seeds_tested", "test_srcc_mean", "test_srcc_std", "test_srcc_ci95_lo",
                               "test_srcc_ci95_hi", "val_srcc_mean", "epochs_run_total"]].to_dict("records")),
    })
    if progress:
        print(f"report: {summary['tables']['md']}", file=sys.stderr, flush=True)  # progress line
    return _clean(summary)


__all__ = ["mean_ci", "compare", "t_quantile", "load_experiment", "Experiment", "trial_row", "cell_table",
           "comparison_table", "markdown_report", "latex_table", "build_report", "best_trial", "count_params",
           "read_json", "write_json", "read_text", "write_text", "tensorboard_curve", "STUDY_FILE", "RESULTS_FILE",
           "POSTHOC_FILE", "FINAL_FILE"]
