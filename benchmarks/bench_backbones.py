"""CPU speed of the segmenter's forward + backward per backbone (DADA segmenter: ASPP + depth block with
feature fusion, 16 classes), batch 4 at 128×256 (the built-in benchmark's size) by default.

One iteration: ``model(images)``, the loss ``CE(upsampled seg) + mean(depth)``, ``backward()``; the median
over ``--iters`` iterations after two warm-ups, each configuration in a fresh subprocess with
``--threads`` intra-op threads (``OMP_NUM_THREADS`` and ``torch.set_num_threads``). The 1-minute load
average before and after the run is recorded: on a shared machine the figures are only comparable
within one run. Prints a table and writes ``benchmarks/results/bench_backbones.json``.

    .venv/bin/python benchmarks/bench_backbones.py [--iters 5] [--threads 2] [--batch 4] [--size 128x256]
        [--configs tiny:8,efficientnet_lite0:8,efficientnet_lite0:16,resnet18_w32:8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_backbones.json"
DEFAULT_CONFIGS = "tiny:8,efficientnet_lite0:8,efficientnet_lite0:16,resnet18_w32:8"


def measure(arch: str, output_stride: int, batch: int, size: tuple[int, int], iters: int) -> dict:
    """Runs in the child process: seconds per forward+backward iteration."""
    import torch
    import torch.nn.functional as F

    from dada.models import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter(arch=arch, num_classes=16, depth_head=True, feature_fusion=True,
                            output_stride=output_stride).train()
    images = torch.randn(batch, 3, *size)
    labels = torch.randint(0, 16, (batch, *size))
    times = []
    for _ in range(iters + 2):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        out = model(images)
        seg = F.interpolate(out.seg, size=size, mode="bilinear", align_corners=True)
        loss = F.cross_entropy(seg, labels) + out.depth.mean()
        loss.backward()
        times.append(time.perf_counter() - start)
    timed = times[2:]
    return {"arch": arch, "output_stride": output_stride, "feature_size": list(out.seg.shape[-2:]),
            "parameters": sum(p.numel() for p in model.parameters()),
            "backbone_parameters": sum(p.numel() for p in model.backbone.parameters()),
            "median_s": statistics.median(timed), "min_s": min(timed), "times_s": timed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="128x256", help="H x W")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="arch:output_stride,...")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.lower().split("x"))
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        arch, stride = args.child.split(":")
        print(json.dumps(measure(arch, int(stride), args.batch, size, args.iters)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    load_before = os.getloadavg()[0]
    rows = []
    for config in args.configs.split(","):
        cmd = [sys.executable, __file__, "--child", config, "--iters", str(args.iters), "--threads",
               str(args.threads), "--batch", str(args.batch), "--size", args.size]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"{config} failed:\n{result.stderr}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()[0]

    print(f"forward+backward, batch {args.batch} at {size[0]}x{size[1]}, {args.threads} threads, "
          f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")
    print(f"{'arch':<20}{'os':>4}{'features':>10}{'params':>12}{'median s/it':>13}{'min s/it':>10}")
    for row in rows:
        h, w = row["feature_size"]
        print(f"{row['arch']:<20}{row['output_stride']:>4}{f'{h}x{w}':>10}{row['parameters']:>12,}"
              f"{row['median_s']:>13.3f}{row['min_s']:>10.3f}")
    record = {"batch": args.batch, "size": list(size), "threads": args.threads, "iters": args.iters,
              "load_average_before": load_before, "load_average_after": load_after,
              "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "python": platform.python_version(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
