"""swiniqa: train, study and evaluate SMART-IQA, a blind image-quality model, from a laptop to a Ray cluster.

This module only parses arguments and calls library functions. Every user error ends in one line on
stderr and the documented exit code (0 ok, 1 data problems found, 2 usage or user error, 3 training
failed, 130 interrupted); ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Optional

from swiniqa import cli_common as cc
from swiniqa.cli_common import config_from_args, emit  # noqa: F401  (public names kept for callers)
from swiniqa.errors import SwiniqaError

DESCRIPTION = ("swiniqa: train, study and evaluate SMART-IQA (HyperIQA head on a Swin backbone), a blind "
               "image-quality model, from a laptop CPU to a Ray GPU cluster.")
EPILOG = "exit codes: 0 ok, 1 data problems found, 2 usage or user error, 3 training failed, 130 interrupted"


# --------------------------------------------------------------------------------------------- verbs
def cmd_train(args: argparse.Namespace) -> int:
    from swiniqa.training.trainer import run_training

    from swiniqa.resources import check_local_capacity

    cfg = config_from_args(args)
    check_local_capacity(cfg.num_workers, cfg.cpus_per_worker, cfg.use_gpu)  # before data and Ray: at once
    cc.check_output_dir(cfg.output, "--output")
    cc.apply_max_pixels(cfg.max_image_pixels)
    summary = run_training(cfg, progress=not args.quiet)  # logs the data notes before training starts

    def human(s: dict) -> str:
        t = f", test SRCC {s['test_srcc']:.4f}" if s.get("test_srcc") is not None else ""
        return (f"best val SRCC {s['srcc']:.4f} PLCC {s['plcc']:.4f} at epoch {s['best_epoch']}{t}\n"
                f"checkpoint: {s['checkpoint']}\ntensorboard --logdir {s['tensorboard']}")

    emit(summary, args.json, human)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.json:
        emit(cfg.to_dict(), True)
    else:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=True), end="")
    return 0


def cmd_data_demo(args: argparse.Namespace) -> int:
    from swiniqa.data.demo import write_demo
    from swiniqa.data.records import read_dataset

    root = write_demo(args.out, progress=not (args.quiet or args.json))
    info = read_dataset("demo", str(root))
    emit({"root": str(root), "images": len(info.records), "groups": len({r.group for r in info.records})},
         args.json, lambda s: f"demo dataset: {s['images']} images of {s['groups']} source photos in {s['root']}")
    return 0


def _check_target(args: argparse.Namespace):
    """(DatasetInfo, resize, resize_short, patch size) that ``data check`` checks."""
    from swiniqa.data.records import read_config_dataset, read_dataset

    if args.config or args.preset:
        cfg = config_from_args(args, default_preset=None, keys=cc.DATASET_KEYS + ("max_image_pixels",))
        cc.apply_max_pixels(cfg.max_image_pixels)
        return read_config_dataset(cfg), cfg.resize, cfg.resize_short, args.patch_size or cfg.patch_size
    if not args.dataset:
        raise SwiniqaError("data check needs --dataset NAME (and --data-root DIR), or --config FILE naming them")
    cc.apply_max_pixels(args.max_image_pixels)
    info = read_dataset(args.dataset, cc.absolute_path(args.data_root), **cc.reader_options(args))
    return info, None, None, args.patch_size or 224


def cmd_data_check(args: argparse.Namespace) -> int:
    from swiniqa.data.check import check_dataset, format_report, label_report
    from swiniqa.data.readers.csv_reader import LabelErrors

    try:
        info, resize, resize_short, patch = _check_target(args)
    except LabelErrors as e:
        rep = label_report(e, args.dataset or "")
    else:
        rep = check_dataset(info, resize=resize, resize_short=resize_short, min_side=patch,
                            progress=not (args.json or args.quiet))
    if args.json:
        emit(rep.to_dict(), True)
    else:
        print(format_report(rep))
    return 0 if rep.ok else 1


def cmd_import_weights(args: argparse.Namespace) -> int:
    from swiniqa.training.checkpoint import import_weights

    cfg = config_from_args(args, default_preset="paper", keys=cc.MODEL_KEYS)
    cc.check_output_dir(args.out, "--out")
    out = import_weights(args.file, cfg, args.out)
    emit({"checkpoint": str(out)}, args.json, lambda s: f"checkpoint written to {s['checkpoint']}")
    return 0


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The whole ``swiniqa`` parser (built-in verbs plus those registered by other modules)."""
    from swiniqa import __version__

    parser = argparse.ArgumentParser(prog="swiniqa", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"swiniqa {__version__}")
    cc.add_global_flags(parser, root=True)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, fn, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = verb("train", cmd_train, "train one configuration through Ray Train")
    cc.add_config_args(p)

    p = verb("config", cmd_config, "print the resolved config (every key), e.g. swiniqa config --preset paper")
    cc.add_config_args(p)

    p = verb("import-weights", cmd_import_weights,
             "convert a foreign state dict (.pth/.pt/.pkl/.safetensors) into a checkpoint folder, never unpickling "
             "code")
    p.add_argument("file", help="the foreign weights file")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    g = p.add_argument_group("architecture the weights belong to (default: preset paper)")
    cc.add_preset_args(g)
    cc.add_model_args(g)

    data = sub.add_parser("data", help="datasets: write the demo data, check a dataset",
                          description="Datasets: `data demo` writes the embedded demo dataset; `data check` reads "
                                      "the labels and decodes every image once, naming each problem.")
    dsub = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    p = dsub.add_parser("demo", help="write the embedded demo dataset (1,134 degraded scikit-image tiles)",
                        description="Write the demo dataset (photos shipped with scikit-image, degraded "
                                    "KADID-style) into --out, or the cache ~/.cache/swiniqa by default.")
    p.add_argument("--out", help="a new or empty folder (default: the cache, ~/.cache/swiniqa)")
    p.set_defaults(fn=cmd_data_demo)
    p = dsub.add_parser("check", help="read the labels and decode every image once; exit 1 if anything is broken",
                        description="Read the labels and decode every image once (as training would), naming "
                                    "each unreadable, truncated, empty or missing file and each label problem. "
                                    "Exit 1 when anything is broken.")
    cc.add_dataset_args(p)
    g = p.add_argument_group("or take the dataset (and resize, patch size) from a run config")
    cc.add_preset_args(g)
    p.add_argument("--patch-size", dest="patch_size", type=int,
                   help="images smaller than this are reported as scaled up (default 224, or the config's)")
    p.set_defaults(fn=cmd_data_check)

    for extra in _EXTRA_VERBS:
        extra(sub)
    _add_globals_everywhere(parser)
    return parser


