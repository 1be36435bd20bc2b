"""Cross-dataset suite: one checkpoint, every image of SPAQ, KADID-10K, AGIQA-3K (and LIVE-C), one table.

    from swiniqa.evaluation.suite import evaluate_suite, write_suite_report
    res = evaluate_suite("runs/e6", "datasets.yaml")           # or {"spaq": "/data/SPAQ", ...}
    print(res["markdown"]); res["rows"]; res["mean_srcc"]
    write_suite_report(res, "runs/e6/report")                  # cross_dataset.md + cross_dataset.csv

The roots file is YAML, one dataset per line::

    spaq: /data/SPAQ
    kadid10k: /data/kadid10k
    agiqa3k: {root: /data/AGIQA-3K, image_dir: images}      # a mapping passes reader options too
    livec: /data/ChallengeDB_release                        # optional: added to the table when present

Keys are the reader names (``spaq kadid10k agiqa3k livec``; spellings like ``KADID-10K``, ``kadid``,
``agiqa-3k``, ``live-c`` are accepted). Relative paths are relative to the roots file. A mapping may also
set ``resize``, ``resize_short`` and ``patches`` for that dataset. Every dataset's labels are read and
every image is checked to exist before the first one is evaluated, so a wrong root fails in seconds.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from swiniqa.config import TrainConfig
from swiniqa.data.records import canonical_name, display_table
from swiniqa.errors import DataError, did_you_mean
from swiniqa.evaluation.evaluate import EVAL_PREPROCESSING, _precheck_files, evaluate_dataset, write_predictions
from swiniqa.parsing import finite_float

#: Suites: datasets that must have a root, and datasets evaluated when the roots name them.
SUITES: dict[str, dict[str, tuple[str, ...]]] = {
    "cross": {"required": ("spaq", "kadid10k", "agiqa3k"), "optional": ("livec",)},
}

#: Display name and kind of each dataset, for the table (from each dataset's spec in swiniqa.data).
DATASETS: dict[str, tuple[str, str]] = display_table()

#: The study's cross-dataset numbers (REFERENCE_RESULTS.md, trained on KonIQ-10k, no colour jitter):
#: (SRCC, PLCC, images it evaluated). It used subsets of SPAQ and KADID-10K; this suite uses every image.
REFERENCE: dict[str, tuple[float, float, int]] = {
    "spaq": (0.8698, 0.8709, 2224),
    "kadid10k": (0.5412, 0.5591, 2000),
    "agiqa3k": (0.6484, 0.6830, 2982),
}

_PER_DATASET_KEYS = ("resize", "resize_short", "patches")


def roots_key_name(key: str) -> str:
    """Reader name for a roots-file key (``KADID-10K`` -> ``kadid10k``); unknown keys are kept lower-case."""
    return canonical_name(str(key)) or str(key).lower()


def load_roots(roots: Union[str, os.PathLike, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{reader name: {"root": path, **options}}`` from a YAML file or a dict of name -> root/mapping."""
    base = None
    source = "roots"
    if isinstance(roots, (str, os.PathLike)):
        p = Path(os.path.expanduser(os.fspath(roots)))
        source = f"roots file {p}"
        if not p.is_file():
            raise DataError(f"roots file not found: {p}; write a YAML file with lines like `spaq: /data/SPAQ`")
        import yaml

        try:
            data = yaml.safe_load(p.read_text())
        except Exception as e:  # noqa: BLE001 - any parse error is a user error
            raise DataError(f"cannot parse roots file {p}: {str(e).splitlines()[0]}") from None
        base = p.parent
        roots = data or {}
    if not isinstance(roots, dict):
        raise DataError(f"{source} must be a mapping of dataset: root (e.g. `spaq: /data/SPAQ`)")
    out: dict[str, dict[str, Any]] = {}
    for key, val in roots.items():
        name = roots_key_name(key)
        if isinstance(val, (str, os.PathLike)):
            entry: dict[str, Any] = {"root": os.fspath(val)}
        elif isinstance(val, dict) and val.get("root"):
            entry = dict(val)
            entry["root"] = os.fspath(entry["root"])
        else:
            raise DataError(f"{source}: entry '{key}' must be a folder path or a mapping with root: PATH, got {val!r}")
        root = os.path.expanduser(entry["root"])
        if base is not None and not os.path.isabs(root) and "://" not in root:
            root = str(base / root)
        entry["root"] = root
        if name in out:
            raise DataError(f"{source}: dataset '{name}' is given twice (key '{key}'); keep one entry")
        out[name] = entry
    return out


