"""The built-in benchmark's fingerprint: class shares per band, horizon rows, object sizes, colour probe.

    .venv/bin/python benchmarks/fingerprint.py                          # version 1, seed 0, 120+60 per domain
    .venv/bin/python benchmarks/fingerprint.py --version 2 --shift full --size 256 512
    .venv/bin/python benchmarks/fingerprint.py --version 2 --shift none --num-source 200

Renders the images in memory (the same per-image seeds as ``dada make-benchmark``, so the numbers are
those of the written benchmark's first images) and computes ``dada.benchmark.fingerprint`` (version 2's
``benchmark.json`` carries the same for its whole set). Defaults follow the outside analysis
(../shared/reference/benchmark-v1-analysis.md): 120 train + 60 val images per domain, 128x256 for
version 1. Source val is every 10th source image, as in the benchmark, so ``--num-source`` images give
``num_source / 10`` source val images; the default 600 gives 540 + 60 (the probe's table is trained on
all source train images). Prints the fingerprint and writes benchmarks/results/fingerprint-v<version>-
<shift>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

from dada.benchmark import fingerprint
from dada.benchmark.writer import DEFAULTS, DEFAULTS_V2, generate, horizon_row, split_of, version_options

RESULTS = Path(__file__).resolve().parent / "results"


def _chunk(job: tuple) -> dict:
    seed, domain, indices, size, opts = job
    stats: dict = {}
    for index in indices:
        rgb, geo, scene = generate(seed, domain, index, size, **opts)
        s = fingerprint.image_stats(rgb, geo.label, "source" if domain == "source" else "target",
                                    horizon_row(scene))
        split = split_of(domain, index)
        stats[split] = fingerprint.merge(stats.get(split), s)
    return stats


def compute(seed: int, counts: dict[str, int], size, opts: dict, workers: int = 1) -> dict:
    """The fingerprint of the first ``counts`` images of each domain (source, target_train, target_val)."""
    jobs = [(seed, d, list(range(a, min(n, a + 8))), tuple(size), opts)
            for d, n in counts.items() for a in range(0, n, 8)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_chunk, jobs)
    else:
        parts = [_chunk(j) for j in jobs]
    stats: dict = {}
    for part in parts:
        for split, s in part.items():
            stats[split] = fingerprint.merge(stats.get(split), s)
    return fingerprint.summarise(stats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--shift", default="full", help="none | appearance | content | full (version 2)")
    ap.add_argument("--fog", type=float, default=0, help="visibility in metres (version 2; 0 none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="default: the version's (128 256 for 1, 256 512 for 2)")
    ap.add_argument("--num-source", type=int, default=600)
    ap.add_argument("--num-target-train", type=int, default=120)
    ap.add_argument("--num-target-val", type=int, default=60)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    opts = version_options(args.version, args.shift, args.fog)
    size = tuple(args.size or (DEFAULTS_V2 if opts else DEFAULTS)["size"])
    counts = {"source": args.num_source, "target_train": args.num_target_train,
              "target_val": args.num_target_val}
    start = time.perf_counter()
    fp = compute(args.seed, counts, size, opts, args.workers)
    seconds = time.perf_counter() - start
    print(f"benchmark version {args.version}, shift {args.shift}, fog {args.fog:g}, seed {args.seed}, "
          f"{size[0]}x{size[1]} ({seconds:.0f} s)")
    print(fingerprint.format_fingerprint(fp))
    out = args.out or RESULTS / f"fingerprint-v{args.version}-{args.shift}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"version": args.version, "shift": args.shift, "fog": args.fog,
                               "seed": args.seed,
                               "size": list(size), "counts": counts, "fingerprint": fp}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
