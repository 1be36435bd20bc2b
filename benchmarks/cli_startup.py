"""CLI start-up latency: wall time of ``swiniqa --help`` and ``swiniqa <verb> --help``, and what each imports.

Each command runs ``--repeats`` times in a fresh interpreter (``python -m swiniqa.cli``-equivalent: the
installed console script's entry point, called through ``sys.executable`` so the venv is the one timed);
the figure is the median wall time. ``baseline`` is ``python -c pass`` on the same interpreter, so what
the package adds is the difference. Heavy modules (torch, timm, ray, ...) found in ``sys.modules`` after
the help text are listed: any there is a regression (help must not load them).

    python benchmarks/cli_startup.py [--verbs train,eval,...] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "timm", "ray", "pandas", "matplotlib", "scipy", "pyarrow", "onnx", "onnxruntime")
VERBS = ("train", "config", "import-weights", "data", "eval", "predict", "complexity", "tune", "report", "pull")

_PROBE = """
import contextlib, io, sys
from swiniqa.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit:
        pass
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _time(cmd: list[str], repeats: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        out = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    return statistics.median(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="wall time of swiniqa --help and each verb's --help")
    ap.add_argument("--verbs", default=",".join(VERBS), help="comma list of verbs (default: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="one JSON line on stdout (table on stderr)")
    args = ap.parse_args(argv)
    base, _ = _time([sys.executable, "-c", "pass"], args.repeats)
    rows = []
    for verb in [""] + [v for v in args.verbs.split(",") if v]:
        argv_ = ([verb] if verb else []) + ["--help"]
        sec, heavy = _time([sys.executable, "-c", _PROBE.format(argv=argv_, heavy=HEAVY)], args.repeats)
        rows.append({"command": " ".join(["swiniqa", *argv_]), "median_s": round(sec, 3),
                     "heavy_imports": [m for m in heavy.split(",") if m]})
    stream = sys.stderr if args.json else sys.stdout
    print(f"python -c pass: {base:.3f} s (median of {args.repeats})", file=stream)
    for r in rows:
        print(f"{r['median_s']:>7.3f} s  {r['command']:<32} {' '.join(r['heavy_imports']) or '-'}", file=stream)
    if args.json:
        print(json.dumps({"python_baseline_s": round(base, 3), "repeats": args.repeats, "rows": rows}))
    return 1 if any(r["heavy_imports"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
