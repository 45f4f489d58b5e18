"""Is there a domain gap in the built-in benchmark? Source-only vs target-trained (oracle) mIoU on target val.

    .venv/bin/python benchmarks/benchmark_gap.py                    # default benchmark, 4 min per model
    .venv/bin/python benchmarks/benchmark_gap.py --minutes 1 --root /tmp/bench

Trains the same small segmenter (a 0.33 M-parameter encoder-decoder defined here, from scratch, Adam; the
DeepLab "tiny" variant's dilated convolutions are too slow on a shared 2-core CPU for a few-minute check)
for the same number of iterations twice: once on the source train split (SYNTHIA-like labels), once on
the target train split (Cityscapes-like labels, which a real adaptation method never sees), and evaluates
both on the target val split over the 16 classes (and the source model on the source val split). Images
and labels are resized to ``--size`` (default 64×128, half the benchmark's) to keep it to minutes.
Prints a table and writes benchmarks/results/benchmark_gap.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dada.benchmark import ensure_benchmark
from dada.data import build_dataset
from dada.data.classes import CLASSES_16

RESULTS = Path(__file__).resolve().parent / "results" / "benchmark_gap.json"


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class MiniSeg(nn.Module):
    """Three stride-2 stages, a skip connection at stride 4, logits upsampled to the input size."""

    def __init__(self, num_classes: int = 16):
        super().__init__()
        self.e1 = nn.Sequential(_cbr(3, 24, 2), _cbr(24, 24))
        self.e2 = nn.Sequential(_cbr(24, 48, 2), _cbr(48, 48))
        self.e3 = nn.Sequential(_cbr(48, 96, 2), _cbr(96, 96), _cbr(96, 96))
        self.head = nn.Sequential(_cbr(96 + 48, 64), nn.Conv2d(64, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.e2(self.e1(x))
        c = F.interpolate(self.e3(b), size=b.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([c, b], 1))


def _loader(dataset, batch: int, shuffle: bool, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle,
        drop_last=shuffle,
        generator=g,
        collate_fn=lambda items: items,
    )


def _stack(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([i["image"] for i in items]), torch.stack([i["label"] for i in items])


def _logits(model, images: torch.Tensor) -> torch.Tensor:
    return F.interpolate(model(images), size=images.shape[-2:], mode="bilinear", align_corners=True)


def train(
    dataset, iters: int, minutes: float, seed: int, batch: int, lr: float
) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = MiniSeg(16)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    start, it, losses = time.perf_counter(), 0, []
    while it < iters and time.perf_counter() - start < minutes * 60:
        for items in _loader(dataset, batch, True, seed + it):
            images, labels = _stack(items)
            loss = F.cross_entropy(_logits(model, images), labels, ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            it += 1
            for group in opt.param_groups:  # poly decay over the iteration budget
                group["lr"] = lr * (1 - min(it, iters - 1) / iters) ** 0.9
            if it >= iters or time.perf_counter() - start >= minutes * 60:
                break
    model.eval()
    return model, {
        "iterations": it,
        "seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
    }


@torch.no_grad()
def evaluate(model, dataset, batch: int = 16) -> dict:
    conf = torch.zeros(16, 16, dtype=torch.int64)
    for items in _loader(dataset, batch, False, 0):
        images, labels = _stack(items)
        pred = _logits(model, images).argmax(1)
        keep = labels != 255
        conf += torch.bincount(labels[keep] * 16 + pred[keep], minlength=256).reshape(16, 16)
    inter = conf.diag().double()
    union = conf.sum(0).double() + conf.sum(1).double() - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))
    return {
        "miou": float(np.nanmean(iou.numpy())),
        "iou": [round(float(v), 4) for v in iou],
        "pixel_accuracy": float(inter.sum() / conf.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="a generated benchmark (default: ensure_benchmark() defaults)")
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget per model")
    ap.add_argument("--iters", type=int, default=3000, help="iteration cap per model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, nargs=2, default=[64, 128], metavar=("H", "W"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = args.root or ensure_benchmark()
    size = tuple(args.size)
    source = build_dataset("synthia", root / "source", "train", 16, size)
    source_val = build_dataset("synthia", root / "source", "val", 16, size)
    target = build_dataset("cityscapes", root / "target", "train", 16, size)
    target_val = build_dataset("cityscapes", root / "target", "val", 16, size)
    print(
        f"benchmark {root}: source train {len(source)}, source val {len(source_val)}, target train "
        f"{len(target)}, target val {len(target_val)}"
    )
    rows = {}
    src_model, src_info = train(source, args.iters, args.minutes, args.seed, args.batch, args.lr)
    print(f"source-only: {src_info}")
    # the oracle gets exactly as many iterations as the source model managed
    tgt_model, tgt_info = train(
        target, src_info["iterations"], args.minutes * 2, args.seed, args.batch, args.lr
    )
    print(f"target-trained: {tgt_info}")
    rows["source-only"] = {
        **src_info,
        "target_val": evaluate(src_model, target_val),
        "source_val": evaluate(src_model, source_val),
    }
    rows["target-trained (oracle)"] = {**tgt_info, "target_val": evaluate(tgt_model, target_val)}
    names = CLASSES_16.names
    print(
        f"\n{'model':<26}{'iters':>6}{'tgt-val mIoU':>14}{'src-val mIoU':>14}  "
        + " ".join(n[:5] for n in names)
    )
    for name, r in rows.items():
        sv = r.get("source_val", {}).get("miou")
        per = " ".join(f"{100 * v:5.1f}" if v == v else "  n/a" for v in r["target_val"]["iou"])
        print(
            f"{name:<26}{r['iterations']:>6}{100 * r['target_val']['miou']:>14.1f}"
            f"{(f'{100 * sv:.1f}' if sv is not None else '-'):>14}  {per}"
        )
    gap = rows["target-trained (oracle)"]["target_val"]["miou"] - rows["source-only"]["target_val"]["miou"]
    print(f"gap (oracle - source-only) on target val: {100 * gap:.1f} mIoU points")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": str(root),
                "args": {k: str(v) for k, v in vars(args).items()},
                "classes": list(names),
                "results": rows,
                "gap_miou": gap,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
