"""``swiniqa pull`` (registered by ``swiniqa.cli``): parsing and printing only; the work is :func:`swiniqa.pull.pull`."""

from __future__ import annotations

import argparse
import sys

from swiniqa.layout import PULLED_FILE
from swiniqa.pull import pull


def cmd_pull(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import emit

    res = pull(args.source, args.dest, metric=args.metric, mode=args.mode, top=args.top, force=args.force)
    for s in res["skipped"]:
        if not args.quiet:
            print(f"swiniqa pull: note: {s}", file=sys.stderr)

    def human(r: dict) -> str:
        lines = [f"pulled {len(r['checkpoints'])} checkpoint(s) by {r['metric']} ({r['mode']}) from {r['source']} "
                 f"into {r['dest']} (copies verified by sha256):"]
        for p in r["checkpoints"]:
            lines.append(f"  {p['rank']}. {p['checkpoint']}  {r['metric']}={p['value']:.4f}  <- {p['source']}")
        lines.append(f"best: {r['checkpoint']}")
        return "\n".join(lines)

    emit(res, args.json, human)
    return 0


def register(subparsers) -> None:
    help_ = "copy the best checkpoint(s) of an experiment or run (local, s3://, gs://, file://) to a local folder"
    p = subparsers.add_parser(
        "pull", help=help_,
        description=help_ + ". --top 1 writes DEST/best/; --top K writes DEST/rank1_<name>/ .. DEST/rankK_<name>/. "
        "Each holds the checkpoint's files plus " + PULLED_FILE + " (source, metric, value, rank, sha256 of every file). "
        "Credentials come from the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS).")
    p.add_argument("source", metavar="EXPERIMENT_OR_RUN", help="experiment/run/checkpoint folder or URI")
    p.add_argument("--dest", required=True, help="local folder to copy into (created; must be empty unless --force)")
    p.add_argument("--metric", default="val_srcc", help="recorded metric to rank by (default val_srcc)")
    p.add_argument("--mode", choices=("max", "min"), default="max", help="max (default) or min is best")
    p.add_argument("--top", type=int, default=1, help="how many of the best to copy (default 1)")
    p.add_argument("--force", action="store_true", help="replace earlier pulls in a non-empty --dest")
    p.set_defaults(fn=cmd_pull)
