"""The official optimizer's repeats (issue 9): what ``train.sgd=official`` does to the backbone's step.

1. The repeat counts ``dada.optim.official_repeats`` derives from ResNet-101's module nesting (ADVENT's
   ``get_1x_lr_params_no_scale`` lists a tensor once per enclosing module): entries / tensors, and how
   many tensors are listed 1, 3 and 4 times.
2. The per-iteration update of one bottleneck conv (``layer3.5.conv2.weight``, listed 3 times), a
   downsample conv (4 times), ``conv1`` (once) and an ASPP conv (10× group, once) under both settings,
   on the same constant gradient: every weight 1, every gradient 0.01 (so that weight decay, 5e-4·w, is
   5 % of the gradient), momentum 0.9, the paper's lr 2.5e-4 held constant. Reported in units of
   lr·g (the step plain SGD without momentum and decay would take); ``steady`` is iteration 60.

Runs the real optimizers (``dada.optim.build_segmenter_sgd``) on a real ResNet-101 segmenter. Prints a
table and writes ``benchmarks/results/sgd_repeats.json``.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/sgd_repeats.py [--iters 60]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import torch

from dada.models import build_segmenter
from dada.optim import build_segmenter_sgd, official_repeats

RESULTS = Path(__file__).resolve().parent / "results" / "sgd_repeats.json"
LR, MOMENTUM, WEIGHT_DECAY, WEIGHT, GRADIENT = 2.5e-4, 0.9, 5e-4, 1.0, 0.01
TRACKED = {"conv1 (stem)": "backbone.conv1.weight",
           "bottleneck conv": "backbone.layer3.5.conv2.weight",
           "downsample conv": "backbone.layer2.0.downsample.0.weight",
           "ASPP conv (10x)": "layer6.conv2d_list.0.weight"}


def repeat_counts(arch: str) -> dict:
    with torch.device("meta"):
        model = build_segmenter(arch, num_classes=16)
    counts = official_repeats(model.backbone.official_sgd_roots())
    names = {id(p): n for n, p in model.named_parameters()}
    return {"entries": sum(counts.values()), "tensors": len(counts),
            "tensors_by_count": dict(sorted(collections.Counter(counts.values()).items())),
            "count": {label: counts.get(dict(model.named_parameters())[name], 1)
                      for label, name in TRACKED.items()},
            "names": {names[id(p)]: c for p, c in counts.items()}}


def updates(mode: str, iters: int) -> tuple[dict[str, list[float]], float]:
    """Per-iteration update of each tracked tensor (first element), in units of lr·g, and the median
    seconds of one ``optimizer.step()`` on the whole ResNet-101 segmenter."""
    model = build_segmenter("resnet101", num_classes=16)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(WEIGHT)
    optimizer = build_segmenter_sgd(model, LR, MOMENTUM, WEIGHT_DECAY, mode)
    for group in optimizer.param_groups:  # constant lr (no poly decay): the heads at 10·lr
        group["lr"] = LR * group["lr_mult"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps: dict[str, list[float]] = {label: [] for label in TRACKED}
    seconds: list[float] = []
    for _ in range(iters):
        for p in trainable:
            p.grad = torch.full_like(p, GRADIENT)
        before = {label: params[name].detach().flatten()[0].item() for label, name in TRACKED.items()}
        started = time.perf_counter()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
        for label, name in TRACKED.items():
            moved = before[label] - params[name].detach().flatten()[0].item()
            steps[label].append(moved / (LR * GRADIENT * (10 if "10x" in label else 1)))
    return steps, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=60)
    args = parser.parse_args()
    counts = repeat_counts("resnet101")
    print(f"ResNet-101, official 1x group: {counts['entries']} entries for {counts['tensors']} tensors; "
          f"tensors by repeat count: {counts['tensors_by_count']}")
    results = {"repeats": {k: v for k, v in counts.items() if k != "names"},
               "settings": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "weight": WEIGHT,
                            "gradient": GRADIENT, "iters": args.iters},
               "update_in_lr_g": {}, "step_seconds_median": {}}
    for mode in ("official", "standard"):
        results["update_in_lr_g"][mode], results["step_seconds_median"][mode] = updates(mode, args.iters)
    print(f"\nper-iteration update in units of lr·g (constant gradient, w=1, g=0.01, iteration 1 / "
          f"iteration {args.iters})")
    print(f"{'tensor':<18} {'listed':>6} {'official 1st':>13} {'official steady':>16} {'standard 1st':>13} "
          f"{'standard steady':>16} {'ratio steady':>13}")
    for label in TRACKED:
        off, std = results["update_in_lr_g"]["official"][label], results["update_in_lr_g"]["standard"][label]
        print(f"{label:<18} {counts['count'][label]:>6} {off[0]:>13.2f} {off[-1]:>16.2f} {std[0]:>13.2f} "
              f"{std[-1]:>16.2f} {off[-1] / std[-1]:>13.2f}")
    step = results["step_seconds_median"]
    print(f"\noptimizer.step() on ResNet-101 (median of {args.iters}, {torch.get_num_threads()} thread(s)): "
          f"official {step['official']:.3f} s, standard {step['standard']:.3f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
