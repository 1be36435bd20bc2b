"""``swiniqa export``, ``swiniqa score`` and ``swiniqa serve`` (registered by ``swiniqa.cli``).

Parsing only; each verb calls :mod:`swiniqa.serving.export`, :mod:`~swiniqa.serving.score` or
:mod:`~swiniqa.serving.serve`. Nothing heavy is imported at module level (``swiniqa --help`` stays fast).
"""

from __future__ import annotations

import argparse


def _checkpoint(path: str) -> str:
    """A local checkpoint path: an ``s3://``/``gs://`` checkpoint is copied once and verified (as for predict)."""
    from swiniqa.data.staging import fetch_checkpoint
    from swiniqa.storage import is_remote

    return fetch_checkpoint(path) if is_remote(path) else path


def _flag(args: argparse.Namespace, name: str) -> bool:
    """A global flag (``--json``, ``--quiet``): the CLI adds them to every verb parser."""
    return bool(getattr(args, name, False))


# --------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import emit
    from swiniqa.errors import ConfigError
    from swiniqa.serving.export import export_onnx

    if args.format != "onnx":
        from swiniqa.errors import did_you_mean

        hint = did_you_mean(args.format, ["onnx"], cutoff=0.5)
        raise ConfigError(f"--format {args.format}: only onnx is supported{' (' + hint + ')' if hint else ''}")
    from swiniqa.storage import check_output

    check_output(args.out, "--out")  # before fetching a remote checkpoint
    res = export_onnx(_checkpoint(args.checkpoint), args.out, opset=args.opset, verify_images=args.verify or None)
    emit(res, _flag(args, "json"), lambda s: (f"wrote {s['onnx']} ({s['bytes'] / 1e6:.1f} MB, opset {s['opset']}); "
                                    f"onnxruntime vs torch: max |diff| {s['max_abs_diff']:.2g} on {s['verified_on']}"))
    return 0


# --------------------------------------------------------------------------------------------- score
def _resize(raw):
    from swiniqa.errors import ConfigError
    from swiniqa.parsing import parse_hw

    return "default" if raw is None else parse_hw(raw, f"--resize {raw!r}", ConfigError)


def _report_errors(errors: list, total: int) -> int:
    """One stderr line naming the images that could not be scored; exit code 1 when there are any."""
    import sys

    if not errors:
        return 0
    listed = ", ".join(f"{e['image']} ({e['why']})" for e in errors[:10])
    more = f", ... and {len(errors) - 10} more" if len(errors) > 10 else ""
    print(f"swiniqa: error: {len(errors)} of {total} inputs could not be scored: {listed}{more}",
          file=sys.stderr, flush=True)
    return 1


def cmd_score(args: argparse.Namespace) -> int:
    from swiniqa.cli_common import emit
    from swiniqa.serving.score import score_collection

    res = score_collection(_checkpoint(args.checkpoint), args.inputs, args.output, patches=args.patches,
                           resize=_resize(args.resize), resize_short=args.resize_short, recursive=args.recursive,
                           batch_size=args.batch_size, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                           cpus_per_actor=args.cpus_per_actor, progress=not _flag(args, "quiet"))

    def human(s: dict) -> str:
        rate = f" at {s['images_per_s']:.1f} images/s ({s['actors']} actor(s) on {s['device']})" \
            if s["images_per_s"] else ""
        skipped = f"; {s['skipped']} already scored, skipped" if s["skipped"] else ""
        return f"scored {s['scored']} of {s['images']} images into {s['output']}{rate}{skipped}"

    emit(res, _flag(args, "json"), human)
    return _report_errors(res["errors"], res["images"])


