"""``swiniqa export``, ``swiniqa score`` and ``swiniqa serve`` (registered by ``swiniqa.cli``).

Parsing only; each verb calls :mod:`swiniqa.serving.export`, :mod:`~swiniqa.serving.score` or
:mod:`~swiniqa.serving.serve`. Nothing heavy is imported at module level (``swiniqa --help`` stays fast).
"""

from __future__ import annotations

import argparse


def _flag(args: argparse.Namespace, name: str) -> bool:
    """A global flag (``--json``, ``--quiet``): the CLI adds them to every verb parser."""
    return bool(getattr(args, name, False))


# --------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from swiniqa.cli import emit
    from swiniqa.errors import ConfigError
    from swiniqa.serving.export import export_onnx

    if args.format != "onnx":
        raise ConfigError(f"--format {args.format}: only onnx is supported")
    res = export_onnx(args.checkpoint, args.out, opset=args.opset, verify_images=args.verify or None)
    emit(res, _flag(args, "json"), lambda s: (f"wrote {s['onnx']} ({s['bytes'] / 1e6:.1f} MB, opset {s['opset']}); "
                                    f"onnxruntime vs torch: max |diff| {s['max_abs_diff']:.2g} on {s['verified_on']}"))
    return 0


# --------------------------------------------------------------------------------------------- register
def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (verified in onnxruntime against torch)",
        description="Export the whole model (normalisation, backbone, hyper-network, batched target network) to "
                    "ONNX with a dynamic batch: input uint8 crops (B, 3, P, P) named 'patches', output 'scores' (B,). "
                    "The file carries the run's config, so `predict`, `score` and `serve` accept it as --checkpoint.")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, or a run/experiment folder (its best)")
    p.add_argument("--format", default="onnx", help="onnx (the only format)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, onnxruntime CPU >= 1.14)")
    p.add_argument("--verify", nargs="*", metavar="IMAGE",
                   help="image files to compare onnxruntime with torch on (default: synthetic crops)")
    p.set_defaults(fn=cmd_export)


__all__ = ["register", "cmd_export"]
