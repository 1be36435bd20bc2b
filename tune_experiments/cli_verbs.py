"""``swiniqa tune STUDY`` and ``swiniqa report EXPERIMENT`` (registered by ``swiniqa.cli``)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from swiniqa.errors import TrainingError
from tune_experiments.grids import STUDIES


def _tune_config(args: argparse.Namespace):
    from swiniqa.cli_common import file_values, flag_values
    from swiniqa.config import load_file, parse_set
    from tune_experiments.driver import tune_base_config

    # the file's values first (its relative dataset paths mean its own folder), then flags and --set
    overrides: dict[str, Any] = file_values(args.config, load_file(args.config)) if args.config else {}
    overrides.update(flag_values(args))
    overrides.update(parse_set(args.set))
    preset_name = args.preset or (None if args.config else "demo")
    return tune_base_config(preset_name, None, overrides), preset_name


def _f(v: Any, spec: str = ".4f") -> str:
    try:
        return format(float(v), spec) if v is not None and math.isfinite(float(v)) else "-"
    except (TypeError, ValueError):
        return "-"


def _human(s: dict[str, Any]) -> str:
    if s.get("dry_run"):
        lines = [f"{s['study']}: {len(s['trials'])} trials ({s['cells']} cells x {len(s['seeds'])} seeds), "
                 f"experiment {s['experiment']}"]
        for t in s["trials"]:
            lines.append(f"  {t['trial']:<22} lr={t['lr']:g} backbone={t['backbone']} model_size={t['model_size']} "
                         f"multiscale={t['multiscale']} attention={t['attention']} color_jitter={t['color_jitter']} "
                         f"epochs={t['epochs']}")
        lines += [f"note: {n}" for n in s.get("notes", [])]
        return "\n".join(lines)
    lines = [f"{s['study']}: {s['trials']}/{s['trials_planned']} trials, {s['epochs_run']} of "
             f"{s['epochs_full_grid']} epochs of the full grid ({', '.join(f'{v} {k}' for k, v in s['status'].items())})"]
    for c in s.get("cells", []):
        lines.append(f"  {c['cell']:<12} test SRCC {_f(c['test_srcc_mean'])} ± {_f(c['test_srcc_std'])} "
                     f"[{_f(c['test_srcc_ci95_lo'])}, {_f(c['test_srcc_ci95_hi'])}]  n={c['seeds_tested']}")
    for d in s.get("comparisons", []):
        if d["metric"] == "test_srcc":
            lines.append(f"  {d['from']} -> {d['to']}: test SRCC {_f(d['diff'], '+.4f')} "
                         f"[{_f(d['ci95_lo'], '+.4f')}, {_f(d['ci95_hi'], '+.4f')}] {d['verdict']}")
    if s.get("provenance"):
        from tune_experiments.tables import provenance_line

        lines.append(provenance_line(s["provenance"]))
    b = s.get("best")
    if b:
        lines.append(f"best (val SRCC): {b['run']} val {_f(b['metrics']['val_srcc'])} test "
                     f"{_f(b['metrics']['test_srcc'])}  checkpoint {b['checkpoint']}")
    lines.append(f"table: {s['tables']['md']}")
    lines += [f"figure: {p}" for p in s.get("plots", [])]
    lines.append(s.get("tensorboard", ""))
    return "\n".join(lines)


def cmd_tune(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import apply_max_pixels, check_output_dir, emit
    from tune_experiments.driver import StudyOptions, run_study

    cfg, preset_name = _tune_config(args)
    if not args.dry_run:
        from swiniqa.resources import check_local_capacity

        # one trial's workers (an elastic trial's fewest)
        check_local_capacity(cfg.min_workers or cfg.num_workers, cfg.cpus_per_worker, cfg.use_gpu)
        check_output_dir(cfg.output, "--output")
        apply_max_pixels(cfg.max_image_pixels)
    opts = StudyOptions(seeds=args.seeds, output=cfg.output, name=cfg.name, resume=args.resume, dry_run=args.dry_run,
                        progress=not (args.quiet or args.dry_run), preset=preset_name,
                        max_concurrent=args.max_concurrent, early_stopping=not args.no_early_stop,
                        grace_period=args.grace_period, reduction_factor=args.reduction_factor)
    summary = run_study(args.study, cfg, opts)
    failed = int((summary.get("status") or {}).get("error", 0))
    if not failed:
        emit(summary, args.json, _human)
        return 0
    # the report covers the trials that ran; a script must still see that some did not (exit code 3)
    line = (f"{failed} of {summary.get('trials_planned', failed)} trial(s) failed (each one's error is in "
            f"{summary.get('results', summary.get('experiment'))}); the report covers the rest; rerun the same "
            "command with --resume to retry them")
    summary.update(error=line, exit_code=TrainingError.exit_code)
    emit(summary, args.json, _human)
    print(f"swiniqa: error: {line}", file=sys.stderr, flush=True)
    return TrainingError.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import emit
    from tune_experiments.aggregate import build_report

    summary = build_report(args.experiment, progress=False, plots=not args.no_plots)
    emit(summary, args.json, _human)
    return 0


def register(sub) -> None:
    from swiniqa.cli_common import add_config_args

    p = sub.add_parser("tune", help="run a study grid (lr, size, ablation, augment) x seeds on Ray Tune",
                       description="Run every cell of a study grid once per seed on Ray Tune (one trial = one Ray "
                                   "Train run), with ASHA + patience early stopping; then write the tables, "
                                   "figures and results.json into <output>/<name>. With --preset demo the trials "
                                   "are cheap CPU stand-ins (nano Swin, 96-px patches, 6 epochs).")
    p.add_argument("study", choices=list(STUDIES), help="which grid")
    p.add_argument("--seeds", type=int, default=1, help="seeds per cell (seed, seed+1, ...; changes split, crops, init)")
    p.add_argument("--resume", action="store_true", help="continue the experiment of the same --name/--output")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="list the trials' configs, run nothing")
    p.add_argument("--max-concurrent", dest="max_concurrent", type=int,
                   help="trials at a time (default: what the cluster's resources fit)")
    p.add_argument("--no-early-stop", dest="no_early_stop", action="store_true",
                   help="no ASHA (per-trial patience still applies)")
    p.add_argument("--grace-period", dest="grace_period", type=int, default=2, help="ASHA: epochs before stopping")
    p.add_argument("--reduction-factor", dest="reduction_factor", type=int, default=2, help="ASHA reduction factor")
    add_config_args(p)
    p.set_defaults(fn=cmd_tune)

    p = sub.add_parser("report", help="(re)build tables and figures of a tune experiment folder",
                       description="Rebuild results.json, tables (CSV/Markdown/LaTeX) and figures of a finished or "
                                   "partial `swiniqa tune` experiment from its folder alone (local or s3://, gs://).")
    p.add_argument("experiment", help="the experiment folder, e.g. runs/lr-demo")
    p.add_argument("--no-plots", dest="no_plots", action="store_true", help="tables only")
    p.set_defaults(fn=cmd_report)


__all__ = ["register", "cmd_tune", "cmd_report"]
