"""``swiniqa <verb>``: parses arguments into a config and calls library functions. Nothing else.

Every user error ends in one line on stderr and a non-zero exit code; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Callable, Optional

from swiniqa.errors import SwiniqaError

_DEBUG = False


def _jsonable(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if hasattr(o, "item"):
        return o.item()
    return o


def emit(summary: dict[str, Any], as_json: bool, human: Optional[Callable[[dict], str]] = None) -> None:
    """Print a result: one JSON object as the last stdout line, or a human summary."""
    if as_json:
        print(json.dumps(_jsonable(summary), default=str), flush=True)
    else:
        print(human(summary) if human else json.dumps(_jsonable(summary), indent=2, default=str), flush=True)


# --------------------------------------------------------------------------------------------- config
def _add_config_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (preset, then --config file, then flags and --set; later wins)")
    g.add_argument("--preset", default=None, help="named preset: paper (reference best run) or demo (CPU)")
    g.add_argument("--config", default=None, help="YAML/JSON file of config keys")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (repeatable)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--lr", type=float, help="backbone learning rate (head: lr x lr_ratio)")
    g.add_argument("--model-size", dest="model_size")
    g.add_argument("--backbone")
    g.add_argument("--num-workers", dest="num_workers", type=int, help="data-parallel workers (GPUs/processes)")
    g.add_argument("--gpu", dest="use_gpu", action="store_const", const=True, help="one GPU per worker")
    g.add_argument("--seed", type=int)
    g.add_argument("--max-failures", dest="max_failures", type=int, help="worker-group restarts allowed")
    g.add_argument("--data-root", dest="data_root")
    g.add_argument("--dataset")
    g.add_argument("--output", help="local folder or s3:// / gs:// URI for runs")
    g.add_argument("--name", help="run name; reusing a name resumes that run")
    g.add_argument("--skip-bad-images", dest="skip_bad_images", action="store_const", const=True,
                   help="train on the readable images and report the skipped ones")
    g.add_argument("--inject-failure-at-epoch", dest="inject_failure_at_epoch", type=int,
                   help="testing aid: kill a worker once at this epoch to exercise restart/resume")


_FLAG_KEYS = ("epochs", "lr", "model_size", "backbone", "num_workers", "use_gpu", "seed", "max_failures",
              "data_root", "dataset", "output", "name", "skip_bad_images", "inject_failure_at_epoch")


def config_from_args(args: argparse.Namespace, default_preset: Optional[str] = "demo"):
    from swiniqa.config import load_config, parse_set

    overrides: dict[str, Any] = {k: getattr(args, k) for k in _FLAG_KEYS if getattr(args, k, None) is not None}
    overrides.update(parse_set(args.set))
    preset_name = args.preset or (None if args.config else default_preset)
    return load_config(preset_name, args.config, overrides)


# --------------------------------------------------------------------------------------------- verbs
def cmd_train(args: argparse.Namespace) -> int:
    from swiniqa.training.trainer import run_training

    cfg = config_from_args(args)
    summary = run_training(cfg, progress=not args.quiet)

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

    root = write_demo(args.out, progress=True)
    info = read_dataset("demo", str(root))
    emit({"root": str(root), "images": len(info.records), "groups": len({r.group for r in info.records})},
         args.json, lambda s: f"demo dataset: {s['images']} images of {s['groups']} source photos in {s['root']}")
    return 0


def _reader_options(args: argparse.Namespace) -> dict[str, Any]:
    opts = {}
    for k in ("labels", "images", "image_col", "score_col"):
        v = getattr(args, k, None)
        if v is not None:
            opts[k] = v
    if getattr(args, "lower_is_better", False):
        opts["higher_is_better"] = False
    return opts


def _add_dataset_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--dataset", required=required, help="koniq10k, spaq, kadid10k, agiqa3k, livec, tid2013, csv, demo")
    p.add_argument("--root", help="the dataset's official root folder")
    p.add_argument("--labels", help="csv dataset: label CSV file")
    p.add_argument("--images", help="csv dataset: image folder")
    p.add_argument("--image-col", dest="image_col")
    p.add_argument("--score-col", dest="score_col")
    p.add_argument("--lower-is-better", dest="lower_is_better", action="store_true",
                   help="csv dataset: scores are DMOS-like (lower = better)")


def cmd_data_check(args: argparse.Namespace) -> int:
    from swiniqa.data.check import check_dataset, format_report
    from swiniqa.data.records import read_dataset

    info = read_dataset(args.dataset, args.root, **_reader_options(args))
    rep = check_dataset(info, min_side=args.patch_size, progress=not args.json)
    if args.json:
        emit(rep.to_dict(), True)
    else:
        print(format_report(rep))
    return 0 if rep.ok else 1


def cmd_import_weights(args: argparse.Namespace) -> int:
    from swiniqa.training.checkpoint import import_weights

    cfg = config_from_args(args, default_preset="paper")
    out = import_weights(args.file, cfg, args.out)
    emit({"checkpoint": str(out)}, args.json, lambda s: f"checkpoint written to {s['checkpoint']}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    global _DEBUG
    parser = argparse.ArgumentParser(prog="swiniqa", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and Ray worker logs")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, fn, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
        p.set_defaults(fn=fn)
        return p

    p = verb("train", cmd_train, "train one configuration through Ray Train")
    _add_config_args(p)
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress on stderr")

    p = verb("config", cmd_config, "print the resolved config (all keys)")
    _add_config_args(p)

    p = verb("import-weights", cmd_import_weights,
             "convert a foreign state dict (.pth/.pt/.pkl/.safetensors) into a checkpoint folder, never unpickling code")
    p.add_argument("file")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    _add_config_args(p)

    data = sub.add_parser("data", help="datasets: demo data, checks").add_subparsers(dest="data_verb", required=True)
    p = data.add_parser("demo", help="write the embedded demo dataset")
    p.add_argument("--out", help="folder (default: the cache, ~/.cache/swiniqa)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_data_demo)
    p = data.add_parser("check", help="decode every image once and check the labels")
    _add_dataset_args(p)
    p.add_argument("--patch-size", dest="patch_size", type=int, default=224)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_data_check)

    for extra in _EXTRA_VERBS:
        extra(sub)

    args = parser.parse_args(argv)
    _DEBUG = args.debug
    if args.debug:
        os.environ["SWINIQA_DEBUG"] = "1"
        os.environ["SWINIQA_RAY_LOGS"] = "1"
    try:
        return int(args.fn(args) or 0)
    except SwiniqaError as e:
        if _DEBUG:
            raise
        print(f"swiniqa: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("swiniqa: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: still one line
        if _DEBUG:
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
