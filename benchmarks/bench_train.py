"""Speed and peak memory of the DADA training step (S7, 16 classes, batch 1+1), on whatever device it finds.

Default mode: for each size and setting, in a fresh subprocess (so that peak memory, cuDNN autotuning and
compilation are per cell), ``Trainer.train_step`` after a warm-up: median ms per iteration, peak memory
(CUDA: ``max_memory_allocated``; CPU: the process's peak RSS), the step's FLOPs counted once per size with
``torch.utils.flop_counter`` (forward + backward of both images, the discriminator), MFU against a stated
peak, the projected time of the paper's 90,000 iterations, and the ratio of speed and memory to fp32 eager
(the official step) measured in the same run. Settings: fp32 (eager, the official step), bf16, fp16,
channels_last, compile, all (bf16 + channels_last + compile). On a GPU the defaults (the paper's
760×1280 + 512×1024, then 512×1024 and 256×512) finish within ``--budget`` (480 s) plus one cell.

    .venv/bin/python benchmarks/bench_train.py                    # GPU: the whole matrix, ≤ 8 min
    .venv/bin/python benchmarks/bench_train.py --quick            # CPU: tiny + resnet101, 128×256, 256×512
    .venv/bin/python benchmarks/bench_train.py --sizes paper --settings fp32,all --iters 10

Writes ``benchmarks/results/bench_train.json``.

``--overheads`` mode (the loop's cost; CPU): for each size, ``Trainer.train_step`` vs the same iteration
written inline with plain torch calls (``bare``), the segmenter's forward+backward only, and seconds per
iteration inside ``Trainer.fit``; the overheads step/bare and fit/step; peak RSS. Writes
``benchmarks/results/bench_train_overheads.json``.

    .venv/bin/python benchmarks/bench_train.py --overheads [--sizes 128x256,256x512] [--iters 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
OVERHEADS = Path(__file__).resolve().parent / "results" / "bench_train_overheads.json"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def batches(height: int, width: int, num_classes: int = 16):
    import torch

    g = torch.Generator().manual_seed(0)
    source = {"image": torch.randn(1, 3, height, width, generator=g) * 50,
              "label": torch.randint(0, num_classes, (1, height, width), generator=g),
              "depth": torch.rand(1, 1, height, width, generator=g) * 30}
    target = {"image": torch.randn(1, 3, height, width, generator=g) * 50}
    return source, target


def bare_step(trainer, optimizer, optimizer_d, source, target) -> None:
    """The official DADA iteration with plain torch calls on the trainer's modules."""
    import torch
    import torch.nn.functional as F

    model, disc = trainer.model, trainer.discriminator
    size = source["image"].shape[-2:]
    up = lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=True)  # noqa: E731
    surprisal = lambda p: -p * torch.log2(p + 1e-30) / 4.0  # log2(16)  # noqa: E731
    bce = lambda x, y: F.binary_cross_entropy_with_logits(x, torch.full_like(x, float(y)))  # noqa: E731
    optimizer.zero_grad()
    optimizer_d.zero_grad()
    disc.requires_grad_(False)
    out = model(source["image"])
    seg_s, dep_s = up(out.seg), up(out.depth)
    residual = (dep_s - source["depth"]).abs()
    c = 0.2 * residual.detach().max()
    berhu = torch.where(residual <= c, residual, (residual ** 2 + c ** 2) / (2 * c)).mean()
    (F.cross_entropy(seg_s, source["label"], ignore_index=255) + 1e-3 * berhu).backward()
    out = model(target["image"])
    seg_t, dep_t = up(out.seg), up(out.depth)
    (1e-3 * bce(disc(surprisal(seg_t.softmax(1)) * dep_t), 0)).backward()
    disc.requires_grad_(True)
    bce(disc(surprisal(seg_s.detach().softmax(1)) * dep_s.detach()), 0).backward()
    bce(disc(surprisal(seg_t.detach().softmax(1)) * dep_t.detach()), 1).backward()
    optimizer.step()
    optimizer_d.step()


