"""``swiniqa eval``, ``swiniqa predict`` and ``swiniqa complexity`` (registered by ``swiniqa.cli``).

Parsing only: each verb calls :mod:`swiniqa.evaluation.evaluate`, :mod:`~swiniqa.evaluation.suite`,
:mod:`~swiniqa.evaluation.predict` or :mod:`~swiniqa.evaluation.complexity`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from swiniqa.errors import ConfigError
from swiniqa.provenance import checkpoint_fingerprint


# --------------------------------------------------------------------------------------------- helpers
def _parse_resize(raw: Optional[str]) -> Any:
    """``384,512`` / ``384x512`` -> (384, 512); ``none``/``native`` -> None; absent -> "default"."""
    from swiniqa.parsing import parse_hw

    return "default" if raw is None else parse_hw(raw, f"--resize {raw!r}", ConfigError)


def _checkpoint_path(path: str) -> str:
    from swiniqa.storage import is_remote
    from swiniqa.checkpoints import FOREIGN_SUFFIXES, resolve_checkpoint

    if is_remote(path):  # copied once into the local cache, verified against its manifest
        from swiniqa.data.staging import fetch_checkpoint

        return fetch_checkpoint(path)
    if path.endswith((*FOREIGN_SUFFIXES, ".safetensors", ".onnx")):
        return path
    return str(resolve_checkpoint(path))


def _load(path: str, device: Optional[str]):
    from swiniqa.evaluation.evaluate import default_device
    from swiniqa.models.loading import load_model

    ckpt = _checkpoint_path(path)
    model, cfg = load_model(ckpt, device=str(default_device(device)))
    return model, cfg, ckpt


def _add_eval_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patches", type=int, help="distinct fixed crops per image (default: the checkpoint's test_patches)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64,
                   help="patches per forward pass (whole images per batch; default 64)")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--resize-short", dest="resize_short", type=int, help="scale the shorter side to N px")
    p.add_argument("--threads", type=int, help="decoding threads (default: cores, at most 8)")


# --------------------------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import (absolute_path, apply_max_pixels, check_output_dir, check_output_file, emit, note,
                                    reader_options)

    ckpt_arg = args.checkpoint or args.experiment
    if bool(args.dataset) == bool(args.suite):
        raise ConfigError("swiniqa eval: give --dataset NAME --data-root DIR, or --suite cross --roots datasets.yaml")
    if args.suite and not args.roots:
        raise ConfigError(f"--suite {args.suite} needs --roots FILE (YAML lines like `spaq: /data/SPAQ`)")
    if args.dataset and args.roots:
        raise ConfigError("--roots is for --suite; with --dataset give --data-root DIR")
    if args.suite and any(getattr(args, k, None) for k in ("data_root", "labels", "images", "score_col", "image_col",
                                                           "group_col", "lower_is_better")):
        raise ConfigError("--data-root/--labels/--images/--score-col/... are for --dataset; a suite reads them "
                          "per dataset from --roots FILE")
    if args.suite:
        args.predictions = check_output_dir(args.predictions, "--predictions")
        args.report_dir = check_output_dir(args.report_dir, "--report-dir")
    else:
        args.predictions = check_output_file(args.predictions, "--predictions")
    progress = not args.quiet
    apply_max_pixels(args.max_image_pixels)

    if args.suite:
        import os

        from swiniqa.evaluation.suite import evaluate_suite, write_suite_report

        if args.resize is not None:
            raise ConfigError("--resize applies to one --dataset; in a suite set resize per dataset in the roots file")
        ckpt = _checkpoint_path(ckpt_arg)
        res = evaluate_suite(ckpt, args.roots, suite=args.suite, patches=args.patches, batch_size=args.batch_size,
                             device=args.device, resize_short=args.resize_short, progress=progress,
                             predictions_dir=args.predictions, check=args.check, threads=args.threads)
        report_dir = args.report_dir or (os.path.join(args.experiment, "report") if args.experiment else None)
        if report_dir:
            res["report"] = write_suite_report(res, report_dir)
        summary = {k: v for k, v in res.items() if k != "markdown"}
        summary["fingerprint"] = checkpoint_fingerprint(ckpt)

        def human(_: dict) -> str:
            extra = f"\nreport: {res['report']['md']} and {res['report']['csv']}" if res.get("report") else ""
            return res["markdown"].rstrip() + extra

        emit(summary, args.json, human)
        return 0

    from swiniqa.data.records import read_dataset
    from swiniqa.evaluation.evaluate import evaluate_dataset, write_predictions

    info = read_dataset(args.dataset, absolute_path(args.data_root), **reader_options(args))  # fails in seconds
    model, cfg, ckpt = _load(ckpt_arg, args.device)
    metrics, preds = evaluate_dataset(model, cfg, info, patches=args.patches, batch_size=args.batch_size,
                                      device=args.device, resize=_parse_resize(args.resize),
                                      resize_short=args.resize_short, progress=progress, threads=args.threads,
                                      check=args.check)
    summary = {"checkpoint": ckpt, **metrics, "fingerprint": checkpoint_fingerprint(ckpt), "notes": list(info.notes)}
    if progress:
        for n in info.notes:
            note(n)
    if args.predictions:
        summary["predictions"] = write_predictions(preds, args.predictions)

    def human(s: dict) -> str:
        out = (f"eval {s['dataset']}: {s['n_images']} images x {s['patches']} patches: SRCC {s['srcc']:.4f}  "
               f"PLCC {s['plcc']:.4f}  PLCC(logistic) {s['plcc_fit']:.4f}  KRCC {s['krcc']:.4f}  "
               f"RMSE(logistic) {s['rmse_fit']:.4g}")
        return out + (f"\npredictions: {s['predictions']}" if s.get("predictions") else "")

    emit(summary, args.json, human)
    return 0


# --------------------------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import apply_max_pixels, emit
    from swiniqa.evaluation.predict import format_table, predict_images, split_results

    apply_max_pixels(args.max_image_pixels)

    ckpt = _checkpoint_path(args.checkpoint)
    rows = predict_images(ckpt, args.inputs, batch_size=args.batch_size,
                          patches=args.patches, device=args.device, progress=not args.quiet,
                          resize=_parse_resize(args.resize), resize_short=args.resize_short,
                          recursive=args.recursive, threads=args.threads)
    preds, errors = split_results(rows)
    summary = {"predictions": preds, "n_images": len(preds), "errors": errors, "checkpoint": ckpt,
               "fingerprint": checkpoint_fingerprint(ckpt)}
    emit(summary, args.json, lambda s: format_table(s["predictions"]))
    if errors:
        listed = ", ".join(f"{e['image']} ({e['why']})" for e in errors[:10])
        more = f", ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        print(f"swiniqa: error: {len(errors)} of {len(rows)} inputs could not be scored: {listed}{more}",
              file=sys.stderr, flush=True)
        return 1
    return 0


# --------------------------------------------------------------------------------------------- complexity
def cmd_complexity(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import MODEL_KEYS, config_from_args, emit
    from swiniqa.evaluation import complexity as cx

    if args.table:
        from tune_experiments.grids import ablation_cells

        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        cells = () if args.no_ablations else ablation_cells()
        rows = cx.complexity_rows(sizes, cells, latency=args.latency, device=args.device,
                                  batch_size=args.batch_size, repeats=args.repeats)
        md = cx.complexity_markdown(rows)
        if args.json:
            emit({"rows": [{k: v for k, v in r.items() if k != "counter_note"} for r in rows], "markdown": md,
                  "counter": cx.COUNTER}, True)
        else:
            print(md, end="")
        return 0

    if args.checkpoint:
        from swiniqa.checkpoints import read_config

        import os

        d = _checkpoint_path(args.checkpoint)
        cfg = read_config(os.path.dirname(d) if os.path.isfile(d) else d)
    else:
        cfg = config_from_args(args, default_preset=None, keys=MODEL_KEYS)
    res = cx.measure_complexity(cfg, device=args.device, batch_size=args.batch_size, repeats=args.repeats,
                                latency=not args.no_latency)

    def human(s: dict) -> str:
        out = (f"{s['model']}: {s['params'] / 1e6:.2f} M params, {s['macs'] / 1e9:.2f} GMACs, "
               f"{s['flops'] / 1e9:.2f} GFLOPs per {s['input']} patch ({s['counter']}; MACs = FLOPs / 2)")
        if s.get("latency_ms") is not None:
            out += (f"\n{s['device']} ({s['dtype']}): {s['latency_ms']:.2f} ms per image (batch 1), "
                    f"{s['images_per_s']:.1f} images/s (batch {s['batch_size']})")
        return out

    emit(res, args.json, human)
    return 0


# --------------------------------------------------------------------------------------------- register
def register(sub) -> None:
    from swiniqa.cli_common import add_dataset_args, add_max_pixels_arg, add_model_args, add_preset_args

    p = sub.add_parser(
        "eval", help="evaluate a checkpoint on every image of a dataset, or on the cross-dataset suite",
        description="Evaluate a checkpoint on every image of one dataset (--dataset, --data-root) or of a suite "
                    "(--suite cross: SPAQ, KADID-10K, AGIQA-3K, plus LIVE-C when --roots names it): patch-averaged "
                    "scores, SRCC, PLCC (raw and logistic), KRCC, RMSE.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="checkpoint folder, or a run folder (its best checkpoint)")
    g.add_argument("--experiment", help="a tune experiment folder: its best checkpoint; with --suite the table is "
                                        "also written to EXPERIMENT/report/cross_dataset.md and .csv")
    add_dataset_args(p, required=False)
    p.add_argument("--suite", choices=["cross", "all"], help="cross: SPAQ, KADID-10K, AGIQA-3K (+ LIVE-C); "
                                                              "all: every dataset in --roots")
    p.add_argument("--roots", help="YAML file: dataset: root folder, one per line (e.g. `spaq: /data/SPAQ`; a "
                                   "mapping may add labels, images, score_col, ... as for --dataset)")
    p.add_argument("--predictions", help="CSV file of image,mos,pred (one row per image); with --suite a folder "
                                         "that gets one <dataset>.csv each")
    p.add_argument("--report-dir", dest="report_dir", help="with --suite: write cross_dataset.md/.csv here")
    p.add_argument("--check", action="store_true", help="decode every image before evaluating (cached by "
                                                        "`swiniqa data check`), so a broken file fails early")
    _add_eval_common(p)
    p.add_argument("--resize", help="HEIGHT,WIDTH (e.g. 384,512) to resize every image to, or none for the native "
                                    "size (default: the dataset's evaluation preprocessing, else the checkpoint's)")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser(
        "predict", help="score image files, folders or glob patterns with a checkpoint",
        description="Score images with a checkpoint (mean over fixed distinct crops). Folders are scanned for "
                    "jpg/jpeg/png/bmp/tif/tiff/webp files; unreadable files are listed on stderr (exit 1) and the "
                    "others still scored.")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run/experiment folder (its best)")
    p.add_argument("inputs", nargs="+", help="image files, folders, or quoted glob patterns ('**' recurses)")
    p.add_argument("--recursive", "-r", action="store_true", help="scan sub-folders of folder inputs too")
    _add_eval_common(p)
    p.add_argument("--resize", help="HEIGHT,WIDTH (e.g. 384,512) to resize every image to, or none for the native "
                                    "size (default: as the checkpoint was trained)")
    add_max_pixels_arg(p)
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser(
        "complexity", help="parameters, MACs, FLOPs (FlopCounterMode), latency and throughput of a model",
        description="Params, MACs and FLOPs per patch (torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs/2, "
                    "window-attention matmuls included), then median latency (batch 1) and throughput (--batch-size) "
                    "on --device: bf16 autocast on CUDA, fp32 on CPU. --table: every size and ablation cell.")
    g = p.add_argument_group("model (default: the reference best run E6, Swin-Base + multi-scale + attention)")
    add_model_args(g)
    add_preset_args(g)
    g.add_argument("--checkpoint", help="use the architecture of this checkpoint (or run folder's best)")
    p.add_argument("--device", help="cuda, cpu (default: cuda when available)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="throughput batch (default 32)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs; the median is reported (default 10)")
    p.add_argument("--no-latency", dest="no_latency", action="store_true", help="count only, do not time")
    p.add_argument("--table", action="store_true", help="markdown table of all sizes and ablation cells "
                                                         "(params/MACs/FLOPs; add --latency to time each)")
    p.add_argument("--latency", action="store_true", help="with --table: also time every row")
    p.add_argument("--sizes", default="tiny,small,base", help="with --table: comma-separated sizes")
    p.add_argument("--no-ablations", dest="no_ablations", action="store_true", help="with --table: sizes only")
    p.set_defaults(fn=cmd_complexity)


__all__ = ["register", "cmd_eval", "cmd_predict", "cmd_complexity"]
