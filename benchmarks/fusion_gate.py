"""The fusion gate's starting scale: what ``model.fusion_scale`` compensates (docs/models.md).

With feature fusion the classifier sees ``f ⊙ ReLU(dec4(enc))``; ``dec4`` starts from the official
N(0, 0.01) init. For a setting's model (its backbone, weights, stride, BN mode), this measures, at
initialisation, on the first ``--images`` source training images: the mean of the backbone features
``|f|``, the mean of the gate ``ReLU(dec4(enc))`` with the official gate (fusion_scale null), the share of
gate entries that are 0, and ``1 / mean gate``, the factor that starts the gate near 1. One row per init
seed; prints a table and writes ``benchmarks/results/fusion_gate.json``.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/fusion_gate.py [--setting benchmark_lite0]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from dada.config import load_config
from dada.engine.data import build_part
from dada.models import build_segmenter
from dada.models.loading import load_pretrained

RESULTS = Path(__file__).resolve().parent / "results" / "fusion_gate.json"


def measure(setting: str, images: int, seeds: int) -> dict:
    cfg = load_config(f"{setting}_s7", ["model.fusion_scale=null"])
    dataset = build_part(cfg, "source")
    batch = torch.stack([torch.as_tensor(dataset[i]["image"]) for i in range(min(images, len(dataset)))])
    rows = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = build_segmenter(arch=cfg.model.arch, num_classes=cfg.model.num_classes, depth_head=True,
                                feature_fusion=True, bn_mode=cfg.model.bn_mode,
                                output_stride=cfg.model.output_stride, depth_scale=cfg.model.depth_scale)
        if cfg.model.pretrained not in (None, "none"):
            load_pretrained(model, cfg.model.pretrained, cfg.model.pretrained_kind)
        model.eval()
        with torch.no_grad():
            features = model.backbone(batch)
            gate = F.relu(model.dec4(model.encode(features)))
        rows.append({"seed": seed, "feature_abs_mean": features.abs().mean().item(),
                     "gate_mean": gate.mean().item(), "gate_zero_share": (gate == 0).float().mean().item(),
                     "inverse_gate_mean": 1.0 / gate.mean().item()})
    return {"setting": setting, "arch": cfg.model.arch, "pretrained": cfg.model.pretrained,
            "images": int(batch.shape[0]), "size": list(batch.shape[-2:]), "rows": rows,
            "median_inverse_gate_mean": statistics.median(r["inverse_gate_mean"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", default="benchmark_lite0")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.setting, args.images, args.seeds)
    print(f"{result['setting']} ({result['arch']}, weights {result['pretrained']}), "
          f"{result['images']} source images of {result['size'][0]}x{result['size'][1]}")
    print(f"{'init seed':>9}  {'|f| mean':>9}  {'gate mean':>9}  {'gate = 0':>8}  {'1/gate mean':>11}")
    for r in result["rows"]:
        print(f"{r['seed']:>9}  {r['feature_abs_mean']:>9.4f}  {r['gate_mean']:>9.4f}  "
              f"{100 * r['gate_zero_share']:>7.1f}%  {r['inverse_gate_mean']:>11.1f}")
    print(f"median 1/gate mean: {result['median_inverse_gate_mean']:.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
