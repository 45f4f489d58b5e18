"""Seconds per iteration and peak memory of self-training (DACS, dast) against DADA (S7) and source only.

Each method runs in its own process on random batches of the shape its preset trains on (batch size and
image size of each domain, the random crop where the recipe crops: on the paper settings DACS and dast
train on 2 + 2 crops of 512×512, DADA on 1 source image of 760×1280 + 1 target of 512×1024; the data
loader is left out): a few warm-up iterations, then ``--iters`` timed ones. Peak memory is the
process's peak resident set size on the CPU (``ru_maxrss``, which includes the Python/torch baseline;
the baseline is printed as ``none``), or ``torch.cuda.max_memory_allocated`` on a GPU.

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
    from dada.engine.trainer import seed_everything
    from dada.methods import METHODS as CLASSES
    from dada.models import build_segmenter

    if method == "none":  # the interpreter + torch + a built model: the floor under every other row
        cfg = load_config(f"{setting}_source_only", ["model.pretrained=null"])
        build_segmenter(**{k: cfg.model[k] for k in ("arch", "num_classes")})
        return {"method": method, "s_per_iter": None,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    cfg = load_config(f"{setting}_{method}", ["model.pretrained=null", f"train.device={device}"])
    seed_everything(0, cfg.train.deterministic)  # as the Trainer does: cuDNN autotuning unless deterministic
    dev = torch.device(device)
    model = build_segmenter(arch=cfg.model.arch, num_classes=cfg.model.num_classes,
                            depth_head=cfg.model.depth_head,
                            feature_fusion=cfg.model.feature_fusion, bn_mode=cfg.model.bn_mode,
                            output_stride=cfg.model.output_stride).to(dev).train()
    trainer_method = CLASSES[cfg.method.name](cfg, model, dev)
    g = torch.Generator().manual_seed(0)

    def batches():
        source, target = random_batches(cfg, g)
        return {k: v.to(dev) for k, v in source.items()}, {"image": target["image"].to(dev)}

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
    source, target = data
    return {"method": method, "s_per_iter": seconds / iters, "peak_mib": peak,
            "source_batch": [source["image"].shape[0], *source["image"].shape[2:]],
            "target_batch": [target["image"].shape[0], *target["image"].shape[2:]]}


def random_batches(cfg, generator) -> tuple[dict, dict]:
    """A source batch (image, label, inverse depth) and a target batch (image) on the CPU, of the batch
    sizes and image sizes the preset ``cfg`` trains on (:func:`batch_size_of`)."""
    import torch

    n_s, n_t = cfg.data.source.batch_size, cfg.data.target.batch_size
    size_s, size_t = batch_size_of(cfg, "source"), batch_size_of(cfg, "target")
    source = {"image": torch.randn(n_s, 3, *size_s, generator=generator) * 50,
              "label": torch.randint(0, cfg.model.num_classes, (n_s, *size_s), generator=generator),
              "depth": torch.rand(n_s, 1, *size_s, generator=generator) * 30 + 0.1}
    return source, {"image": torch.randn(n_t, 3, *size_t, generator=generator) * 50}


def batch_size_of(cfg, part: str) -> tuple[int, int]:
    """The H×W of a training batch of ``data.<part>``: the random crop when the recipe crops (DACS's
    512×512 on the paper settings), else the resize target, else (the built-in benchmark, read at its own
    size) the benchmark's image size."""
    from omegaconf import OmegaConf

    from dada.benchmark import benchmark_params
    from dada.config import BENCHMARK_ROOT

    domain = cfg.data[part]
    crop = (domain.get("augment") or {}).get("crop")
    if crop or domain.size:
        return tuple(crop or domain.size)
    if domain.root != BENCHMARK_ROOT:
        raise SystemExit(f"data.{part}.size is not set: give the size its images are trained at")
    chosen = {k: v for k, v in OmegaConf.to_container(cfg.data.benchmark, resolve=True).items()
              if v is not None and k != "cache_dir"}
    return tuple(benchmark_params(**chosen)["size"])


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
    print(f"{'method':<12} {'s/iter':>8} {'vs DADA':>8} {'peak MiB':>9}  batch (source + target)")
    for row in rows:
        s = row["s_per_iter"]
        ratio = f"{s / reference:.2f}x" if s is not None and reference else "-"
        shape = " + ".join("{}×{}×{}".format(*row[k]) for k in ("source_batch", "target_batch") if k in row)
        seconds = "-" if s is None else f"{s:.3f}"
        print(f"{row['method']:<12} {seconds:>8} {ratio:>8} {row['peak_mib']:>9.0f}  {shape}")
    if args.out:
        from dada.io import write_text

        write_text(args.out, json.dumps({"setting": args.setting, "device": args.device, "iters": args.iters,
                                         "warmup": args.warmup, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