def forward_backward(trainer, source, target) -> None:
    trainer.model.zero_grad()
    for batch in (source, target):
        out = trainer.model(batch["image"])
        (out.seg.mean() + out.depth.mean()).backward()


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


class InMemory:
    """A dataset that returns the same item (no decoding cost: ``fit`` minus the step is the loop)."""

    def __init__(self, batch: dict):
        self.item = {k: v[0] for k, v in batch.items()}
        self.item["name"] = "x"

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        return self.item


def measure(height: int, width: int, iters: int, threads: int, arch: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from dada.config import load_config
    from dada.engine import Trainer

    overrides = [f"model.arch={arch}", "train.device=cpu", f"data.source.size=[{height},{width}]",
                 f"data.target.size=[{height},{width}]", "data.num_workers=0", "train.progress=false",
                 f"train.max_iters={iters + 1}", "train.checkpoint_every=0", "train.image_every=0",
                 "train.log_every=1", "model.pretrained=none"]  # timing only: random weights will do
    trainer = Trainer(load_config("synthia2cityscapes_dada", overrides))
    rss_before = peak_rss_mib()
    source, target = batches(height, width)
    cfg = trainer.cfg.train
    optimizer = torch.optim.SGD(trainer.model.param_groups(cfg.lr), lr=cfg.lr, momentum=0.9,
                                weight_decay=5e-4)
    optimizer_d = torch.optim.Adam(trainer.discriminator.parameters(), lr=1e-4, betas=(0.9, 0.99))
    trainer.train_step(source, target)  # warm-up (allocations, optimizer state)
    bare_step(trainer, optimizer, optimizer_d, source, target)
    step, bare, fwd_bwd = [], [], []
    for _ in range(iters):
        step.append(timed(lambda: trainer.train_step(source, target)))
        bare.append(timed(lambda: bare_step(trainer, optimizer, optimizer_d, source, target)))
        fwd_bwd.append(timed(lambda: forward_backward(trainer, source, target)))
    trainer.iteration = 0
    inside, train_step = [], trainer.train_step

    def timed_step(source_batch, target_batch):  # the step's share of each fit iteration
        started = time.perf_counter()
        losses = train_step(source_batch, target_batch)
        inside.append(time.perf_counter() - started)
        return losses

    trainer.train_step = timed_step
    with tempfile.TemporaryDirectory() as run:
        trainer.fit(run, datasets={"source": InMemory(source), "target": InMemory(target)})
        records = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    fit = [r["seconds_per_iter"] for r in records if r["kind"] == "train"][1:]  # first: warm-up
    loop = [total / step_time - 1 for total, step_time in zip(fit, inside[1:], strict=True)]
    result = {"size": [height, width], "arch": arch, "threads": threads, "iters": iters,
              "step_s": statistics.median(step), "bare_s": statistics.median(bare),
              "fwd_bwd_s": statistics.median(fwd_bwd), "fit_s": statistics.median(fit),
              "peak_rss_mib": peak_rss_mib(), "rss_before_step_mib": rss_before,
              "samples": {"step": step, "bare": bare, "fwd_bwd": fwd_bwd, "fit": fit}}
    # step vs bare: median of the ratios of adjacent (interleaved) pairs, which share the machine's load;
    # the ratio of the minima (other processes only ever add time) is in the JSON too
    result["overhead_step_vs_bare"] = statistics.median(a / b for a, b in zip(step, bare, strict=True)) - 1
    result["overhead_step_vs_bare_min"] = min(step) / min(bare) - 1
    # fit vs step within the same iterations: time in fit outside train_step / time in train_step
    result["overhead_fit_vs_step"] = statistics.median(loop)
    result["samples"]["fit_loop_overhead"] = loop
    return result


def overheads_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="loop overheads (--overheads)")
    parser.add_argument("--sizes", default="128x256,256x512", help="H×W list, e.g. 128x256,256x512")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--arch", default="resnet101")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args(argv)
    if args.one:
        height, width = (int(v) for v in args.one.split("x"))
        print(json.dumps(measure(height, width, args.iters, args.threads, args.arch)))
        return
    rows = []
    for size in args.sizes.split(","):
        command = [sys.executable, __file__, "--overheads", "--one", size, "--iters", str(args.iters),
                   "--threads", str(args.threads), "--arch", args.arch]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    import torch

    print(f"DADA training step, {args.arch}, 16 classes, batch 1+1, CPU ({platform.processor() or 'cpu'}, "
          f"{args.threads} threads), median of {args.iters}")
    print(f"{'H×W':>9} | {'step s/it':>9} | {'bare s/it':>9} | {'fwd+bwd':>8} | {'fit s/it':>8} | "
          f"{'step/bare':>9} | {'fit/step':>8} | {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['size'][0]}×{r['size'][1]:<5} | {r['step_s']:9.2f} | {r['bare_s']:9.2f} | "
              f"{r['fwd_bwd_s']:8.2f} | {r['fit_s']:8.2f} | {100 * r['overhead_step_vs_bare']:+8.1f}% | "
              f"{100 * r['overhead_fit_vs_step']:+7.1f}% | {r['peak_rss_mib']:12.0f}")
    from dada.io import write_json

    write_json(OVERHEADS, {"benchmark": "bench_train --overheads", "torch": torch.__version__,
                           "cpu_count": os.cpu_count(), "machine": platform.machine(), "rows": rows})
    print(f"wrote {OVERHEADS}")



