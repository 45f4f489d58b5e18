"""Does a training step on the GPU compute what it computes on the CPU? (needs CUDA)

For each method, two trainers of the same preset are built, one on the CPU and one on the GPU, with the
GPU one given the CPU one's weights (segmenter, discriminators, a teacher: ``Trainer.state``); both then
take ``--steps`` steps on the same random batches. TF32 is switched off for the comparison (PyTorch
lets cuDNN use it for fp32 convolutions by default), so both sides compute in fp32 and only the order
of the sums differs. Printed and written to JSON: every step's losses on both sides, their largest
relative difference, and the largest parameter difference after the last step. A method whose step
draws random numbers on the device (DACS's ClassMix, dast) draws the same numbers only if it draws them
from a CPU generator; the JSON says which losses differ.

    python benchmarks/cuda_parity.py --methods dada,dacs,dast --arch tiny --size 128x256 --out parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def batches(size, num_classes: int, steps: int):
    import torch

    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(steps):
        source = {"image": torch.randn(1, 3, *size, generator=g) * 50,
                  "label": torch.randint(0, num_classes, (1, *size), generator=g),
                  "depth": torch.rand(1, 1, *size, generator=g) * 30 + 0.1}
        out.append((source, {"image": torch.randn(1, 3, *size, generator=g) * 50}))
    return out


def compare(method: str, setting: str, arch: str, size, steps: int) -> dict:
    import torch

    from dada.config import load_config
    from dada.engine import Trainer

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    overrides = [f"model.arch={arch}", "model.pretrained=none", "train.progress=false",
                 f"data.source.size=[{size[0]},{size[1]}]", f"data.target.size=[{size[0]},{size[1]}]"]
    trainers = {}
    for device in ("cpu", "cuda"):
        trainers[device] = Trainer(load_config(f"{setting}_{method}", [*overrides, f"train.device={device}"]))
    trainers["cuda"].load_state(trainers["cpu"].state())
    data = batches(size, trainers["cpu"].cfg.model.num_classes, steps)
    losses = {device: [] for device in trainers}
    for device, trainer in trainers.items():
        torch.manual_seed(0)  # the same global stream on both sides for methods that draw from it
        for source, target in data:
            losses[device].append(trainer.train_step(source, target))
    worst = {}
    for cpu_step, gpu_step in zip(losses["cpu"], losses["cuda"], strict=True):
        for key, value in cpu_step.items():
            other = gpu_step.get(key)
            if other is None or not isinstance(value, float):
                continue
            rel = abs(value - other) / max(abs(value), 1e-8)
            worst[key] = max(worst.get(key, 0.0), rel)
    cpu_params = dict(trainers["cpu"].model.named_parameters())
    param_diff = max((p.detach().cpu() - cpu_params[name].detach()).abs().max().item()
                     for name, p in trainers["cuda"].model.named_parameters())
    return {"method": method, "setting": setting, "arch": arch, "size": list(size), "steps": steps,
            "losses": losses, "max_relative_loss_difference": worst,
            "max_parameter_difference": param_diff,
            "device": torch.cuda.get_device_name(), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="source_only,advent,dada,dacs,dast")
    parser.add_argument("--setting", default="synthia2cityscapes")
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--size", default="128x256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("cuda_parity.py compares the CPU with a GPU: no CUDA device is visible here")
    size = tuple(int(v) for v in args.size.split("x"))
    rows = []
    for method in args.methods.split(","):
        try:
            rows.append(compare(method, args.setting, args.arch, size, args.steps))
        except Exception as error:  # report and go on: one method's failure must not hide the others'
            rows.append({"method": method, "error": f"{type(error).__name__}: {error}"})
        row = rows[-1]
        if "error" in row:
            print(f"{method:<12} ERROR {row['error']}")
        else:
            worst = ", ".join(f"{k} {v:.1e}" for k, v in row["max_relative_loss_difference"].items())
            print(f"{method:<12} max |Δloss|/loss: {worst}; "
                  f"max |Δparam| {row['max_parameter_difference']:.1e}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    sys.exit(1 if any("error" in r for r in rows) else 0)


if __name__ == "__main__":
    main()
