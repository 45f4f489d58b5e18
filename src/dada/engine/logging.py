"""What a run shows: a progress bar, ``metrics.jsonl`` (no TensorBoard needed) and TensorBoard.

Scalars (every loss, the learning rates, the iteration time) every ``train.log_every`` iterations;
images every ``train.image_every``: source and target inputs, predictions and predicted depth, and the
images the method adds (``Method.log_images``). On resume, records after the
checkpoint are dropped from both ``metrics.jsonl`` and TensorBoard, so the logs match the weights; a
partial last line (what a full disk or a power loss leaves) is dropped too. The running means in
progress at a checkpoint are saved in it (:meth:`TrainLogger.running_state`), so the means logged after a
resume cover the same iterations as in an uninterrupted run.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from dada.io import append_line, write_text

STAT = "stat/"  # running-mean keys of a method's extra scalars


class TrainLogger:
    def __init__(self, run_dir: Path, cfg: DictConfig, start: int, running: dict | None = None):
        self.run_dir, self.cfg = Path(run_dir), cfg
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._truncate_metrics(start)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start if start > 0 else None)
        self.running: dict[str, list[float]] = defaultdict(list)
        for name, values in (running or {}).items():
            self.running[name] = [float(v) for v in values]
        self.bar = None
        if cfg.train.progress:  # a live bar in a terminal, a line every few seconds in a file or a pipe
            from dada.io import progress_bar

            self.bar = progress_bar(total=cfg.train.max_iters, initial=start, desc=cfg.preset or "train",
                                    dynamic_ncols=True, smoothing=0.05)

    def _truncate_metrics(self, start: int) -> None:
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a partial line of an interrupted write: dropped
                continue
            if (isinstance(record, dict) and record.get("iteration", 0) < start
                    and record.get("kind") != "final"):
                kept.append(line)
        write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def running_state(self) -> dict[str, list[float]]:
        """The values of the means in progress (saved in checkpoints)."""
        return {name: list(values) for name, values in self.running.items()}

    def wants_images(self, iteration: int) -> bool:
        every = self.cfg.train.image_every
        return every > 0 and (iteration + 1) % every == 0

    def step(self, iteration: int, losses: dict[str, float], lrs: dict[str, float], seconds: float,
             stats: dict[str, float] | None = None) -> None:
        """Record iteration ``iteration`` (0-based); flush means every ``log_every`` iterations. ``stats``:
        a method's extra scalars (``Method.log_scalars``, e.g. the pseudo-label weight), logged as
        ``stats`` beside ``loss``."""
        for name, value in losses.items():
            self.running[name].append(value)
        for name, value in (stats or {}).items():
            self.running[STAT + name].append(float(value))
        self.running["time"].append(seconds)
        if self.bar is not None:
            self.bar.update(1)
        every, last = self.cfg.train.log_every, iteration + 1 == self.cfg.train.max_iters
        if every <= 0 or ((iteration + 1) % every and not last):
            return
        means = {name: float(np.mean(values)) for name, values in self.running.items()}
        self.running.clear()
        seconds_per_iter = means.pop("time")
        stats = {name[len(STAT):]: means.pop(name) for name in list(means) if name.startswith(STAT)}
        record = {"iteration": iteration, "loss": means, "lr": lrs, "seconds_per_iter": seconds_per_iter}
        if stats:
            record["stats"] = stats
            for name, value in stats.items():
                self.tb.add_scalar(f"stats/{name}", value, iteration)
        self.write({"kind": "train", **record})
        for name, value in means.items():
            self.tb.add_scalar(f"loss/{name}", value, iteration)
        for name, value in lrs.items():
            self.tb.add_scalar(f"lr/{name}", value, iteration)
        self.tb.add_scalar("time/seconds_per_iter", seconds_per_iter, iteration)
        if self.bar is not None:
            self.bar.set_postfix({name: f"{value:.3g}" for name, value in means.items()}, refresh=False)

    def write(self, record: dict[str, Any]) -> None:
        """One JSON line; a non-finite number (an evaluation of no image, a statistic not yet defined) is
        written as ``null``, so every line is valid JSON (``read_metrics`` gives NaN back)."""
        append_line(self.metrics_path, json.dumps(finite_or_none(record), allow_nan=False))

    def evaluation(self, iteration: int, miou: float, extra: dict[str, Any]) -> None:
        self.write({"kind": "eval", "iteration": iteration, "miou": miou, **extra})
        if not math.isnan(miou):
            self.tb.add_scalar("val/miou", miou, iteration)
        if self.bar is not None:
            self.bar.write(f"iteration {iteration + 1}: val mIoU {100 * miou:.2f}")

    def images(self, iteration: int, outputs: dict[str, torch.Tensor], num_classes: int,
               preprocess: str, extra: dict | None = None) -> None:
        """The first item of each batch: inputs, predictions and depth; then the method's own images
        (``Method.log_images``: AdvEnt's self-information and DADA's depth-aware maps, a self-training
        method's mixed image, its label, mask and pseudo-label weight)."""
        from dada.data import class_set, denormalize

        palette = class_set(num_classes).colorize
        for domain in ("source", "target"):
            image, seg, depth = (outputs.get(f"{k}_{domain}") for k in ("image", "seg", "depth"))
            if image is None or seg is None:
                continue
            self.tb.add_image(f"{domain}/image", denormalize(image[0], preprocess), iteration,
                              dataformats="HWC")
            prediction = seg[0].argmax(0).cpu().numpy()
            self.tb.add_image(f"{domain}/prediction", palette(prediction), iteration, dataformats="HWC")
            if depth is not None:
                self.tb.add_image(f"{domain}/depth", _gray(depth[0, 0]), iteration, dataformats="HW")
        for tag, picture in (extra or {}).items():
            array = picture.detach().float().cpu().numpy() if isinstance(picture, torch.Tensor) else picture
            if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
                array = array.transpose(1, 2, 0)  # CHW -> HWC
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            self.tb.add_image(tag, array, iteration, dataformats="HW" if array.ndim == 2 else "HWC")

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()
        if self.bar is not None:
            self.bar.close()


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def _gray(values: torch.Tensor) -> np.ndarray:
    """A map scaled to [0, 1] for display (min–max per image)."""
    array = values.detach().float().cpu().numpy()
    low, high = np.nanmin(array), np.nanmax(array)
    return (array - low) / (high - low) if high > low else np.zeros_like(array)
