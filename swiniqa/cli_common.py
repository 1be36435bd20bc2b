"""What every ``swiniqa`` verb shares: the global flags, the config flags, the one dataset interface,
output printing, path handling and the log handler. Public so verb modules never import private names.

Cheap to import (argparse and json only); everything heavy is imported by the verbs that need it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any, Callable, Optional

from swiniqa.errors import ConfigError
from swiniqa.parsing import parse_bool, parse_hw

#: Datasets named in help texts (the registered readers; kept in step by a test).
DATASET_CHOICES = "koniq10k, spaq, kadid10k, agiqa3k, livec, tid2013, csv (any folder + label CSV), demo"
MODEL_SIZES = "tiny, small, base (Swin); CPU sizes nano, micro, mini"
BACKBONE_CHOICES = "swin (default), resnet50 (original HyperIQA), resnet18, resnet10t"

#: Dataset flags -> TrainConfig keys (same names): ``data check``, ``train``, ``tune``, ``eval``.
DATASET_KEYS = ("dataset", "data_root", "labels", "images", "score_col", "image_col", "group_col",
                "lower_is_better")
#: Flags that are paths: made absolute against the current directory when parsed (in a config file:
#: against the file's folder).
PATH_KEYS = ("data_root", "labels", "images")
#: Training flags -> TrainConfig keys.
TRAIN_KEYS = ("epochs", "lr", "model_size", "backbone", "num_workers", "use_gpu", "seed", "max_failures",
              "output", "name", "skip_bad_images", "inject_failure_at_epoch", "max_image_pixels", "max_preemptions")
MODEL_KEYS = ("model_size", "backbone")
FLAG_KEYS = TRAIN_KEYS + DATASET_KEYS


# --------------------------------------------------------------------------------------------- output
def jsonable(o: Any) -> Any:
    """``o`` with non-finite floats as None and numpy scalars as Python numbers."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if hasattr(o, "item"):
        return o.item()
    return o


def emit(summary: dict[str, Any], as_json: bool, human: Optional[Callable[[dict], str]] = None) -> None:
    """Print a result: one JSON object as the last stdout line, or a human summary."""
    if as_json:
        print(json.dumps(jsonable(summary), default=str), flush=True)
    else:
        print(human(summary) if human else json.dumps(jsonable(summary), indent=2, default=str), flush=True)


def note(text: str) -> None:
    """One ``note:`` line on stderr (reader notes, skipped files, warnings a verb must show)."""
    print(f"note: {text}", file=sys.stderr, flush=True)


