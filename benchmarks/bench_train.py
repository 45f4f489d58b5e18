"""Speed and peak memory of the DADA training step (ResNet-101, 16 classes) on this machine's CPU.

For each size (H, W), in a fresh subprocess (so that peak memory is per size):

* ``step``: ``Trainer.train_step`` (source and target forward/backward, discriminator, both optimizer
  steps), median seconds over ``--iters`` iterations after one warm-up;
* ``bare``: the same iteration written inline with plain torch calls (reference §2.8) on the same
  modules: the cost of the model, the losses and the optimizers without the trainer;
* ``fwd+bwd``: only the segmenter's forward and backward on the source and the target image;
* ``fit``: seconds per iteration inside ``Trainer.fit`` (data loading from memory, logging, progress;
  the final checkpoint write is outside the timed iterations);
* peak resident memory of the process (``ru_maxrss``; torch's CPU allocations are invisible to
  tracemalloc) and its value before the first step.

Loop overheads (design target: under 5 %): ``step/bare`` = the median over interleaved pairs of
step / bare − 1 (adjacent runs share the machine's load; min(step) / min(bare) − 1 is in the JSON too);
``fit/step`` = the median over fit's iterations of (iteration time − time inside train_step) / time
inside train_step, both measured in the same iteration, so machine load hardly biases it. Prints a table
and writes ``benchmarks/results/bench_train.json``.

    .venv/bin/python benchmarks/bench_train.py [--sizes 128x256,256x512] [--iters 3] [--threads 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128x256,256x512", help="H×W list, e.g. 128x256,256x512")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--arch", default="resnet101")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    if args.one:
        height, width = (int(v) for v in args.one.split("x"))
        print(json.dumps(measure(height, width, args.iters, args.threads, args.arch)))
        return
    rows = []
    for size in args.sizes.split(","):
        command = [sys.executable, __file__, "--one", size, "--iters", str(args.iters), "--threads",
                   str(args.threads), "--arch", args.arch]
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

    write_json(RESULTS, {"benchmark": "bench_train", "torch": torch.__version__, "cpu_count": os.cpu_count(),
                         "machine": platform.machine(), "rows": rows})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
