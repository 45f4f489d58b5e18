"""Cost of the evaluation's per-image work at the official Cityscapes resolution, one CPU thread.

For one image of the official protocol (16-class logits at stride 8 of a 512×1024 input, i.e. 65×129,
compared with a 1024×2048 label): the bilinear ``align_corners=True`` upsampling + argmax, the
``ConfusionMatrix.update`` (torch ``bincount``) against the official numpy ``fast_hist``, and the full
``SegmentationEvaluator.process`` with depth ranges. Median of several runs. Prints a table and writes
``benchmarks/results/bench_eval.json`` (on a CUDA machine, also the same steps on the GPU).

    .venv/bin/python benchmarks/bench_eval.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dada.evaluation import ConfusionMatrix  # noqa: E402
from dada.evaluation.evaluator import SegmentationEvaluator  # noqa: E402
from dada.io import write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_eval.json"
LABEL_HW = (1024, 2048)
LOGIT_HW = (65, 129)


def fast_hist(gt, pred, n):  # ADVENT advent/utils/func.py
    k = (gt >= 0) & (gt < n)
    return np.bincount(n * gt[k].astype(int) + pred[k], minlength=n ** 2).reshape(n, n)


def timed(function, runs: int, sync=lambda: None) -> float:
    function()  # warm-up
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(device: torch.device, runs: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 16, *LOGIT_HW, generator=generator).to(device)
    label = torch.randint(0, 16, LABEL_HW, generator=generator)
    label[torch.rand(LABEL_HW, generator=generator) < 0.1] = 255
    label = label.to(device)
    disparity = (torch.rand(1, *LABEL_HW, generator=generator) * 80).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pred = F.interpolate(logits, size=LABEL_HW, mode="bilinear", align_corners=True).argmax(1)[0]
    rows = []

    def upsample_argmax():
        F.interpolate(logits, size=LABEL_HW, mode="bilinear", align_corners=True).argmax(1)

    rows.append({"step": "upsample + argmax", "seconds": timed(upsample_argmax, runs, sync)})
    matrix = ConfusionMatrix(16)
    rows.append({"step": "ConfusionMatrix.update (torch bincount)",
                 "seconds": timed(lambda: matrix.update(pred, label), runs, sync)})
    if device.type == "cpu":
        pred_np, label_np = pred.numpy().ravel(), label.numpy().ravel()
        rows.append({"step": "official fast_hist (numpy)",
                     "seconds": timed(lambda: fast_hist(label_np, pred_np, 16), runs)})
    evaluator = SegmentationEvaluator(16)
    item = {"label": label, "depth": disparity, "name": "x"}
    rows.append({"step": "SegmentationEvaluator.process (all of the above + depth ranges)",
                 "seconds": timed(lambda: evaluator.process([item], logits, None), runs, sync)})
    for row in rows:
        row["device"] = str(device)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = measure(torch.device("cpu"), args.runs)
    if torch.cuda.is_available():
        rows += measure(torch.device("cuda"), args.runs)
    print(f"{'device':<6} {'step':<66} {'ms':>8}")
    for row in rows:
        print(f"{row['device']:<6} {row['step']:<66} {1000 * row['seconds']:8.1f}")
    write_json(RESULTS, {"label_hw": LABEL_HW, "logit_hw": LOGIT_HW, "runs": args.runs, "threads": 1,
                         "machine": platform.platform(), "processor": platform.processor(),
                         "torch": torch.__version__, "rows": rows})
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