def setup_logging(quiet: bool = False, debug: bool = False) -> None:
    """One-line stderr handler for ``logging.getLogger("swiniqa")``; ``--quiet`` shows only errors."""
    logger = logging.getLogger("swiniqa")
    h = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if h is None:
        h = _StderrHandler()
        logger.addHandler(h)
        logger.propagate = False
    h.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s" if debug else "%(message)s"))
    logger.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (redirected, captured, replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


# --------------------------------------------------------------------------------------------- flags
def add_global_flags(p: argparse.ArgumentParser, root: bool = False) -> None:
    """``--json``, ``--debug``, ``--quiet``, accepted before or after the verb.

    On the root parser they default to False; on verb parsers they are ``SUPPRESS``ed when absent, so
    ``swiniqa --debug train`` and ``swiniqa train --debug`` mean the same.
    """
    d = False if root else argparse.SUPPRESS
    for flag, help_ in (("--json", "the last stdout line is one JSON object"),
                        ("--debug", "show tracebacks and Ray worker logs"),
                        ("--quiet", "no progress or notes on stderr")):
        if flag not in p._option_string_actions:  # a verb module may have declared one itself
            p.add_argument(flag, action="store_true", default=d, help=help_)


def worker_count(text: str) -> str:
    """``--num-workers``: N, or MIN-MAX for an elastic run (the config splits it into ``min_workers`` and
    ``num_workers``); anything else is a usage error."""
    lo, dash, hi = text.strip().partition("-")
    if not (lo.isdigit() and (not dash or hi.isdigit())):
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX (e.g. 2 or 1-4), got {text!r}")
    return text.strip()


def add_preset_args(g) -> None:
    """``--preset --config --set``: the config layers (preset, then file, then flags and --set)."""
    g.add_argument("--preset", default=None, help="named preset: paper (reference best run) or demo (CPU)")
    g.add_argument("--config", default=None, help="YAML/JSON file of config keys")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key (repeatable)")


def add_model_args(g) -> None:
    g.add_argument("--model-size", dest="model_size", help=f"backbone size: {MODEL_SIZES}")
    g.add_argument("--backbone", help=f"feature extractor: {BACKBONE_CHOICES}")


def add_config_args(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """Every training flag (``train``, ``tune``, ``config``) plus, with ``dataset``, the dataset flags."""
    g = p.add_argument_group("configuration (preset, then --config file, then flags and --set; later wins)")
    add_preset_args(g)
    g.add_argument("--epochs", type=int, help="training epochs")
    g.add_argument("--lr", type=float, help="backbone learning rate (head: lr x lr_ratio)")
    add_model_args(g)
    g.add_argument("--num-workers", dest="num_workers", type=worker_count, metavar="N|MIN-MAX",
                   help="data-parallel workers (GPUs/processes); MIN-MAX: an elastic run that starts on MIN, "
                        "uses up to MAX, continues on fewer when a node is lost and grows back")
    g.add_argument("--gpu", dest="use_gpu", action="store_const", const=True, help="one GPU per worker")
    g.add_argument("--seed", type=int, help="seed of split, crops and initialisation")
    g.add_argument("--max-failures", dest="max_failures", type=int, help="worker-group restarts allowed")
    g.add_argument("--max-preemptions", dest="max_preemptions", type=int,
                   help="restarts after spot reclaim notices allowed, apart from --max-failures (default: unlimited)")
    g.add_argument("--output", help="local folder or s3:// / gs:// URI for runs")
    g.add_argument("--name", help="run name; reusing a name resumes that run")
    g.add_argument("--skip-bad-images", dest="skip_bad_images", action="store_const", const=True,
                   help="train on the readable images and list the skipped ones")
    g.add_argument("--inject-failure-at-epoch", dest="inject_failure_at_epoch", type=int,
                   help="testing aid: kill a worker once at this epoch to exercise restart/resume")
    if dataset:
        add_dataset_args(p, required=False, defaults_from_config=True)


def add_dataset_args(p: argparse.ArgumentParser, required: bool = False, defaults_from_config: bool = False) -> None:
    """The one dataset interface: the same flags (and TrainConfig keys) on every verb that reads data."""
    g = p.add_argument_group("dataset (the same flags on data check, train, tune, eval; config keys of the "
                             "same names)")
    g.add_argument("--dataset", required=required,
                   help=f"reader name: {DATASET_CHOICES}" + ("" if required or not defaults_from_config
                                                            else " (default: the preset's)"))
    g.add_argument("--data-root", "--root", dest="data_root",
                   help="the dataset's folder (its official release layout; csv: the folder of images + CSV)")
    g.add_argument("--labels", help="csv: the label CSV file (relative paths: to the current directory)")
    g.add_argument("--images", help="image folder (csv; or an official layout's image sub-folder)")
    g.add_argument("--score-col", dest="score_col", help="score column (default: auto-detected, e.g. MOS)")
    g.add_argument("--image-col", dest="image_col", help="csv: image-name column (default: auto-detected)")
    g.add_argument("--group-col", dest="group_col",
                   help="csv: content column for splits (reference image; default: auto, else each image)")
    g.add_argument("--lower-is-better", dest="lower_is_better", action="store_const", const=True,
                   help="csv: scores are DMOS-like (lower = better); they are negated")
    add_max_pixels_arg(g)


def add_max_pixels_arg(g) -> None:
    g.add_argument("--max-image-pixels", dest="max_image_pixels", type=int,
                   help="decode images up to N pixels (default: Pillow's 89,478,485; larger ones are refused)")


def apply_max_pixels(n: Optional[int]) -> None:
    """Put ``--max-image-pixels`` / ``max_image_pixels`` in force for this process and later local workers."""
    if n:
        from swiniqa.data.images import set_max_image_pixels

        set_max_image_pixels(n)


def absolute_path(value: Optional[str]) -> Optional[str]:
    """``value`` made absolute against the current directory (URIs and None unchanged)."""
    if value is None or value == "" or "://" in str(value):
        return value
    return os.path.abspath(os.path.expanduser(str(value)))


def flag_values(args: argparse.Namespace, keys: tuple[str, ...] = FLAG_KEYS) -> dict[str, Any]:
    """The flags the user gave (not None), path flags made absolute against the current directory."""
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    for k in PATH_KEYS:
        if k in out:
            out[k] = absolute_path(out[k])
    return out


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """Reader options (``labels``, ``images``, columns, direction) from the dataset flags."""
    from swiniqa.data.records import OPTION_KEYS

    vals = flag_values(args, OPTION_KEYS + ("lower_is_better",))
    if vals.pop("lower_is_better", False):
        vals["higher_is_better"] = False
    return vals


def config_from_args(args: argparse.Namespace, default_preset: Optional[str] = "demo", keys=FLAG_KEYS):
    """Preset, then ``--config`` file, then flags, then ``--set`` (later wins)."""
    from swiniqa.config import load_config, load_file, parse_set

    overrides: dict[str, Any] = flag_values(args, keys)
    overrides.update(parse_set(getattr(args, "set", []) or []))
    preset_name = args.preset or (None if args.config else default_preset)
    cfg = load_config(preset_name, None, None)
    if args.config:
        cfg = cfg.replace(**file_values(args.config, load_file(args.config)))
    return cfg.replace(**overrides) if overrides else cfg


def file_values(path: str, values: dict[str, Any]) -> dict[str, Any]:
    """A config file's values with its relative dataset paths made relative to the file's folder
    (as the suite's roots file does), so a config works from any current directory."""
    base = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    out = dict(values)
    for k in PATH_KEYS:
        v = out.get(k)
        if isinstance(v, str) and v and "://" not in v and not os.path.isabs(os.path.expanduser(v)):
            out[k] = os.path.join(base, v)
    return out


# --------------------------------------------------------------------------------------------- outputs
def check_output_file(path: Optional[str], flag: str) -> Optional[str]:
    """Fail now, before any work, when ``path`` cannot be written as a file; returns it absolute.
    (:func:`swiniqa.storage.check_output`: really writes a probe there, leaves nothing behind.)

    Raises:
        ConfigError: the path is a folder, a parent is a file, or it cannot be written (named, with the fix).
    """
    from swiniqa.storage import check_output

    return check_output(path, flag)


def check_output_dir(path: Optional[str], flag: str) -> Optional[str]:
    """Fail now when ``path`` cannot be a writable folder (created later); returns it absolute.
    (:func:`swiniqa.storage.check_output` with ``folder=True``.)"""
    from swiniqa.storage import check_output

    return check_output(path, flag, folder=True)


__all__ = ["emit", "jsonable", "note", "setup_logging", "add_global_flags", "add_config_args", "add_dataset_args",
           "add_preset_args", "add_model_args", "config_from_args", "reader_options", "flag_values",
           "absolute_path", "check_output_file", "check_output_dir", "parse_bool", "parse_hw", "FLAG_KEYS",
           "DATASET_KEYS", "TRAIN_KEYS", "file_values", "apply_max_pixels", "add_max_pixels_arg"]
