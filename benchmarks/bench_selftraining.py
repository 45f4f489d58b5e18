"""Seconds per iteration and peak memory of self-training (DACS, dast) against DADA (S7) and source only.

Each method runs in its own process on random batches of the setting's shape (the data loader is left
out): a few warm-up iterations, then ``--iters`` timed ones. Peak memory is the process's peak resident
set size on the CPU (``ru_maxrss``, which includes the Python/torch baseline; the baseline is printed
as ``none``), or ``torch.cuda.max_memory_allocated`` on a GPU.

    OMP_NUM_THREADS=1 python benchmarks/bench_selftraining.py --setting benchmark_lite0 --iters 5 \\
        --out runs/bench_selftraining.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("none", "source_only", "dada", "dacs", "dast")


def measure(setting: str, method: str, iters: int, warmup: int, device: str) -> dict:
    import torch

    from dada.config import load_config
    from dada.methods import METHODS as CLASSES
    from dada.models import build_segmenter

    if method == "none":  # the interpreter + torch + a built model: the floor under every other row
        cfg = load_config(f"{setting}_source_only", ["model.pretrained=null"])
        build_segmenter(**{k: cfg.model[k] for k in ("arch", "num_classes")})
        return {"method": method, "s_per_iter": None,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    cfg = load_config(f"{setting}_{method}", ["model.pretrained=null", f"train.device={device}"])
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_segmenter(arch=cfg.model.arch, num_classes=cfg.model.num_classes,
                            depth_head=cfg.model.depth_head,
                            feature_fusion=cfg.model.feature_fusion, bn_mode=cfg.model.bn_mode,
                            output_stride=cfg.model.output_stride).to(dev).train()
    trainer_method = CLASSES[cfg.method.name](cfg, model, dev)
    n_s, n_t = cfg.data.source.batch_size, cfg.data.target.batch_size
    size = tuple(cfg.data.target.size or (128, 256))
    g = torch.Generator().manual_seed(0)

    def batches():
        source = {"image": torch.randn(n_s, 3, *size, generator=g).to(dev),
                  "label": torch.randint(0, cfg.model.num_classes, (n_s, *size), generator=g).to(dev),
                  "depth": (torch.rand(n_s, 1, *size, generator=g) + 0.1).to(dev)}
        return source, {"image": torch.randn(n_t, 3, *size, generator=g).to(dev)}

    for i in range(warmup):
        trainer_method.train_step(*batches(), i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = 0.0
    for i in range(warmup, warmup + iters):
        data = batches()
        start = time.perf_counter()
        trainer_method.train_step(*data, i)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"method": method, "s_per_iter": seconds / iters, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="benchmark_lite0")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one method
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.setting, args.one, args.iters, args.warmup, args.device)))
        return
    rows = []
    for method in args.methods:
        child = subprocess.run([sys.executable, __file__, "--one", method, "--setting", args.setting,
                                "--iters", str(args.iters), "--warmup", str(args.warmup),
                                "--device", args.device],
                               capture_output=True, text=True, check=True)
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    reference = next((r["s_per_iter"] for r in rows if r["method"] == "dada"), None)
    print(f"{args.setting}, {args.device}, {args.iters} timed iterations after {args.warmup}")
    print(f"{'method':<12} {'s/iter':>8} {'vs DADA':>8} {'peak MiB':>9}")
    for row in rows:
        s = row["s_per_iter"]
        ratio = f"{s / reference:.2f}x" if s is not None and reference else "-"
        print(f"{row['method']:<12} {'-' if s is None else f'{s:.3f}':>8} {ratio:>8} {row['peak_mib']:>9.0f}")
    if args.out:
        from dada.io import write_text

        write_text(args.out, json.dumps({"setting": args.setting, "device": args.device, "iters": args.iters,
                                         "warmup": args.warmup, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
