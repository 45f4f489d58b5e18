"""Where a training step's time goes: ``torch.profiler`` over a few steps of a preset, after a warm-up.

Prints the wall time per step (with the profiler on, which slows the host), the device's busy time per
step (the sum of its kernels' times; on a GPU a busy time well below the step's wall time means the step
waits on the host: Python, dispatch, launches, synchronisations) and the operators whose kernels take the
most time on the device (the CPU on a CPU), and writes them as JSON.

    python benchmarks/profile_step.py --preset synthia2cityscapes_dada --precision bf16 --out prof.json
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py --preset benchmark_v2_7_dada --steps 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_selftraining import random_batches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="synthia2cityscapes_dada")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="more config overrides")
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from dada.config import load_config
    from dada.engine import Trainer

    cfg = load_config(args.preset, ["model.pretrained=none", "train.progress=false",
                                    f"train.precision={args.precision}", *args.overrides])
    trainer = Trainer(cfg)
    device = trainer.device
    cuda = device.type == "cuda"
    source, target = random_batches(cfg, torch.Generator().manual_seed(0))
    (n_s, _, hs, ws), (n_t, _, ht, wt) = source["image"].shape, target["image"].shape
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(args.warmup):
        trainer.train_step(source, target)
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(source, target)
        sync()
        wall = (time.perf_counter() - started) / args.steps
    from torch.autograd import DeviceType

    events = prof.key_averages()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    if cuda and not hasattr(events[0], attr):  # older torch
        attr = "self_cuda_time_total"
    # On a GPU each kernel's time appears twice in the table: under the kernel's own name (a CUDA event)
    # and under the operator that launched it (a CPU event). The busy time sums the kernels; the table
    # lists the operators.
    operators = [e for e in events if e.device_type == DeviceType.CPU]
    kernels = [e for e in events if e.device_type != DeviceType.CPU] if cuda else operators
    busy = sum(getattr(e, attr) for e in kernels) / 1e6 / args.steps  # µs -> s
    rows = sorted(operators, key=lambda e: getattr(e, attr), reverse=True)[:args.top]
    table = [{"op": e.key, "self_ms_per_step": getattr(e, attr) / 1e3 / args.steps,
              "calls_per_step": e.count / args.steps} for e in rows]
    print(f"{args.preset}, {args.precision}, {device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if cuda else ''}, torch {torch.__version__}; "
          f"batch {n_s}×{hs}×{ws} + {n_t}×{ht}×{wt}; {args.steps} profiled steps after {args.warmup}")
    print(f"wall {1000 * wall:.1f} ms/step (profiler on); {'GPU' if cuda else 'CPU'} self time "
          f"{1000 * busy:.1f} ms/step ({100 * busy / wall:.0f} % of the wall time)")
    print(f"{'operator':<48} {'ms/step':>9} {'share':>6} {'calls/step':>10}")
    for row in table:
        print(f"{row['op'][:48]:<48} {row['self_ms_per_step']:9.2f} "
              f"{100 * row['self_ms_per_step'] / 1000 / busy:5.1f}% {row['calls_per_step']:10.0f}")
    if args.out:
        args.out.write_text(json.dumps({"preset": args.preset, "precision": args.precision,
                                        "device": str(device), "torch": torch.__version__,
                                        "wall_ms": 1000 * wall, "busy_ms": 1000 * busy, "top": table},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
