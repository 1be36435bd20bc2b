"""CPU images/s of a model in torch vs the same model exported to ONNX and run in onnxruntime.

Same process, same crops, same thread count, interleaved repeats; the figure is the median. An
"image" is ``test_patches`` crops (predict's unit of work); the model's input is uint8 crops as predict
feeds them. Without ``--checkpoint`` a random-weight model of ``--model-size`` (demo preset: patch 128,
4 crops per image) is written to a temp checkpoint first; weights do not change speed.

    python benchmarks/export_onnx.py --json                                   # nano, the demo model
    python benchmarks/export_onnx.py --checkpoint runs/e6/best --images-per-batch 8 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoint import make_checkpoint  # noqa: E402


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from swiniqa.data.loader import to_tensor
    from swiniqa.serving.export import export_onnx, synthetic_crops
    from swiniqa.models.loading import OnnxModel, load_scorer

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    tmp = tempfile.mkdtemp(prefix="bench-onnx-")
    ckpt = args.checkpoint or make_checkpoint(args.model_size, os.path.join(tmp, "ckpt"))
    t0 = time.perf_counter()
    info = export_onnx(ckpt, os.path.join(tmp, "model.onnx"))
    export_s = time.perf_counter() - t0
    model, cfg = load_scorer(ckpt)
    ort_model = OnnxModel(info["onnx"], threads=threads)
    n = cfg.test_patches * args.images_per_batch
    x = to_tensor(np.ascontiguousarray(synthetic_crops(n, cfg.patch_size, seed=1)))

    def run_torch():
        with torch.no_grad():
            model(x)

    def run_ort():
        ort_model(x)

    for f in (run_torch, run_ort):  # warm-up
        f()
    samples: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for r in range(args.repeats):
        order = [("torch", run_torch), ("onnxruntime", run_ort)][:: 1 if r % 2 == 0 else -1]
        for name, f in order:
            samples[name] += _time(f, 1)
    ips = {k: args.images_per_batch / statistics.median(v) for k, v in samples.items()}
    print(f"{'runtime':<12} {'images/s':>9} {'patches/s':>10}", file=sys.stderr)
    for k, v in ips.items():
        print(f"{k:<12} {v:>9.1f} {v * cfg.test_patches:>10.1f}   samples(s): "
              + " ".join(f"{s:.3f}" for s in samples[k]), file=sys.stderr)
    return {"model_size": cfg.model_size, "patch_size": cfg.patch_size, "patches_per_image": cfg.test_patches,
            "images_per_batch": args.images_per_batch, "threads": threads, "repeats": args.repeats,
            "torch_images_per_s": round(ips["torch"], 2), "onnxruntime_images_per_s": round(ips["onnxruntime"], 2),
            "ratio_onnxruntime_over_torch": round(ips["onnxruntime"] / ips["torch"], 3),
            "max_abs_diff": info["max_abs_diff"], "export_s": round(export_s, 1), "onnx_bytes": info["bytes"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="checkpoint folder (default: a random-weight --model-size model)")
    ap.add_argument("--model-size", dest="model_size", default="nano", help="without --checkpoint (default nano)")
    ap.add_argument("--images-per-batch", dest="images_per_batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, help="torch and onnxruntime intra-op threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="one JSON line on stdout")
    args = ap.parse_args()
    res = run(args)
    print(json.dumps(res) if args.json else json.dumps(res, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
