"""swiniqa: train, study and evaluate SMART-IQA, a blind image-quality model, from a laptop to a Ray cluster.

This module only parses arguments and calls library functions. Every user error ends in one line on
stderr and the documented exit code (0 ok, 1 data problems found, 2 usage or user error, 3 training
failed, 130 interrupted by Ctrl-C, 143 stopped by SIGTERM); ``--debug`` shows tracebacks. With ``--json``
the last stdout line is a JSON object on every outcome: the result, or ``{"error": ..., "exit_code": N}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any, Callable, Optional

from swiniqa import cli_common as cc
from swiniqa.cli_common import config_from_args, emit
from swiniqa.errors import SwiniqaError, Terminated, did_you_mean

DESCRIPTION = ("swiniqa: train, study and evaluate SMART-IQA (HyperIQA head on a Swin backbone), a blind "
               "image-quality model, from a laptop CPU to a Ray GPU cluster.")
EPILOG = ("exit codes: 0 ok, 1 data problems found, 2 usage or user error, 3 training failed, 130 interrupted "
          "(Ctrl-C), 143 stopped (SIGTERM)")

#: Set by :func:`main` when ``--json`` is on the command line: failures then also print a JSON object.
_JSON_ERRORS = False


def _fail(message: str, code: int, kind: str = "error: ") -> int:
    """One ``swiniqa: error: ...`` line on stderr and, under ``--json``, ``{"error", "exit_code"}`` as the last
    stdout line (so a script reading the last line gets an object on every outcome); returns ``code``."""
    print(f"swiniqa: {kind}{message}", file=sys.stderr, flush=True)
    if _JSON_ERRORS:
        print(json.dumps({"error": message, "exit_code": code}), flush=True)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped choice (a verb, a study, ``--mode``) and, under ``--json``,
    the error object on stdout for a usage error too. Sub-parsers inherit the class."""

    def _check_value(self, action, value):
        if action.choices is not None and value not in action.choices:
            hint = did_you_mean(value, action.choices)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}; {hint + ' ' if hint else ''}choose "
                                                 f"from {', '.join(map(str, action.choices))}")

    def error(self, message: str):
        self.print_usage(sys.stderr)
        _fail(message, 2)
        self.exit(2)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


# --------------------------------------------------------------------------------------------- verbs
def cmd_train(args: argparse.Namespace) -> int:
    from swiniqa.training.trainer import run_training

    from swiniqa.resources import check_local_capacity

    cfg = config_from_args(args)
    # before data and Ray: at once (an elastic run needs room for its fewest workers)
    check_local_capacity(cfg.min_workers or cfg.num_workers, cfg.cpus_per_worker, cfg.use_gpu)
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

    cc.check_output_dir(args.out, "--out")
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
    from swiniqa.models.loading import import_weights

    cfg = config_from_args(args, default_preset="paper", keys=cc.MODEL_KEYS)
    cc.check_output_dir(args.out, "--out")
    out = import_weights(args.file, cfg, args.out)
    emit({"checkpoint": str(out)}, args.json, lambda s: f"checkpoint written to {s['checkpoint']}")
    return 0


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The whole ``swiniqa`` parser (built-in verbs plus those registered by other modules)."""
    from swiniqa import __version__

    parser = _Parser(prog="swiniqa", description=DESCRIPTION, epilog=EPILOG)
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
    """Run ``swiniqa`` with ``argv``; returns the exit code.

    SIGTERM stops a verb as Ctrl-C does (cleanup runs, Ray is shut down at exit), with exit code 143.
    """
    global _JSON_ERRORS
    as_command = argv is None  # the ``swiniqa`` process itself, not a caller's main([...])
    argv = sys.argv[1:] if argv is None else list(argv)
    _JSON_ERRORS = "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main else None
    native = None
    if as_command and "--debug" not in argv:  # Ray's C++ lines off the command's stderr (not in callers' processes)
        from swiniqa.ray_runtime import NativeStderrFilter

        native = NativeStderrFilter()
    try:
        return _run(argv)
    finally:
        if native is not None:
            native.close()
        if on_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except Terminated:
        return _fail("stopped (SIGTERM)", 143, kind="")
    cc.setup_logging(quiet=args.quiet, debug=args.debug)
    if args.debug:
        os.environ["SWINIQA_DEBUG"] = "1"
        os.environ["SWINIQA_RAY_LOGS"] = "1"
    try:
        return int(args.fn(args) or 0)
    except SwiniqaError as e:
        if args.debug:
            raise
        return _fail(str(e), e.exit_code)
    except Terminated:
        return _fail("stopped (SIGTERM)", 143, kind="")
    except KeyboardInterrupt:
        return _fail("interrupted", 130, kind="")
    except OSError as e:  # a file system refused (read-only, full, permission): the user's to fix
        if args.debug:
            raise
        return _fail(os_error_line(e), 2)
    except Exception as e:  # noqa: BLE001 - last line of defence: still one line
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        return _fail(f"{type(e).__name__}: {msg} (rerun with --debug for the traceback)", 1,
                     kind="internal error: ")


def os_error_line(e: OSError) -> str:
    """An OS error as one plain sentence: what went wrong, on which path, and the fix."""
    from swiniqa.storage import os_error_text

    return os_error_text(e)


#: Verbs registered by other modules: functions ``(subparsers) -> None``.
_EXTRA_VERBS: list[Callable[[Any], None]] = []


def _register_extra_verbs() -> None:
    import importlib

    for mod in ("swiniqa.evaluation.cli_verbs", "tune_experiments.cli_verbs", "swiniqa.pull_cli", "swiniqa.serving.cli_verbs"):
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