def suite_datasets(roots: dict[str, dict[str, Any]], suite: str, source: str = "roots") -> list[str]:
    """The datasets ``suite`` evaluates with these roots; a missing required root names its key."""
    if suite == "all":
        if not roots:
            raise DataError(f"{source} names no dataset; add lines like `spaq: /data/SPAQ`")
        return list(roots)
    if suite not in SUITES:
        hint = did_you_mean(suite, [*SUITES, "all"])
        raise DataError(f"unknown suite '{suite}'; {hint + ' ' if hint else ''}choose one of "
                        f"{', '.join([*SUITES, 'all'])}")
    spec = SUITES[suite]
    missing = [d for d in spec["required"] if d not in roots]
    if missing:
        need = ", ".join(spec["required"])
        opt = f"; {', '.join(spec['optional'])} optional" if spec["optional"] else ""
        raise DataError(f"{source} has no '{missing[0]}' entry (suite {suite} needs {need}{opt}); add a line "
                        f"`{missing[0]}: /path/to/{DATASETS.get(missing[0], (missing[0],))[0]}`")
    return [*spec["required"], *[d for d in spec["optional"] if d in roots]]


def _options(entry: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(root, reader options, per-dataset eval options) of one roots entry."""
    opts = {k: v for k, v in entry.items() if k != "root" and k not in _PER_DATASET_KEYS}
    ev = {k: entry[k] for k in _PER_DATASET_KEYS if k in entry}
    return entry["root"], opts, ev


def evaluate_suite(checkpoint: Union[str, os.PathLike, tuple[torch.nn.Module, TrainConfig]],
                   roots: Union[str, os.PathLike, dict[str, Any]], suite: str = "cross",
                   patches: Optional[int] = None, batch_size: int = 64, device: Optional[str] = None,
                   resize_short: Optional[int] = None, progress: bool = True,
                   predictions_dir: Optional[str] = None, check: bool = False,
                   threads: Optional[int] = None) -> dict[str, Any]:
    """Evaluate one checkpoint on every dataset of ``suite``; returns rows, means and a Markdown table.

    Args:
        checkpoint: a checkpoint folder, a run/experiment folder (its best checkpoint by validation SRCC)
            or a loaded ``(model, cfg)``.
        roots: a YAML roots file or a dict ``{dataset: root or {"root": ..., options}}``.
        suite: the suite's name (:data:`SUITES`).
        patches, batch_size, device, threads: as :func:`~swiniqa.evaluation.evaluate.evaluate_dataset`.
        resize_short: replaces the short-side default of the datasets resized by their short side (SPAQ);
            other per-dataset overrides go in the roots file.
        progress: one updating stderr line per dataset.
        predictions_dir: gets one ``<dataset>.csv`` (image, mos, pred) per dataset.
        check: decode-check every dataset first.

    Returns:
        ``{"checkpoint", "suite", "rows", "mean_srcc", "mean_plcc", "markdown"}``; each row holds dataset,
        name, kind, images, srcc, plcc, plcc_fit, krcc, rmse_fit, the study's reference numbers and the
        preprocessing used.

    Raises:
        DataError: a required root is missing, or a dataset cannot be read.
        CheckpointError: the checkpoint cannot be found or loaded.
    """
    source = f"roots file {roots}" if isinstance(roots, (str, os.PathLike)) else "roots"
    entries = load_roots(roots)
    names = suite_datasets(entries, suite, source)

    from swiniqa.data.records import read_dataset

    infos = {}
    for name in names:  # read every label file and stat every image before any long run
        root, opts, _ = _options(entries[name])
        infos[name] = read_dataset(name, root, **opts)
        _precheck_files(infos[name].records, name)

    model, cfg, ckpt = _load(checkpoint)
    rows = []
    for name in names:
        ev = _options(entries[name])[2]
        rs, rshort = _eval_resize(name, ev, resize_short)
        metrics, preds = evaluate_dataset(model, cfg, infos[name], patches=ev.get("patches", patches),
                                          batch_size=batch_size, device=device, resize=rs, resize_short=rshort,
                                          progress=progress, threads=threads, check=check)
        row = _row(name, metrics)
        if predictions_dir:
            row["predictions"] = write_predictions(preds, os.path.join(predictions_dir, f"{name}.csv"))
        rows.append(row)

    res: dict[str, Any] = {"checkpoint": ckpt, "suite": suite, "rows": rows,
                           "mean_srcc": _mean(r["srcc"] for r in rows), "mean_plcc": _mean(r["plcc"] for r in rows),
                           "trained_on": cfg.dataset, "model": _model_name(cfg)}
    ref_rows = [r for r in rows if r["dataset"] in REFERENCE]
    if len(ref_rows) == len(REFERENCE) and len(rows) > len(ref_rows):
        res["mean_srcc_reference_sets"] = _mean(r["srcc"] for r in ref_rows)
    res["markdown"] = suite_markdown(res)
    return res


def _load(checkpoint) -> tuple[torch.nn.Module, TrainConfig, str]:
    """``(model, cfg, what)`` of a loaded pair, a checkpoint file/folder or a run folder (its best)."""
    if isinstance(checkpoint, tuple):
        return checkpoint[0], checkpoint[1], "(in-memory model)"
    from swiniqa.checkpoints import resolve_checkpoint
    from swiniqa.models.loading import load_model

    ckpt = str(resolve_checkpoint(checkpoint)) if not str(checkpoint).endswith(
        (".pt", ".pth", ".pkl", ".bin", ".ckpt", ".safetensors")) else str(checkpoint)
    model, cfg = load_model(ckpt)
    return model, cfg, ckpt


def _eval_resize(name: str, ev: dict[str, Any], resize_short: Optional[int]) -> tuple[Any, Optional[int]]:
    """``(resize, resize_short)`` for one dataset: its roots-file options, then ``--resize-short`` for the
    datasets resized by their short side, else "default" (:func:`~swiniqa.evaluation.evaluate.preprocessing`)."""
    rs: Any = ev.get("resize", "default")
    rshort = ev.get("resize_short")
    if rshort is None and resize_short and (EVAL_PREPROCESSING.get(name) or {}).get("resize_short"):
        rshort = resize_short
    if isinstance(rs, str) and rs != "default":
        from swiniqa.parsing import parse_hw

        rs = parse_hw(rs, f"{name}: resize in the roots file", DataError)
    return rs, rshort


def _row(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    display, kind = DATASETS.get(name, (name, ""))
    ref = REFERENCE.get(name)
    return {"dataset": name, "name": display, "kind": kind, "images": metrics["n_images"],
            **{k: metrics[k] for k in ("srcc", "plcc", "plcc_fit", "krcc", "rmse_fit")},
            "reference_srcc": ref[0] if ref else None, "reference_plcc": ref[1] if ref else None,
            "reference_images": ref[2] if ref else None, "patches": metrics["patches"],
            "resize": metrics["resize"], "resize_short": metrics["resize_short"], "root": metrics["root"],
            "seconds": metrics["seconds"]}


def _mean(values) -> float:
    v = [f for f in map(finite_float, values) if f is not None]
    return sum(v) / len(v) if v else float("nan")


def _model_name(cfg: TrainConfig) -> str:
    if cfg.backbone != "swin":
        return f"HyperIQA {cfg.backbone}"
    parts = [f"Swin-{cfg.model_size}"]
    if cfg.multiscale:
        parts.append("multi-scale")
    if cfg.attention:
        parts.append("attention")
    return " + ".join(parts)


def _f(x: Any) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "-"
    return f"{x:.4f}" if math.isfinite(x) else "-"


def _prep(row: dict[str, Any]) -> str:
    if row.get("resize_short"):
        return f"short side {row['resize_short']}"
    if row.get("resize"):
        h, w = row["resize"]
        return f"{h}x{w} (h x w)"
    return "native size"


def suite_markdown(res: dict[str, Any]) -> str:
    """The suite's table in the layout of REFERENCE_RESULTS.md's cross-dataset table, plus the means."""
    rows = res["rows"]
    patches = sorted({r["patches"] for r in rows})
    lines = [
        f"## Cross-dataset evaluation ({res['suite']})",
        "",
        f"Checkpoint `{res['checkpoint']}` ({res.get('model', '')}, trained on {res.get('trained_on', '?')}); "
        f"every image of each test set, {'/'.join(map(str, patches))} distinct fixed crops per image, "
        "scores averaged per image.",
        "",
        "| test set | kind | images | SRCC | PLCC | PLCC (logistic) | KRCC | preprocessing | reference SRCC / PLCC (images) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = (f"{r['reference_srcc']:.4f} / {r['reference_plcc']:.4f} ({r['reference_images']:,})"
               if r.get("reference_srcc") is not None else "-")
        lines.append(f"| {r['name']} | {r['kind']} | {r['images']:,} | {_f(r['srcc'])} | {_f(r['plcc'])} | "
                     f"{_f(r['plcc_fit'])} | {_f(r['krcc'])} | {_prep(r)} | {ref} |")
    ref_mean = _mean(v[0] for v in REFERENCE.values())
    lines.append(f"| **mean** | | | **{_f(res['mean_srcc'])}** | {_f(res['mean_plcc'])} | | | | "
                 f"{ref_mean:.4f} (3 sets) |")
    lines.append("")
    if res.get("mean_srcc_reference_sets") is not None:
        lines.append(f"Mean SRCC over the study's three sets (SPAQ, KADID-10K, AGIQA-3K): "
                     f"**{_f(res['mean_srcc_reference_sets'])}** (study: {ref_mean:.4f}).")
        lines.append("")
    lines.append("Reference: the study's numbers (trained on KonIQ-10k, no colour jitter); it evaluated 2,224 SPAQ "
                 "and 2,000 KADID-10K images, this table every image. PLCC is raw; PLCC (logistic) is after the "
                 "4-parameter logistic fit. Scores are compared higher = better on every set.")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("dataset", "name", "kind", "images", "srcc", "plcc", "plcc_fit", "krcc", "rmse_fit", "reference_srcc",
               "reference_plcc", "reference_images", "patches", "resize", "resize_short", "seconds")


def suite_csv(res: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in res["rows"]:
        vals = []
        for c in CSV_COLUMNS:
            v = r.get(c)
            if c == "resize" and v:
                v = "x".join(map(str, v))
            vals.append("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v))
        w.writerow(vals)
    w.writerow(["mean", "mean", "", "", f"{res['mean_srcc']:.6g}", f"{res['mean_plcc']:.6g}"]
               + [""] * (len(CSV_COLUMNS) - 6))
    return buf.getvalue()


def write_suite_report(res: dict[str, Any], out_dir: Union[str, os.PathLike],
                       stem: str = "cross_dataset") -> dict[str, str]:
    """Write ``<out_dir>/<stem>.md`` and ``.csv``; returns their paths."""
    d = Path(out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        md, cs = d / f"{stem}.md", d / f"{stem}.csv"
        md.write_text(res["markdown"])
        cs.write_text(suite_csv(res))
    except OSError as e:
        from swiniqa.storage import os_error_why

        raise DataError(f"cannot write the suite report into {d}: {os_error_why(e, d)}") from None
    return {"md": str(md), "csv": str(cs)}


__all__ = ["SUITES", "DATASETS", "REFERENCE", "load_roots", "suite_datasets", "evaluate_suite", "suite_markdown",
           "suite_csv", "write_suite_report", "roots_key_name"]
