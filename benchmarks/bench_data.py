"""Decoding + preprocessing throughput of the dataset loaders, one worker, at the paper's sizes.

Generates small datasets in the real on-disk formats in a temporary folder (SYNTHIA 760×1280 with
16-bit 3-channel GT/LABELS and Depth; Cityscapes 1024×2048 with labelIds and disparity, read at 512×1024;
Mapillary 1920×1080 JPEGs letterboxed into 768×1024), reads every item through ``build_dataset`` in
this process (one worker, one torch thread) several times and reports the median images/s. Prints a
table and writes ``benchmarks/results/bench_data.json``.

It then says how many loader workers keep a training step of ``--step-ms`` fed (one source item with
labels + depth and one target item per iteration; each worker decodes on one core).

    .venv/bin/python benchmarks/bench_data.py [--items 8] [--runs 5] [--step-ms 40]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dada.data import build_dataset  # noqa: E402
from dada.data.cityscapes import write_cityscapes  # noqa: E402
from dada.data.mapillary import write_mapillary  # noqa: E402
from dada.data.synthia import write_synthia  # noqa: E402
from dada.io import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_data.json"


def smooth_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Image-like content (smooth regions plus sensor noise), so PNG/JPEG sizes resemble real photos."""
    coarse = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3)).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    image += rng.integers(-6, 7, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def blocky_ids(rng: np.random.Generator, height: int, width: int, ids: np.ndarray) -> np.ndarray:
    coarse = rng.choice(ids, size=(max(2, height // 40), max(2, width // 40))).astype(np.uint16)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST)


def make_datasets(root: Path, items: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = np.linspace(2000, 20000, 760, dtype=np.float64)[:, None]
    for i in range(items):
        depth = np.repeat((rows + rng.integers(0, 50, (760, 1280))).astype(np.uint16)[:, :, None], 3, axis=2)
        depth[:, :, 0] //= 2  # channels that differ: OpenCV's ANYDEPTH grayscale has real work to do
        write_synthia(root / "synthia", f"{i:07d}.png", smooth_rgb(rng, 760, 1280),
                      blocky_ids(rng, 760, 1280, np.arange(23)), depth,
                      instance_ids=blocky_ids(rng, 760, 1280, np.arange(50)))
        disparity = (np.linspace(25000, 500, 1024)[:, None] + rng.integers(0, 200, (1024, 2048)))
        disparity = np.where(rng.random((1024, 2048)) < 0.1, 0, disparity).astype(np.uint16)  # 10% invalid
        write_cityscapes(root / "cityscapes", "val", "frankfurt", f"frankfurt_000000_{i:06d}",
                         smooth_rgb(rng, 1024, 2048), blocky_ids(rng, 1024, 2048, np.arange(34)), disparity)
        write_mapillary(root / "mapillary", "validation", f"key{i:04d}", smooth_rgb(rng, 1080, 1920),
                        blocky_ids(rng, 1080, 1920, np.arange(66)).astype(np.uint8))


CASES = (
    ("synthia source, 760×1280, labels + depth", "synthia", "all", 16,
     dict(size=(760, 1280), depth=True)),
    ("synthia source, 760×1280, labels only", "synthia", "all", 16, dict(size=(760, 1280))),
    ("cityscapes target train, 1024×2048 → 512×1024, no labels", "cityscapes", "val", 16,
     dict(size=(512, 1024), labels=False)),
    ("cityscapes eval, 512×1024 image + 1024×2048 labels", "cityscapes", "val", 16,
     dict(size=(512, 1024), label_size="native")),
    ("cityscapes + disparity, 512×1024", "cityscapes", "val", 16, dict(size=(512, 1024), depth=True)),
    ("mapillary train, 1080×1920 jpg → letterbox 768×1024", "mapillary", "validation", 7,
     dict(size=(768, 1024))),
    ("mapillary eval, letterbox + native labels padded 4:3", "mapillary", "validation", 7,
     dict(size=(768, 1024), label_size="native")),
)


def measure(dataset, runs: int) -> tuple[float, list[float]]:
    dataset[0]  # warm caches (lookup tables, imports)
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        rates.append(len(dataset) / (time.perf_counter() - start))
    return statistics.median(rates), rates


def workers_needed(results: list[dict], step_ms: float) -> dict:
    """Workers that keep a step of ``step_ms`` fed: one source item (labels + depth) and one target item
    (no labels) per iteration, decoded in parallel by ``num_workers`` processes of one core each."""
    by_case = {r["case"]: r["ms_per_image"] for r in results}
    decode = by_case[CASES[0][0]] + by_case[CASES[2][0]]
    return {"step_ms": step_ms, "decode_ms_per_iteration": decode,
            "workers_needed": math.ceil(decode / step_ms),
            "workers_with_margin": math.ceil(1.5 * decode / step_ms)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8, help="files per dataset (default 8)")
    parser.add_argument("--runs", type=int, default=5, help="passes over the files (default 5)")
    parser.add_argument("--step-ms", type=float, default=40.0, help="the training step to feed, ms per "
                        "iteration (default 40: the 90k-iterations-in-an-hour target)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="dada-bench-data-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_datasets(root, args.items)
        print(f"generated {args.items} files per dataset in {time.perf_counter() - start:.1f} s")
        print(f"{'case':<58} {'images/s':>9} {'ms/image':>9}")
        for title, name, split, num_classes, kwargs in CASES:
            dataset = build_dataset(name, root / name, split, num_classes, **kwargs)
            median, rates = measure(dataset, args.runs)
            results.append({"case": title, "dataset": name, "kwargs": kwargs,
                            "images_per_s": round(median, 2), "ms_per_image": round(1000 / median, 1),
                            "runs": [round(r, 2) for r in rates]})
            print(f"{title:<58} {median:>9.1f} {1000 / median:>9.1f}")
    feed = workers_needed(results, args.step_ms)
    print(f"DADA iteration (one SYNTHIA 760×1280 item with labels + depth, one Cityscapes 512×1024 target "
          f"item): {feed['decode_ms_per_iteration']:.1f} ms of one worker; at {args.step_ms:.0f} ms per step "
          f"the loader needs {feed['workers_needed']} worker(s) per GPU (data.num_workers; "
          f"{feed['workers_with_margin']} with a 50% margin)")
    write_json(args.out, {"benchmark": "bench_data", "items": args.items, "runs": args.runs,
                          "workers": 1, "torch_threads": 1, "machine": platform.platform(),
                          "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count(), "results": results, "feeding_the_step": feed})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
