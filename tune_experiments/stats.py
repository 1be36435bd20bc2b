"""Statistics over seeds: means with t-intervals and differences between cells.

Per cell: mean, sample std (ddof 1) and a 95 % t-interval of the mean (``mean +- t(0.975, n-1) * std / sqrt(n)``).
Differences between compared cells use a paired t-interval when both cells have results for the same seeds
(seed fixes the split, so pairing removes split noise), else Welch's interval; a difference whose interval
contains 0 is reported as "within noise".
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from swiniqa.parsing import finite_float


def finite(values: Iterable[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (None, NaN, inf and non-numbers dropped)."""
    return np.asarray([f for f in map(finite_float, values) if f is not None], dtype=np.float64)


def as_float(v: Any) -> float:
    """``float(v)``, NaN when it is no number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def t_quantile(df: float, level: float = 0.95) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_ci(values: Iterable[Any], level: float = 0.95) -> dict[str, float]:
    """n, mean, sample std (ddof 1) and the t-interval of the mean over the finite values."""
    x = finite(values)
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


def _welch(fa: dict[int, float], fb: dict[int, float], level: float) -> dict[str, Any]:
    xa, xb = np.array(list(fa.values())), np.array(list(fb.values()))
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = math.sqrt(va + vb)
    if se > 0:
        df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
    else:
        df = len(xa) + len(xb) - 2
    diff = float(xb.mean() - xa.mean())
    h = t_quantile(df, level) * se
    return {"diff": diff, "lo": diff - h, "hi": diff + h, "method": f"Welch t, {len(xa)}+{len(xb)} seeds",
            "df": float(df)}


def compare(a: dict[int, Any], b: dict[int, Any], level: float = 0.95) -> dict[str, Any]:
    """Difference b - a of per-seed values with its interval: paired by seed when both have the same
    seeds (n >= 2), else Welch (n >= 2 each); ``verdict`` says "within noise" when the interval holds 0."""
    fa = {s: float(v) for s, v in a.items() if len(finite([v]))}
    fb = {s: float(v) for s, v in b.items() if len(finite([v]))}
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
        out.update(_welch(fa, fb, level))
    else:
        out.update(diff=float(np.mean(list(fb.values())) - np.mean(list(fa.values()))),
                   method="single seed", verdict="no interval (needs >= 2 seeds per cell)")
        return out
    if out["lo"] <= 0 <= out["hi"]:
        out["verdict"] = "within noise"
    else:
        out["verdict"] = "higher" if out["lo"] > 0 else "lower"
    return out


__all__ = ["mean_ci", "compare", "t_quantile", "finite", "as_float"]
