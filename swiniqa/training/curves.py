"""A run's per-epoch history as ``history.csv`` and ``curves.png`` next to its checkpoints.

TensorBoard holds the same scalars; these two files are for people who would rather open a picture
or a table than start a server, and they survive copying the run folder anywhere.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from swiniqa.layout import CURVES_FILE, HISTORY_FILE
from swiniqa.storage import write_bytes


def history_csv(history: Sequence[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))  # rows of a resumed older run may lack some
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    return buf.getvalue().encode()


def curves_png(history: Sequence[dict[str, Any]], title: str) -> bytes:
    """Validation SRCC/PLCC (left axis) and training loss (right axis) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(ep, [h["val_srcc"] for h in history], "o-", label="val SRCC")
    ax.plot(ep, [h["val_plcc"] for h in history], "s--", label="val PLCC", alpha=0.7)
    best = max(range(len(history)), key=lambda i: history[i]["val_srcc"])
    ax.annotate(f"best {history[best]['val_srcc']:.3f}", (ep[best], history[best]["val_srcc"]),
                textcoords="offset points", xytext=(0, -16), ha="center")
    ax.margins(x=0.08, y=0.12)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("correlation (validation)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(ep, [h["train_loss"] for h in history], color="tab:red", alpha=0.6, label="train loss")
    ax2.set_ylabel("train loss (L1, standardised)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_history(run_uri: str, history: Sequence[dict[str, Any]], title: str) -> list[str]:
    """Write ``history.csv`` and ``curves.png`` into ``run_uri`` (local or remote); returns their paths."""
    if not history:
        return []
    root = run_uri.rstrip("/")
    write_bytes(f"{root}/{HISTORY_FILE}", history_csv(history))
    write_bytes(f"{root}/{CURVES_FILE}", curves_png(history, title))
    return [f"{root}/{HISTORY_FILE}", f"{root}/{CURVES_FILE}"]
