"""The built-in benchmark's validity criteria (issue 26, point 5), about the benchmark and not any method.

Reads the runs of ``benchmarks/ablation.py`` (S1 and the oracle, 3 seeds, on the 7-class headline and
on 16 classes, and S1 trained twice as long) and the colour probe of the benchmark's ``benchmark.json``,
evaluates each S1 on the *source* validation images (cached in ``<run>/eval_source_val/``), and checks:

1. the oracle learns at least 6 of the 7 classes (mean IoU over seeds >= 20) and 12 of the 16 (>= 10);
2. oracle - S1 >= 10 points on the headline metric (mIoU7) and >= 5x the larger seed std of the two;
3. S1 is at its plateau: S1 at twice the iterations gains < 1 point of mIoU7 (target val);
4. the colour probe trained on source scores below S1 on source val (7 and 16 classes).

The runs come from (``OMP_NUM_THREADS=1``, 2 jobs; ``--out`` folders as below)::

    python benchmarks/ablation.py --setting benchmark_v2_7 --sets core --only S1,oracle --out runs/v2_7
    python benchmarks/ablation.py --setting benchmark_v2 --sets core --only S1,oracle --out runs/v2_16
    python benchmarks/ablation.py --setting benchmark_v2_7 --sets core --only S1 --iters 800 \\
        --out runs/v2_7_800
    python benchmarks/benchmark_validity.py --runs7 runs/v2_7 --runs16 runs/v2_16 --plateau runs/v2_7_800

Prints one table and writes ``--json`` (default benchmarks/results/benchmark-validity.json, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results"


def seed_runs(out: Path, key: str) -> list[Path]:
    """The evaluated runs ``<out>/runs/<key>/seed<N>`` (each with a results.json), in seed order."""
    runs = sorted((out / "runs" / key).glob("seed*"), key=lambda p: int(p.name[4:]))
    return [r for r in runs if (r / "results.json").is_file()]


def result_of(results_json: Path) -> dict:
    return json.loads(results_json.read_text())["result"]


def per_class_mean(results: list[dict]) -> dict[str, float]:
    names = results[0]["class_names"]
    return {name: 100 * statistics.fmean(r["iou"][i] for r in results) for i, name in enumerate(names)}


def stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def benchmark_folder(run: Path) -> Path:
    """The benchmark a run trained on (``@benchmark`` resolved with its ``data.benchmark`` keys)."""
    from dada.benchmark import ensure_benchmark
    from dada.config import load_config, to_dict

    cfg = load_config(str(run / "config.yaml"))
    params = {k: v for k, v in to_dict(cfg.data.benchmark).items() if v is not None}
    return Path(ensure_benchmark(**params))


def source_val_miou(run: Path, bench: Path) -> float:
    """S1's mIoU (%) on the benchmark's source validation images, evaluated once and cached."""
    cached = run / "eval_source_val" / "results.json"
    if not cached.is_file():
        from dada.evaluation import evaluate_run

        evaluate_run(run, out_dir=run / "eval_source_val", overwrite=True, root=str(bench / "source"),
                     dataset="synthia", split="val", figures=0, source_depth=False)
    return 100 * result_of(cached)["miou"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs7", type=Path, required=True, help="ablation --out of the 7-class setting")
    parser.add_argument("--runs16", type=Path, required=True, help="ablation --out of the 16-class setting")
    parser.add_argument("--plateau", type=Path, required=True, help="ablation --out of S1 at 2x iterations")
    parser.add_argument("--json", type=Path, default=RESULTS / "benchmark-validity.json")
    args = parser.parse_args(argv)

    runs = {"S1_7": seed_runs(args.runs7, "S1"), "oracle_7": seed_runs(args.runs7, "oracle"),
            "S1_16": seed_runs(args.runs16, "S1"), "oracle_16": seed_runs(args.runs16, "oracle"),
            "S1_7_long": seed_runs(args.plateau, "S1")}
    empty = [k for k, v in runs.items() if not v]
    if empty:
        print(f"error: no evaluated runs for {empty} (train them with benchmarks/ablation.py first)",
              file=sys.stderr)
        return 2
    results = {k: [result_of(r / "results.json") for r in v] for k, v in runs.items()}
    miou = {k: [100 * r["miou"] for r in v] for k, v in results.items()}
    bench = benchmark_folder(runs["S1_7"][0])
    probe = json.loads((bench / "benchmark.json").read_text())["fingerprint"]["probe"]
    source_val = {k: [source_val_miou(r, bench) for r in runs[k]] for k in ("S1_7", "S1_16", "S1_7_long")}

    oracle7, oracle16 = per_class_mean(results["oracle_7"]), per_class_mean(results["oracle_16"])
    learned7 = [c for c, v in oracle7.items() if v >= 20]
    learned16 = [c for c, v in oracle16.items() if v >= 10]
    (s1, s1_std), (orc, orc_std) = stats(miou["S1_7"]), stats(miou["oracle_7"])
    (s1_long, s1_long_std) = stats(miou["S1_7_long"])
    iters = {k: yaml.safe_load((v[0] / "config.yaml").read_text())["train"]["max_iters"]
             for k, v in runs.items()}
    gap, spread = orc - s1, max(s1_std, orc_std)
    sv7, sv16 = stats(source_val["S1_7"])[0], stats(source_val["S1_16"])[0]
    p7, p16 = probe["7:source_train->source_val"]["miou"], probe["16:source_train->source_val"]["miou"]
    criteria = [
        ("oracle learns >= 6 of 7 classes (IoU >= 20)", len(learned7) >= 6,
         f"{len(learned7)} of 7: " + ", ".join(f"{c} {v:.1f}" for c, v in oracle7.items())),
        ("oracle learns >= 12 of 16 classes (IoU >= 10)", len(learned16) >= 12,
         f"{len(learned16)} of 16; below 10: " + ", ".join(f"{c} {v:.1f}" for c, v in oracle16.items()
                                                           if v < 10)),
        ("oracle - S1 >= 10 points (mIoU7)", gap >= 10,
         f"oracle {orc:.1f} ± {orc_std:.1f} - S1 {s1:.1f} ± {s1_std:.1f} = {gap:.1f}"),
        ("oracle - S1 >= 5x the seed std", gap >= 5 * spread,
         f"{gap:.1f} vs 5 x {spread:.1f} = {5 * spread:.1f}"),
        ("S1 at its plateau: 2x iterations gains < 1 point (mIoU7)", s1_long - s1 < 1,
         f"{s1_long:.1f} ± {s1_long_std:.1f} at 2x vs {s1:.1f} ± {s1_std:.1f}: {s1_long - s1:+.1f}"),
        ("colour probe below S1 on source val (7 classes)", p7 < sv7, f"probe {p7:.1f} vs S1 {sv7:.1f}"),
        ("colour probe below S1 on source val (16 classes)", p16 < sv16, f"probe {p16:.1f} vs S1 {sv16:.1f}"),
    ]
    print(f"Validity criteria of the benchmark at {bench}, iterations {iters} (seeds: "
          f"{len(runs['S1_7'])} S1, {len(runs['oracle_7'])} oracle at 7 classes; {len(runs['S1_16'])}, "
          f"{len(runs['oracle_16'])} at 16; {len(runs['S1_7_long'])} S1 at 2x)\n")
    print("| criterion | met | measured |")
    print("|---|---|---|")
    for name, met, detail in criteria:
        print(f"| {name} | {'yes' if met else '**no**'} | {detail} |")
    print("\nPer seed (mIoU %): " + "; ".join(f"{k} " + ", ".join(f"{v:.1f}" for v in vals)
                                          for k, vals in {**miou, **{f'{k} source val': v for k, v in
                                                                      source_val.items()}}.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": str(bench), "iterations": iters, "miou": miou, "source_val_miou": source_val,
        "oracle_iou7": oracle7, "oracle_iou16": oracle16, "probe_source_val": {"7": p7, "16": p16},
        "criteria": [{"criterion": n, "met": bool(m), "measured": d} for n, m, d in criteria],
        "runs": {k: [str(r) for r in v] for k, v in runs.items()}}, indent=1))
    print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
