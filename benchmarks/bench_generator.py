"""Speed of the built-in benchmark generator: frames/s of make_benchmark (median of several runs).

    .venv/bin/python benchmarks/bench_generator.py                 # default benchmark, 3 runs, 2 workers
    .venv/bin/python benchmarks/bench_generator.py --runs 1 --scale 0.2 --workers 1 2
    .venv/bin/python benchmarks/bench_generator.py --version 2 --runs 1     # version 2's set (the demo's)

Each run generates a complete benchmark (the version's default counts times ``--scale``) into a temporary
folder and removes it; prints a table and writes benchmarks/results/bench_generator.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dada.benchmark import DEFAULTS, DEFAULTS_V2, make_benchmark

RESULTS = Path(__file__).resolve().parent / "results" / "bench_generator.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the default image counts")
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--version", type=int, default=1, help="benchmark version (1 or 2)")
    ap.add_argument("--shift", default="full", help="version 2's rung: none | appearance | content | full")
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="default: the version's (128 256; version 2: 256 512)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    base = DEFAULTS_V2 if args.version == 2 else DEFAULTS
    args.size = args.size or list(base["size"])
    counts = {k: max(2 if k == "num_source" else 1, round(base[k] * args.scale))
              for k in ("num_source", "num_target_train", "num_target_val")}
    extra = {"version": args.version, "shift": args.shift} if args.version != 1 else {}
    total = sum(counts.values())
    rows = []
    for workers in args.workers:
        times = []
        for run in range(args.runs):
            tmp = Path(tempfile.mkdtemp(prefix="dada-bench-gen-"))
            try:
                start = time.perf_counter()
                make_benchmark(tmp / "b", seed=run, size=tuple(args.size), workers=workers, **extra, **counts)
                times.append(time.perf_counter() - start)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        median = statistics.median(times)
        rows.append({"workers": workers, "images": total, "runs_s": [round(t, 3) for t in times],
                     "median_s": round(median, 3), "frames_per_s": round(total / median, 2)})
    load = os.getloadavg()[0]
    print(f"make_benchmark version {args.version} {counts} at {args.size[0]}x{args.size[1]} "
          f"(load average {load:.2f} at the end)")
    print(f"{'workers':>8} {'images':>7} {'median s':>9} {'frames/s':>9}  runs (s)")
    for r in rows:
        print(f"{r['workers']:>8} {r['images']:>7} {r['median_s']:>9.2f} {r['frames_per_s']:>9.1f}  "
              f"{r['runs_s']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "bench_generator", "version": args.version,
                                    "shift": args.shift,
                                    "load_average": round(load, 2), "counts": counts, "size": args.size,
                                    "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                                    "machine": platform.machine(), "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