def _add_globals_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every verb parser ``--json --debug --quiet`` (suppressed defaults: either position works)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in set(action.choices.values()):
                cc.add_global_flags(p)
                _add_globals_everywhere(p)


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``swiniqa`` with ``argv``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cc.setup_logging(quiet=args.quiet, debug=args.debug)
    if args.debug:
        os.environ["SWINIQA_DEBUG"] = "1"
        os.environ["SWINIQA_RAY_LOGS"] = "1"
    try:
        return int(args.fn(args) or 0)
    except SwiniqaError as e:
        if args.debug:
            raise
        print(f"swiniqa: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("swiniqa: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a file system refused (read-only, full, permission): the user's to fix
        if args.debug:
            raise
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"swiniqa: error: cannot write or read{where}: {e.strerror or e}; check the path, its permissions "
              "and free space", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - last line of defence: still one line
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"swiniqa: internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


#: Verbs registered by other modules: functions ``(subparsers) -> None``.
_EXTRA_VERBS: list[Callable[[Any], None]] = []


def _register_extra_verbs() -> None:
    import importlib

    for mod in ("swiniqa.evaluation.cli_verbs", "tune_experiments.cli_verbs", "swiniqa.pull", "swiniqa.serving.cli_verbs"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        _EXTRA_VERBS.append(m.register)


_register_extra_verbs()

if __name__ == "__main__":
    sys.exit(main())
