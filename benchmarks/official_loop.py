"""Our DADA/AdvEnt step against the official loop on the real ResNet-101 layout (issue 24 §1).

Runs ``Trainer.train_step`` and the official iteration re-stated on the official modules
(``tests/official_loop.py``) side by side from the same random official-layout weights, on the same
tensors (source 1×3×64×128 with labels and depth, target 1×3×64×96), and prints per iteration the largest
relative difference of the gradients, the updates and the discriminator — in float64 (the logic: any
real difference of the step) and in float32 (the paper's precision) — plus the conditioning probe that
explains float32's drift: how much a 1e-7 relative random change of the weights moves each gradient.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/official_loop.py --iters 5
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dada import losses  # noqa: E402
from dada.config import load_config  # noqa: E402
from dada.engine import Trainer  # noqa: E402
from dada.methods.base import forward_upsampled  # noqa: E402
from dada.models.official import export  # noqa: E402
from official_loop import OfficialDADA, OfficialLoop, compare_with_official  # noqa: E402


def batches(n: int, dtype: torch.dtype):
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        label = torch.randint(0, 16, (1, 64, 128), generator=g)
        out.append(({"image": (torch.randn(1, 3, 64, 128, generator=g) * 50).to(dtype), "label": label,
                     "depth": (torch.rand(1, 1, 64, 128, generator=g) * 60 + 1).to(dtype)},
                    {"image": (torch.randn(1, 3, 64, 96, generator=g) * 50).to(dtype)}))
    return out


def pair(method: str, dtype: torch.dtype, arch: str = "resnet101"):
    torch.manual_seed(0)
    cfg = load_config(f"synthia2cityscapes_{method}", [f"model.arch={arch}", "model.pretrained=none",
                                                      "train.device=cpu", "train.max_iters=10"])
    trainer = Trainer(cfg)
    trainer.model.to(dtype)
    trainer.discriminator.to(dtype)
    model = OfficialDADA(depth=method == "dada").to(dtype)
    model.load_state_dict(export(trainer.model.state_dict(), "segmenter"))
    return trainer, OfficialLoop(model, copy.deepcopy(trainer.discriminator), dada=method == "dada")


def conditioning(trainer: Trainer, source: dict, scale: float = 1e-7) -> dict[str, float]:
    """Relative change of the source-loss gradient (CE + berHu) when every weight is multiplied by
    (1 + scale·N(0, 1)): large values mean float32 rounding is amplified into the gradient."""
    def grads(model):
        model.zero_grad()
        seg, depth = forward_upsampled(model, source["image"])
        loss = losses.seg_ce(seg, source["label"])
        if depth is not None:
            loss = loss + 1e-3 * losses.berhu(depth, source["depth"])
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    perturbed = copy.deepcopy(trainer.model)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.mul_(1 + scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    a, b = grads(trainer.model), grads(perturbed)
    rel = {n: float((a[n] - b[n]).norm() / a[n].norm().clamp_min(1e-30)) for n in a}
    return {"max": max(rel.values()), "at": max(rel, key=rel.get),
            "enc4_1.weight": rel.get("enc4_1.weight"), "layer6.conv2d_list.0.weight":
            rel.get("layer6.conv2d_list.0.weight")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--arch", default="resnet101")
    parser.add_argument("--out", default="benchmarks/results/official_loop.json")
    args = parser.parse_args()
    results = {"arch": args.arch, "iters": args.iters, "torch": torch.__version__, "runs": []}
    print(f"{'method':7} {'dtype':8} {'it':>2} {'grad':>9} {'update':>9} {'D':>9}  worst gradient at")
    for dtype in (torch.float64, torch.float32):
        for method in ("dada", "advent"):
            trainer, official = pair(method, dtype, args.arch)
            rows = compare_with_official(trainer, official, batches(args.iters, dtype))
            for row in rows:
                print(f"{method:7} {str(dtype)[6:]:8} {row['iteration']:2d} {row['grad']:9.2e} "
                      f"{row['update']:9.2e} {row['discriminator']:9.2e}  {row['grad_at']}", flush=True)
            probe = conditioning(trainer, batches(args.iters + 1, dtype)[-1][0]) if dtype == torch.float32 \
                else None
            if probe:
                print(f"{method:7} float32 conditioning after {args.iters} iterations: a 1e-7 weight change "
                      f"moves the gradients by up to {probe['max']:.1e} ({probe['at']})", flush=True)
            results["runs"].append({"method": method, "dtype": str(dtype), "rows": rows,
                                    "conditioning": probe})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
