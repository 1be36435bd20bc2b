"""Figures of a study (matplotlib, Agg backend, PNG). Error bars are 95 % t-intervals over seeds
(none when a cell has a single seed).

* ``lr_sensitivity.png``: test (and val) SRCC vs learning rate, log x;
* ``bars_<study>.png``: test SRCC and PLCC per cell (ablation, augment, size);
* ``size_scatter.png``: parameters vs test SRCC;
* ``training_curves.png``: val SRCC and train loss per epoch of the best trial (by val SRCC) of each cell.
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from swiniqa.parsing import finite_float  # noqa: E402


def _err(table, m: str) -> list[float]:
    return [h if isinstance(h, (int, float)) and math.isfinite(h) else 0.0 for h in table[f"{m}_ci95_half"]]


def _ok(v: Any) -> bool:
    return finite_float(v) is not None


def _clamp_correlation_axis(ax) -> None:
    """Correlations live in [-1, 1]: wide intervals (2 seeds: t = 12.7) must not stretch the axis beyond."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, -1.02), min(hi, 1.02))


def lr_sensitivity(table, path: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    t = table[[_ok(v) for v in table["test_srcc_mean"]]].sort_values("lr") if len(table) else table
    v = table[[_ok(x) for x in table["val_srcc_mean"]]].sort_values("lr") if len(table) else table
    if len(t):
        ax.errorbar(t["lr"], t["test_srcc_mean"], yerr=_err(t, "test_srcc"), marker="o", capsize=4, label="test SRCC")
    if len(v):
        ax.errorbar(v["lr"], v["val_srcc_mean"], yerr=_err(v, "val_srcc"), marker="s", capsize=4, linestyle="--",
                    alpha=0.7, label="val SRCC (best epoch)")
    _clamp_correlation_axis(ax)
    ax.set_xscale("log")
    ax.set_xlabel("backbone learning rate (head: x lr_ratio)")
    ax.set_ylabel("SRCC")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="mean, 95% CI over seeds", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cell_bars(table, path: str, title: str) -> str:
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(table) + 2), 4))
    x = np.arange(len(table))
    w = 0.38
    vals = []
    for i, (m, name) in enumerate((("test_srcc", "test SRCC"), ("test_plcc", "test PLCC"))):
        y = [float(v) if _ok(v) else float("nan") for v in table[f"{m}_mean"]]
        vals += [v + d for v, h in zip(y, _err(table, m)) for d in (-h, h) if math.isfinite(v)]
        ax.bar(x + (i - 0.5) * w, [v if math.isfinite(v) else 0 for v in y], w, yerr=_err(table, m), capsize=4,
               label=name)
        for xi, v in zip(x + (i - 0.5) * w, y):
            if math.isfinite(v):
                ax.annotate(f"{v:.3f}", (xi, v), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    if vals:  # zoom on means +- CI, within [-1, 1]; from 0 unless everything is high
        lo, hi = min(vals), max(vals)
        pad = max(0.01, (hi - lo) * 0.15)
        ax.set_ylim(max(-1.02, lo - pad if lo > 0.3 else min(0.0, lo - pad)), min(1.02, hi + pad))
    ax.set_xticks(x)
    ax.set_xticklabels(list(table["label"]), rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("correlation (axis does not start at 0)" if vals and min(vals) > 0.3 else "correlation")
    ax.set_title(title, fontsize=10)
    ax.legend(title="mean, 95% CI over seeds", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def size_scatter(table, path: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    t = table[[_ok(p) and _ok(s) for p, s in zip(table["params"], table["test_srcc_mean"])]]
    if len(t):
        xs = [float(p) / 1e6 for p in t["params"]]
        ax.errorbar(xs, t["test_srcc_mean"], yerr=_err(t, "test_srcc"), fmt="o", capsize=4)
        for x, y, lab in zip(xs, t["test_srcc_mean"], t["label"]):
            ax.annotate(str(lab), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    _clamp_correlation_axis(ax)
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("test SRCC (mean, 95% CI over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def training_curves(exp, path: str, title: str) -> str:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for c in exp.meta.get("cells", []):
        rows = [r for r in exp.rows if r["cell"] == c["name"] and r["run"] in exp.curves and _ok(r.get("val_srcc"))]
        if not rows:
            continue
        best = max(rows, key=lambda r: float(r["val_srcc"]))
        curve = exp.curves[best["run"]]
        ep = [p["epoch"] for p in curve]
        a1.plot(ep, [p["val_srcc"] for p in curve], marker="o", ms=3, label=f"{c['label']} (seed {best['seed']})")
        a2.plot(ep, [p["train_loss"] for p in curve], marker="o", ms=3, label=f"{c['label']} (seed {best['seed']})")
    a1.set_xlabel("epoch")
    a1.set_ylabel("val SRCC")
    a2.set_xlabel("epoch")
    a2.set_ylabel("train loss (L1, standardised scores)")
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
    if a1.get_legend_handles_labels()[0]:
        a1.legend(fontsize=7)
    fig.suptitle(f"{title}: best trial (by val SRCC) of each cell")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_figures(exp, table, out_dir: str) -> list[str]:
    """Every figure of the study into ``out_dir``; returns the PNG paths."""
    meta = exp.meta
    study, title = meta["study"], meta.get("title", meta["study"])
    if meta.get("cpu_stand_ins"):
        title += " [CPU stand-ins]"
    out = []
    kind = meta.get("figure", "bars")
    if kind == "lr" and "lr" in table:
        out.append(lr_sensitivity(table, os.path.join(out_dir, "lr_sensitivity.png"), title))
    else:
        out.append(cell_bars(table, os.path.join(out_dir, f"bars_{study}.png"), title))
    if kind == "size":
        out.append(size_scatter(table, os.path.join(out_dir, "size_scatter.png"), title))
    out.append(training_curves(exp, os.path.join(out_dir, "training_curves.png"), title))
    return out


__all__ = ["lr_sensitivity", "cell_bars", "size_scatter", "training_curves", "make_figures"]
