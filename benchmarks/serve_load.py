"""Load test of ``swiniqa serve``: N requests, C concurrent, over loopback HTTP: p50/p99 latency, throughput.

Starts the endpoint itself (Ray Serve on 127.0.0.1, a free port) for ``--checkpoint`` (default: a
random-weight demo-preset model) unless ``--url`` names a running one. Each request POSTs the raw bytes of
one photo-like 1024x768 JPEG (make_images.py; ``--distinct`` images in rotation) and must come back 200
with a finite score; anything else counts as an error. Dynamic batching is on (``--max-batch``).

    python benchmarks/serve_load.py --requests 300 --concurrency 16 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q / 100 * len(xs)) - 1))]


def load(url: str, bodies: list[bytes], requests_n: int, concurrency: int) -> dict:
    """Fire ``requests_n`` POSTs from ``concurrency`` threads (one HTTP session each); latencies in ms."""
    import threading

    import requests

    local = threading.local()

    def one(i: int):
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        t = time.perf_counter()
        try:
            r = s.post(url + "/score", data=bodies[i % len(bodies)], timeout=300)
            ok = r.status_code == 200 and math.isfinite(float(r.json().get("score", "nan")))
            why = None if ok else f"{r.status_code}: {r.text[:120]}"
        except Exception as e:  # noqa: BLE001 - every failure is counted, not raised
            ok, why = False, f"{type(e).__name__}: {e}"[:160]
        return (time.perf_counter() - t) * 1000, ok, why

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        res = list(ex.map(one, range(requests_n)))
    wall = time.perf_counter() - t0
    lat = [ms for ms, _, _ in res]
    errors = [w for _, ok, w in res if not ok]
    return {"requests": requests_n, "concurrency": concurrency, "errors": len(errors), "first_errors": errors[:3],
            "p50_ms": round(statistics.median(lat), 1), "p99_ms": round(_percentile(lat, 99), 1),
            "mean_ms": round(statistics.fmean(lat), 1), "throughput_rps": round(requests_n / wall, 2),
            "seconds": round(wall, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--distinct", type=int, default=8, help="distinct images sent in rotation (default 8)")
    ap.add_argument("--url", help="a running endpoint (default: start one here)")
    ap.add_argument("--checkpoint", help="checkpoint to serve (default: a random-weight demo-preset nano model)")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--cpus-per-replica", dest="cpus_per_replica", type=float, default=1.0)
    ap.add_argument("--gpus-per-replica", dest="gpus_per_replica", type=float, default=0.0)
    ap.add_argument("--max-batch", dest="max_batch", type=int, default=16)
    ap.add_argument("--json", action="store_true", help="one JSON line on stdout")
    args = ap.parse_args()

    from make_images import write_images

    tmp = tempfile.mkdtemp(prefix="bench-serve-")
    bodies = [p.read_bytes() for p in write_images(os.path.join(tmp, "images"), args.distinct)]
    url = args.url
    if not url:
        from bench_checkpoint import make_checkpoint

        from swiniqa.serving.serve import start_server

        ckpt = args.checkpoint or make_checkpoint("nano", os.path.join(tmp, "ckpt"))
        url = start_server(ckpt, port=_free_port(), replicas=args.replicas, cpus_per_replica=args.cpus_per_replica,
                           gpus_per_replica=args.gpus_per_replica, max_batch=args.max_batch)
    load(url, bodies, min(len(bodies), args.requests), 1)  # warm-up: every replica has decoded and run once
    res = {"url": url, "replicas": args.replicas, "max_batch": args.max_batch,
           **load(url, bodies, args.requests, args.concurrency)}
    print(f"{res['requests']} requests, {res['concurrency']} concurrent: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
          f"{res['throughput_rps']} requests/s, {res['errors']} errors", file=sys.stderr)
    print(json.dumps(res) if args.json else json.dumps(res, indent=2), flush=True)
    if not args.url:
        from ray import serve

        serve.shutdown()
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
