"""Study: what makes DADA's depth branch learn on the built-in benchmark with an ImageNet EfficientNet-Lite0.

Measured, single seed, short runs; the demo recipe is not changed by this script. The setting of
``/work/shared/reference/demo-calibration.md``: Lite0 with the packaged ImageNet weights, output stride 16,
frozen BN, the DADA segmenter (depth head + feature fusion), source-only training with depth supervision
(seg CE + λ_dep · berHu, eq. 1–4), official SGD (backbone 2.5e-4, heads 10×, momentum 0.9, weight decay
5e-4, poly 0.9), batch 4 at 128×256. Variants (``--variants``):

* ``official``: λ_dep = 1e-3, raw inverse depth target (65536 / (cm + 1), mean ≈ 74), depth = channel mean
  of the encoding (N(0, 0.01) init: starts near 0);
* ``bias``: the same plus a learnable output bias initialised to the mean source inverse depth;
* ``norm``: the target divided by the mean source inverse depth (≈ 1), output bias initialised to 1;
* ``norm_lam0.1`` / ``norm_lam1``: ``norm`` with λ_dep = 0.1 / 1;
* ``warmup``: ``norm_lam1`` after ``--warmup`` iterations that train the depth loss alone.

Reported per variant: berHu (in raw inverse-depth units) over the first and last 20 iterations, the mean
predicted inverse depth, source-val depth AbsRel / δ<1.25 (``DepthMetrics``, as ``results.json``), source-val
and target-val mIoU, seconds per iteration. Prints a table, writes
``benchmarks/results/study_depth_branch.json``.

    .venv/bin/python benchmarks/study_depth_branch.py [--iters 300] [--variants official,bias,norm]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dada import losses
from dada.benchmark import ensure_benchmark
from dada.data import build_dataset
from dada.evaluation.metrics import ConfusionMatrix, DepthMetrics
from dada.models import build_segmenter
from dada.models.backbones.efficientnet_lite import read_imagenet_lite

RESULTS = Path(__file__).resolve().parent / "results" / "study_depth_branch.json"
SIZE = (128, 256)
VARIANTS = {
    "official": {"lambda_depth": 1e-3, "normalise": False, "bias": False, "warmup": False},
    "bias": {"lambda_depth": 1e-3, "normalise": False, "bias": True, "warmup": False},
    "norm": {"lambda_depth": 1e-3, "normalise": True, "bias": True, "warmup": False},
    "norm_lam0.1": {"lambda_depth": 0.1, "normalise": True, "bias": True, "warmup": False},
    "norm_lam1": {"lambda_depth": 1.0, "normalise": True, "bias": True, "warmup": False},
    "warmup": {"lambda_depth": 1.0, "normalise": True, "bias": True, "warmup": True},
}


def load_split(root: Path, name: str, split: str, depth: bool) -> dict[str, torch.Tensor]:
    dataset = build_dataset(name, root, split=split, num_classes=16, size=SIZE, depth=depth,
                            preprocess="lite")
    items = [dataset[i] for i in range(len(dataset))]
    out = {"image": torch.stack([item["image"] for item in items]),
           "label": torch.stack([item["label"] for item in items])}
    if depth:
        out["depth"] = torch.stack([item["depth"] for item in items])
    return out


class DepthOutput(torch.nn.Module):
    """The studied change: predicted inverse depth = segmenter depth + a learnable bias (in target units)."""

    def __init__(self, bias: float):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        return depth + self.bias


def poly(base: float, iteration: int, max_iters: int) -> float:
    return base * (1 - iteration / max_iters) ** 0.9


def run_variant(name: str, spec: dict, data: dict, args) -> dict:
    torch.manual_seed(0)
    model = build_segmenter(arch="efficientnet_lite0", num_classes=16, depth_head=True, feature_fusion=True,
                            bn_mode="frozen", output_stride=16)
    model.backbone.load_pretrained(read_imagenet_lite("efficientnet_lite0"))
    mean_inverse = float(data["source"]["depth"].mean())
    scale = mean_inverse if spec["normalise"] else 1.0  # target units = raw inverse depth / scale
    head = DepthOutput(mean_inverse / scale if spec["bias"] else 0.0)
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    in_backbone = {id(p) for p in backbone_params}
    head_params = [p for p in model.parameters() if p.requires_grad and id(p) not in in_backbone]
    head_params += [head.bias] if spec["bias"] else []
    optimizer = torch.optim.SGD([{"params": backbone_params, "lr": 2.5e-4, "base": 2.5e-4},
                                 {"params": head_params, "lr": 2.5e-3, "base": 2.5e-3}],
                                momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    source = data["source"]
    berhu_raw, times = [], []
    model.train()
    for iteration in range(args.iters):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = poly(group["base"], iteration, args.iters)
        index = torch.randint(0, len(source["image"]), (args.batch,), generator=generator)
        images, labels, target = source["image"][index], source["label"][index], source["depth"][index]
        optimizer.zero_grad(set_to_none=True)
        out = model(images)
        seg = F.interpolate(out.seg, size=SIZE, mode="bilinear", align_corners=True)
        depth = head(F.interpolate(out.depth, size=SIZE, mode="bilinear", align_corners=True))
        depth_loss = losses.berhu(depth, target / scale)
        warming = spec["warmup"] and iteration < args.warmup
        loss = spec["lambda_depth"] * depth_loss if warming else (
            losses.seg_ce(seg, labels) + spec["lambda_depth"] * depth_loss)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        berhu_raw.append(depth_loss.item() * scale)
    metrics = evaluate(model, head, scale, data)
    first, last = berhu_raw[:20], berhu_raw[-20:]
    return {"variant": name, **spec, "iters": args.iters, "berhu_first20": statistics.mean(first),
            "berhu_last20": statistics.mean(last), "median_s_per_iter": statistics.median(times),
            "mean_inverse_depth_target": mean_inverse, **metrics}


@torch.no_grad()
def evaluate(model, head, scale: float, data: dict) -> dict:
    model.eval()
    depth_metrics, source_cm, target_cm = DepthMetrics(), ConfusionMatrix(16), ConfusionMatrix(16)
    predicted_means = []
    for split, cm in (("source_val", source_cm), ("target_val", target_cm)):
        part = data[split]
        for start in range(0, len(part["image"]), 16):
            out = model(part["image"][start:start + 16])
            seg = F.interpolate(out.seg, size=SIZE, mode="bilinear", align_corners=True)
            cm.update(seg.argmax(1), part["label"][start:start + 16])
            if split == "source_val":
                depth = head(F.interpolate(out.depth, size=SIZE, mode="bilinear", align_corners=True)) * scale
                depth_metrics.update(depth, part["depth"][start:start + 16])
                predicted_means.append(float(depth.mean()))
    quality = depth_metrics.compute()
    return {"abs_rel": quality["abs_rel"], "delta1": quality["delta1"],
            "mean_predicted_inverse_depth": statistics.mean(predicted_means),
            "source_val_miou": 100 * source_cm.miou(), "target_val_miou": 100 * target_cm.miou()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = ensure_benchmark()
    data = {"source": load_split(root / "source", "synthia", "train", depth=True),
            "source_val": load_split(root / "source", "synthia", "val", depth=True),
            "target_val": load_split(root / "target", "cityscapes", "val", depth=False)}
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants.split(","):
        rows.append(run_variant(name, VARIANTS[name], data, args))
        row = rows[-1]
        print(f"{name:<12} berHu {row['berhu_first20']:7.1f} -> {row['berhu_last20']:7.1f}  "
              f"mean inv depth {row['mean_predicted_inverse_depth']:7.2f} (target "
              f"{row['mean_inverse_depth_target']:.1f})  AbsRel {row['abs_rel']:6.3f}  "
              f"d1 {100 * row['delta1']:5.1f}%  mIoU src {row['source_val_miou']:5.1f} "
              f"trg {row['target_val_miou']:5.1f}  {row['median_s_per_iter']:.2f} s/it", flush=True)
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"iters": args.iters, "batch": args.batch, "threads": args.threads,
                                   "load_average": os.getloadavg()[0], "rows": rows}, indent=2))
        tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