# --------------------------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    import sys
    import time

    from swiniqa.serving.serve import start_server

    url = start_server(_checkpoint(args.checkpoint), host=args.host, port=args.port, replicas=args.replicas,
                       gpus_per_replica=args.gpus_per_replica, cpus_per_replica=args.cpus_per_replica,
                       patches=args.patches, resize=_resize(args.resize), resize_short=args.resize_short,
                       max_body_bytes=int(args.max_body_mb * (1 << 20)), max_batch=args.max_batch,
                       batch_wait_s=args.batch_wait_ms / 1000.0)
    print(f"serving {args.checkpoint} on {url}: POST {url}/score (raw image bytes, or multipart form files), "
          f"GET {url}/healthz; Ctrl-C or SIGTERM stops", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        from ray import serve

        serve.shutdown()


# --------------------------------------------------------------------------------------------- register
def _add_scoring_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint folder, a run/experiment folder (its best; also s3:// / gs://), or an exported .onnx file")
    p.add_argument("--patches", type=int, help="crops per image (default: the checkpoint's test_patches)")
    p.add_argument("--resize", help="HEIGHT,WIDTH, or none for the native size (default: as trained)")
    p.add_argument("--resize-short", dest="resize_short", type=int, help="scale the shorter side to N px")


def _register_score(sub) -> None:
    p = sub.add_parser(
        "score", help="score a whole image collection on Ray Data into a CSV/Parquet file (resumable)",
        description="Score every image of folders, glob patterns, list files (.txt/.lst one path a line, .csv with "
                    "an 'image' column) or s3:// / gs:// prefixes on Ray Data: decoding as CPU tasks, the model in "
                    "an actor pool (one GPU per actor on a GPU cluster). Scores equal `swiniqa predict`'s. "
                    "Unreadable files get an 'error' and no score (exit 1). Rerun with the same --output to "
                    "resume: scored images are skipped. Uses RAY_ADDRESS when set, else a local Ray.")
    _add_scoring_args(p)
    p.add_argument("inputs", nargs="+", help="image files, folders, quoted glob patterns, list files, s3:// prefixes")
    p.add_argument("--output", "-o", required=True, help="result file: .csv or .parquet (image, score, error)")
    p.add_argument("--recursive", "-r", action="store_true", help="scan sub-folders of folder inputs too")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64, help="crops per forward pass (default 64)")
    p.add_argument("--actors", type=int, help="model actors (default: one per GPU; on CPUs one per 8 CPUs)")
    p.add_argument("--gpus-per-actor", dest="gpus_per_actor", type=float,
                   help="GPUs per model actor (default 1 on a GPU cluster; 0 = CPU actors)")
    p.add_argument("--cpus-per-actor", dest="cpus_per_actor", type=float,
                   help="CPUs per model actor (default 1 beside a GPU; on CPUs a quarter of the CPUs per actor)")
    p.set_defaults(fn=cmd_score)


def _register_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (verified in onnxruntime against torch)",
        description="Export the whole model (normalisation, backbone, hyper-network, batched target network) to "
                    "ONNX with a dynamic batch: input uint8 crops (B, 3, P, P) named 'patches', output 'scores' (B,). "
                    "The file carries the run's config, so `predict`, `score` and `serve` accept it as --checkpoint.")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint folder, or a run/experiment folder (its best; also s3:// / gs://)")
    p.add_argument("--format", default="onnx", help="onnx (the only format)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, onnxruntime CPU >= 1.14)")
    p.add_argument("--verify", nargs="*", metavar="IMAGE",
                   help="image files to compare onnxruntime with torch on (default: synthetic crops)")
    p.set_defaults(fn=cmd_export)


def _register_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a checkpoint over HTTP on Ray Serve (POST /score, GET /healthz)",
        description="HTTP endpoint on Ray Serve: POST /score with the raw bytes of one image -> {\"score\": x}; "
                    "multipart form files -> {\"scores\": [...], \"names\": [...]}; GET /healthz. Concurrent "
                    "requests share forward passes (dynamic batching). Scores equal `swiniqa predict`'s for the "
                    "same files. A broken upload gets a 4xx with one line. Listens on 127.0.0.1 unless --host says "
                    "otherwise; uses RAY_ADDRESS when set, else its own local Ray. Ctrl-C or SIGTERM stops.")
    _add_scoring_args(p)
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--replicas", type=int, default=1, help="model replicas (default 1)")
    p.add_argument("--gpus-per-replica", dest="gpus_per_replica", type=float, default=0.0,
                   help="GPUs per replica (default 0: CPU)")
    p.add_argument("--cpus-per-replica", dest="cpus_per_replica", type=float, default=1.0,
                   help="CPUs per replica, also its torch threads (default 1)")
    p.add_argument("--max-batch", dest="max_batch", type=int, default=16,
                   help="most requests per forward pass (default 16)")
    p.add_argument("--batch-wait-ms", dest="batch_wait_ms", type=float, default=10.0,
                   help="how long a batch waits for more requests (default 10 ms)")
    p.add_argument("--max-body-mb", dest="max_body_mb", type=float, default=32.0,
                   help="request body limit in MiB (default 32); larger bodies get 413")
    p.set_defaults(fn=cmd_serve)


def register(sub) -> None:
    """Add ``export``, ``score`` and ``serve`` to the ``swiniqa`` sub-parsers."""
    _register_export(sub)
    _register_score(sub)
    _register_serve(sub)


__all__ = ["register", "cmd_export", "cmd_score", "cmd_serve"]
