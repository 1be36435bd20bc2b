"""IQA agreement metrics: SRCC, PLCC (raw and after the 4-parameter logistic fit), KRCC, RMSE."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats


def _clean(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64).ravel()
    m = np.asarray(mos, dtype=np.float64).ravel()
    if p.shape != m.shape:
        raise ValueError(f"pred and mos differ in length: {p.shape} vs {m.shape}")
    return p, m


def _safe(fn, p, m) -> float:
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(m) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(p, m)[0])


def srcc(pred, mos) -> float:
    return _safe(stats.spearmanr, *_clean(pred, mos))


def plcc(pred, mos) -> float:
    return _safe(stats.pearsonr, *_clean(pred, mos))


def krcc(pred, mos) -> float:
    return _safe(stats.kendalltau, *_clean(pred, mos))


def logistic4(x, b1, b2, b3, b4):
    """VQEG 4-parameter logistic: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    with np.errstate(over="ignore"):
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / (np.abs(b4) + 1e-12))) + b2


def fit_logistic(pred, mos) -> np.ndarray:
    """Map predictions onto the MOS scale with the 4-parameter logistic (falls back to linear)."""
    p, m = _clean(pred, mos)
    p0 = [m.max(), m.min(), float(np.mean(p)), float(np.std(p)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(logistic4, p, m, p0=p0, maxfev=20000)
        return logistic4(p, *params)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        a, b = np.polyfit(p, m, 1)
        return a * p + b


def all_metrics(pred, mos) -> dict[str, float]:
    """Every metric the reports use; ``plcc_fit``/``rmse_fit`` are after the logistic mapping."""
    p, m = _clean(pred, mos)
    out = {"srcc": srcc(p, m), "plcc": plcc(p, m), "krcc": krcc(p, m),
           "rmse": float(np.sqrt(np.mean((p - m) ** 2))) if len(p) else float("nan"), "n_images": int(len(p))}
    if len(p) >= 5 and np.ptp(p) > 0:
        f = fit_logistic(p, m)
        out["plcc_fit"] = plcc(f, m)
        out["rmse_fit"] = float(np.sqrt(np.mean((f - m) ** 2)))
    else:
        out["plcc_fit"] = out["plcc"]
        out["rmse_fit"] = out["rmse"]
    return out
