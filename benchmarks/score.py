"""images/s of ``swiniqa score`` (Ray Data: decode tasks + model actor pool) vs the ``predict`` loop.

Same images (``--count`` photo-like 1024x768 JPEGs from make_images.py), same checkpoint, same process;
predict runs, then score into a fresh output, then predict again (the two predict figures bracket load
drift on a shared machine; the ratio uses their mean). Ray is started before the clock starts, so the
score time includes the actor pool's start-up, which a real collection amortises. The script also checks
that the two agree (max |score - predict|). With ``RAY_ADDRESS`` set it scores on that cluster (e.g.
tests/multinode_cluster.py's simulated nodes); predict always runs here.

    python benchmarks/score.py --count 500 --json
    python benchmarks/score.py --count 500 --checkpoint runs/e6/best --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoint import make_checkpoint  # noqa: E402


def run(args: argparse.Namespace) -> dict:
    import pandas as pd
    import ray

    from make_images import write_images
    from swiniqa.evaluation.predict import predict_images
    from swiniqa.models.loading import load_scorer
    from swiniqa.serving.score import score_collection
    from swiniqa.ray_runtime import ensure_ray

    tmp = tempfile.mkdtemp(prefix="bench-score-")
    images = args.images or os.path.join(tmp, "images")
    paths = [str(p) for p in write_images(images, args.count)]
    ckpt = args.checkpoint or make_checkpoint(args.model_size, os.path.join(tmp, "ckpt"))
    patches = load_scorer(ckpt)[1].test_patches
    t = time.perf_counter()
    pred = predict_images(ckpt, paths, batch_size=args.batch_size, progress=False)
    predict_s = [time.perf_counter() - t]
    ensure_ray()
    resources = ray.cluster_resources()
    out = os.path.join(tmp, "scores.parquet")
    t = time.perf_counter()
    res = score_collection(ckpt, paths, out, batch_size=args.batch_size, actors=args.actors,
                           cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, progress=False)
    score_s = time.perf_counter() - t
    t = time.perf_counter()  # predict again: brackets load drift on a shared machine
    predict_images(ckpt, paths, batch_size=args.batch_size, progress=False)
    predict_s.append(time.perf_counter() - t)
    df = pd.read_parquet(out).set_index("image")
    diff = max(abs(df.loc[r["image"], "score"] - r["score"]) for r in pred)
    n = len(paths)
    row = {"images": n, "patches_per_image": int(patches), "cluster_cpus": resources.get("CPU"),
           "cluster_gpus": resources.get("GPU", 0), "nodes": len([x for x in ray.nodes() if x["Alive"]]),
           "actors": res["actors"], "device": res["device"],
           "predict_images_per_s": [round(n / x, 2) for x in predict_s], "score_images_per_s": round(n / score_s, 2),
           "ratio_score_over_predict": round(sum(predict_s) / len(predict_s) / score_s, 3), "max_abs_diff": float(diff),
           "errors": len(res["errors"])}
    print(f"predict {' then '.join(f'{x:.1f}' for x in row['predict_images_per_s'])} images/s, score {row['score_images_per_s']:.1f} images/s "
          f"({res['actors']} actor(s) on {res['device']}, {row['nodes']} node(s)); ratio "
          f"{row['ratio_score_over_predict']:.2f}; max |diff| {diff:.2g}", file=sys.stderr)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500, help="images (default 500)")
    ap.add_argument("--images", help="folder for the generated images (default: a temp folder)")
    ap.add_argument("--checkpoint", help="checkpoint (default: a random-weight --model-size demo model)")
    ap.add_argument("--model-size", dest="model_size", default="nano")
    ap.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    ap.add_argument("--actors", type=int)
    ap.add_argument("--cpus-per-actor", dest="cpus_per_actor", type=float)
    ap.add_argument("--gpus-per-actor", dest="gpus_per_actor", type=float)
    ap.add_argument("--json", action="store_true", help="one JSON line on stdout")
    args = ap.parse_args()
    res = run(args)
    print(json.dumps(res) if args.json else json.dumps(res, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