# ------------------------------------------------------------------------ the speed matrix (default mode)
#: name → train.* overrides; "all" is every setting together (fp16 is the alternative to bf16 on GPUs
#: without bf16, so "all" uses bf16).
SETTINGS = {
    "fp32": [],  # the official step: fp32, eager, NCHW
    "bf16": ["train.precision=bf16"],
    "fp16": ["train.precision=fp16"],
    "channels_last": ["train.channels_last=true"],
    "compile": ["train.compile=true"],
    "all": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
}
#: Dense peak TFLOP/s (bf16 tensor cores, no sparsity) from the vendors' data sheets, by device name.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                   "H100 NVL": 835.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                   "RTX 4090": 165.0, "V100": 125.0}
PAPER = ((760, 1280), (512, 1024))  # SYNTHIA source, Cityscapes target (H, W)
ITERATIONS = 90_000


def parse_size(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """``paper`` or ``HxW`` (both images) or ``HxW+HxW`` (source + target)."""
    if text == "paper":
        return PAPER
    parts = [tuple(int(v) for v in part.split("x")) for part in text.split("+")]
    return (parts[0], parts[-1])


def size_label(sizes) -> str:
    (hs, ws), (ht, wt) = sizes
    return f"{hs}×{ws}" if (hs, ws) == (ht, wt) else f"{hs}×{ws}+{ht}×{wt}"


def pair(sizes, device, num_classes: int = 16):
    import torch

    g = torch.Generator().manual_seed(0)
    (hs, ws), (ht, wt) = sizes
    source = {"image": torch.randn(1, 3, hs, ws, generator=g) * 50,
              "label": torch.randint(0, num_classes, (1, hs, ws), generator=g),
              "depth": torch.rand(1, 1, hs, ws, generator=g) * 30 + 0.1}
    target = {"image": torch.randn(1, 3, ht, wt, generator=g) * 50}
    move = lambda b: {k: v.to(device) for k, v in b.items()}  # noqa: E731
    return move(source), move(target)


def measured_peak_tflops(device, dtype_name: str) -> float:
    """Throughput of a large matmul on this device (the practical peak when no data sheet applies)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    repeats = 50 if device.type == "cuda" else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e12


def peak_tflops(device, override: float | None) -> tuple[float, str]:
    import torch

    if override:
        return override, "given with --peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in GPU_PEAK_TFLOPS.items():
            if key in name:
                return value, f"{name}: dense bf16 data-sheet peak"
        return measured_peak_tflops(device, "bf16"), f"{name}: measured bf16 4096² matmul"
    return measured_peak_tflops(device, "fp32"), "this CPU: measured fp32 1024² matmul, same threads"


def measure_setting(sizes, setting: str, arch: str, iters: int, warmup: int, threads: int,
                    count_flops: bool) -> dict:
    """One (sizes, setting) cell, in its own process: ms/iteration, peak memory, optionally FLOPs."""
    import torch

    torch.set_num_threads(threads)
    from dada.config import load_config
    from dada.engine import Trainer

    (hs, ws), (ht, wt) = sizes
    overrides = [f"model.arch={arch}", f"data.source.size=[{hs},{ws}]", f"data.target.size=[{ht},{wt}]",
                 "model.pretrained=none", "train.progress=false", f"train.max_iters={ITERATIONS}",
                 *SETTINGS[setting]]
    trainer = Trainer(load_config("synthia2cityscapes_dada", overrides))
    device = trainer.device
    cuda = device.type == "cuda"
    source, target = pair(sizes, device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    started = time.perf_counter()
    for _ in range(warmup):  # allocations, optimizer states, cuDNN autotuning, compilation
        trainer.train_step(source, target)
    sync()
    warmup_s = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        losses = trainer.train_step(source, target)
        sync()
        times.append(time.perf_counter() - started)
    result = {"sizes": [list(sizes[0]), list(sizes[1])], "setting": setting, "arch": arch,
              "device": str(device), "iters": iters, "warmup": warmup, "warmup_s": warmup_s,
              "step_ms": 1000 * statistics.median(times), "samples_ms": [1000 * t for t in times],
              "finite": all(v == v and abs(v) != float("inf") for v in losses.values())}
    if cuda:
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        result["peak_memory_mib"] = peak_rss_mib()
        result["memory_kind"] = "process peak RSS"
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step(source, target)
        result["flops"] = counter.get_total_flops()
    return result


def matrix_main(argv: list[str]) -> None:
    import torch

    from dada.devices import resolve_device

    parser = argparse.ArgumentParser(description="DADA step: fp32 eager vs the fast settings")
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 128x256 and 256x512, tiny and "
                        "resnet101, fp32/bf16/compile, 2 timed iterations")
    parser.add_argument("--sizes", help="comma list of paper | HxW | HxW+HxW (default: paper,512x1024,"
                        "256x512 on a GPU; 128x256,256x512 on a CPU)")
    parser.add_argument("--settings", help=f"comma list of {', '.join(SETTINGS)} (default: all six at the "
                        f"first size, fp32 and all at the others)")
    parser.add_argument("--arch", default="resnet101", help="comma list of backbones")
    parser.add_argument("--iters", type=int, help="timed iterations (default 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, help="warm-up iterations (default 3; compile: +2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--peak-tflops", type=float, help="the peak to compute MFU against")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds; cells not started by then "
                        "are reported as skipped (default 480: the whole script fits in 8 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: sizes|setting|arch|flops
    args = parser.parse_args(argv)
    device = resolve_device("auto", "device")
    gpu = device.type == "cuda"
    iters = args.iters or (20 if gpu else (2 if args.quick else 3))
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    if args.cell:
        text, setting, arch, flops = args.cell.split("|")
        extra = 2 if "compile" in setting or setting == "all" else 0
        print(json.dumps(measure_setting(parse_size(text), setting, arch, iters, warmup + extra,
                                         args.threads, flops == "1")))
        return
    if args.quick:
        sizes = args.sizes or "128x256,256x512"
        archs = args.arch if args.arch != "resnet101" else "tiny,resnet101"
        settings = args.settings or "fp32,bf16,compile"
    else:
        sizes = args.sizes or ("paper,512x1024,256x512" if gpu else "128x256,256x512")
        archs, settings = args.arch, args.settings
    cells = []
    for arch in archs.split(","):
        for k, text in enumerate(sizes.split(",")):
            names = settings.split(",") if settings else (list(SETTINGS) if k == 0 else ["fp32", "all"])
            for name in names:
                if name not in SETTINGS:
                    raise SystemExit(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
                cells.append((arch, text, name))
    torch.set_num_threads(args.threads)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    started, rows, flops_of = time.perf_counter(), [], {}
    for arch, text, name in cells:
        key = (arch, text)
        if time.perf_counter() - started > args.budget:
            rows.append({"arch": arch, "sizes": [list(s) for s in parse_size(text)], "setting": name,
                         "skipped": f"time budget of {args.budget:.0f} s spent"})
            continue
        count = key not in flops_of and name in ("fp32", "bf16", "fp16", "channels_last")
        command = [sys.executable, __file__, "--cell", f"{text}|{name}|{arch}|{int(count)}",
                   "--iters", str(iters), "--warmup", str(warmup), "--threads", str(args.threads)]
        remaining = max(30.0, args.budget + 120 - (time.perf_counter() - started))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=remaining)
        except subprocess.TimeoutExpired:
            rows.append({"arch": arch, "sizes": [list(s) for s in parse_size(text)], "setting": name,
                         "skipped": f"timed out after {remaining:.0f} s"})
            continue
        if done.returncode != 0:
            rows.append({"arch": arch, "sizes": [list(s) for s in parse_size(text)], "setting": name,
                         "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"})
            print(f"{arch} {text} {name}: failed: {rows[-1]['error']}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if "flops" in row:
            flops_of[key] = row["flops"]
        rows.append(row)
        print(f"  {arch} {size_label(parse_size(text))} {name}: {row['step_ms']:.1f} ms/it", flush=True)
    for row in rows:  # FLOPs are the step's (the same for every setting); ratios against fp32 eager
        if "step_ms" not in row:
            continue
        text = next(t for a, t, n in cells if a == row["arch"] and [list(s) for s in parse_size(t)] ==
                    row["sizes"])
        flops = flops_of.get((row["arch"], text))
        fp32 = next((r for r in rows if r.get("setting") == "fp32" and r["arch"] == row["arch"]
                     and r["sizes"] == row["sizes"] and "step_ms" in r), None)
        row["tflop_per_iter"] = flops / 1e12 if flops else None
        row["mfu"] = flops / (row["step_ms"] / 1000) / (peak * 1e12) if flops else None
        row["hours_90k"] = row["step_ms"] * ITERATIONS / 3.6e6
        row["speedup_vs_fp32"] = fp32["step_ms"] / row["step_ms"] if fp32 else None
        row["memory_vs_fp32"] = row["peak_memory_mib"] / fp32["peak_memory_mib"] if fp32 else None
    name = torch.cuda.get_device_name(device) if gpu else f"CPU {platform.processor() or platform.machine()}"
    print(f"\nDADA step (S7), 16 classes, batch 1+1, {name}, torch {torch.__version__}; median of {iters} "
          f"after warm-up; MFU against {peak:.3g} TFLOP/s ({peak_source})")
    header = (f"{'arch':<10} {'size (H×W)':<20} {'setting':<13} {'ms/it':>9} {'× fp32':>7} {'peak MiB':>9} "
              f"{'mem/fp32':>8} {'TFLOP/it':>8} {'MFU':>6} {'90k h':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        label = size_label(row["sizes"])
        if "step_ms" not in row:
            reason = row.get("skipped") or row.get("error")
            print(f"{row['arch']:<10} {label:<20} {row['setting']:<13} {reason}")
            continue
        fmt = lambda v, f: format(v, f) if v is not None else "-"  # noqa: E731
        print(f"{row['arch']:<10} {label:<20} {row['setting']:<13} {row['step_ms']:9.1f} "
              f"{fmt(row['speedup_vs_fp32'], '7.2f')} {row['peak_memory_mib']:9.0f} "
              f"{fmt(row['memory_vs_fp32'], '8.2f')} {fmt(row['tflop_per_iter'], '8.3f')} "
              f"{fmt(row['mfu'] and 100 * row['mfu'], '5.1f')}% {row['hours_90k']:7.2f}")
    from dada.io import write_json

    write_json(args.out, {"benchmark": "bench_train", "torch": torch.__version__, "device": name,
                          "threads": args.threads, "peak_tflops": peak, "peak_source": peak_source,
                          "iterations_projected": ITERATIONS, "elapsed_s": time.perf_counter() - started,
                          "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if "--overheads" in sys.argv[1:]:
        overheads_main([a for a in sys.argv[1:] if a != "--overheads"])
    else:
        matrix_main(sys.argv[1:])
