"""Evaluating a segmenter on a labelled dataset, with the official protocol as the default.

``evaluate_segmenter`` runs the model in eval mode, upsamples the logits bilinearly with
``align_corners=True`` to each label's full resolution (the official ``nn.Upsample``), takes the argmax
and accumulates the confusion matrix on the device; per-image confusion counts give the per-image mIoU
(for the negative transfer rate), the item's ``depth`` (target disparity) splits pixels into depth
ranges, and the model's depth head is scored against the ground-truth inverse depth when the items carry
it (source validation images). Predictions are streamed: only the ``keep`` images' maps stay in memory
(for figures).

The evaluator follows detectron2's ``reset / process / evaluate``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dada.errors import DadaError
from dada.evaluation.metrics import (
    DEFAULT_DEPTH_BINS,
    SYNTHIA_METRES_PER_INVERSE_UNIT,
    ConfusionMatrix,
    DepthMetrics,
    confusion_counts,
    depth_range_index,
    depth_range_names,
    disparity_to_metres,
    iou_from_confusion,
    nanmean,
)
from dada.models.segmenter import upsample

PROTOCOL = {
    "upsampling": "logits bilinear, align_corners=True, to each label's full resolution (official)",
    "ignore_index": 255,
    "miou": "nanmean of per-class IoU over the whole set's confusion matrix (official)",
    "per_image_miou": "mean IoU over the classes present in the image's GT or prediction (labelled pixels)",
    "test_time_augmentation": "none (official)",
}


@dataclasses.dataclass
class EvalResult:
    """Every figure of one evaluation; fractions in [0, 1] (reports show %). JSON-serialisable via
    :meth:`to_dict` / :meth:`from_dict` (NaN is stored as null)."""

    num_classes: int
    class_names: list[str]
    iou: list[float]
    miou: float
    miou13: float | None
    pixel_accuracy: float
    confusion: list[list[int]]
    num_images: int
    per_image: list[dict] = dataclasses.field(default_factory=list)  # {"name", "miou"}
    depth_ranges: dict | None = None  # {"bins_m", "names", "ranges": {name: {iou, miou, pixels}}}
    depth_quality: dict | None = None  # {"abs_rel", "rmse", "delta1", "pixels", ...}
    protocol: dict = dataclasses.field(default_factory=lambda: dict(PROTOCOL))
    # the merge of the model's classes into the labels' (classmap.ClassMap.describe), None when the same
    class_map: dict | None = None
    # predictions of the images asked for with keep= (not serialised)
    kept: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "kept"}
        return nan_to_none(data)

    @classmethod
    def from_dict(cls, data: dict) -> EvalResult:
        data = _none_to_nan(dict(data), ("iou", "miou", "pixel_accuracy"))
        names = {f.name for f in dataclasses.fields(cls)} - {"kept"}
        return cls(**{k: v for k, v in data.items() if k in names})

    def per_image_map(self) -> dict[str, float]:
        return {row["name"]: (float("nan") if row["miou"] is None else row["miou"]) for row in self.per_image}


def nan_to_none(value: Any) -> Any:
    """NaN → None recursively (JSON null), numpy scalars → Python, tuples → lists."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, np.generic):
        return nan_to_none(value.item())
    return value


def _none_to_nan(data: dict, keys: Sequence[str]) -> dict:
    for key in keys:
        value = data.get(key)
        if value is None:
            data[key] = float("nan")
        elif isinstance(value, list):
            data[key] = [float("nan") if v is None else v for v in value]
    return data


def model_outputs(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(seg logits, depth or None)`` of a segmenter (an object with ``.seg`` / ``.depth``, a tuple, or
    a plain logits tensor)."""
    out = model(images)
    if isinstance(out, torch.Tensor):
        return out, None
    if hasattr(out, "seg"):
        return out.seg, getattr(out, "depth", None)
    if isinstance(out, (tuple, list)):
        return out[0], (out[1] if len(out) > 1 else None)
    raise TypeError(f"the model returned {type(out).__name__}; expected an object with .seg and .depth")


class SegmentationEvaluator:
    """Accumulates one evaluation; ``reset()``, ``process(items, seg_logits, depth)`` per batch,
    ``evaluate()`` → :class:`EvalResult`.

    ``depth_bins``: bin edges in metres for IoU by depth range, from the items' ``depth`` (target
    disparity, Cityscapes convention, converted with :func:`disparity_to_metres`); ``None`` switches it
    off. ``keep``: item names whose prediction (uint8 class
    map, and depth map) is kept for figures. ``class_map`` (:class:`~dada.evaluation.classmap.ClassMap`):
    the model predicts its source classes and each prediction is merged into the ``num_classes`` label
    classes before scoring.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, *,
                 depth_bins: Sequence[float] | None = DEFAULT_DEPTH_BINS,
                 depth_metres_per_unit: float = SYNTHIA_METRES_PER_INVERSE_UNIT,
                 keep: Iterable[str] = (), depth_quality: bool | None = None, class_map=None):
        self.num_classes = int(num_classes)
        self.class_map = class_map
        self.model_classes = class_map.source.num_classes if class_map is not None else self.num_classes
        if class_names is None:
            from dada.data.classes import CLASS_SETS

            known = CLASS_SETS.get(self.num_classes)
            class_names = known.names if known else [f"class{i}" for i in range(self.num_classes)]
        self.class_names = list(class_names)
        self.depth_bins = sorted(float(b) for b in depth_bins) if depth_bins else None
        self.depth_metres_per_unit = depth_metres_per_unit
        self.keep = set(keep)
        self.depth_quality_mode = depth_quality
        self.reset()

    def reset(self) -> None:
        self.confusion = ConfusionMatrix(self.num_classes)
        self.by_range: torch.Tensor | None = None
        self.depth_metrics = DepthMetrics(self.depth_metres_per_unit)
        self.per_image: list[dict] = []
        self.kept: dict[str, dict] = {}

    def process(self, items: Sequence[dict], seg_logits: torch.Tensor,
                depth: torch.Tensor | None = None) -> None:
        """``items``: the batch's dataset items (``label`` H'×W', optional ``depth``, ``name``);
        ``seg_logits`` N×C×h×w; ``depth`` the model's N×1×h×w inverse depth or None."""
        if seg_logits.shape[1] != self.model_classes:
            raise DadaError(f"the model predicts {seg_logits.shape[1]} classes but the evaluation has "
                            f"{self.model_classes}: evaluate it on a dataset built for {seg_logits.shape[1]} "
                            f"classes")
        for index, item in enumerate(items):
            label = item["label"].to(seg_logits.device)
            size = tuple(label.shape[-2:])
            pred = upsample(seg_logits[index:index + 1], size).argmax(1)[0]
            if self.class_map is not None:
                pred = self.class_map.apply(pred)
            target_depth = item.get("depth")
            if self.depth_bins is not None and target_depth is not None:
                disparity = _resize_nearest(target_depth.to(seg_logits.device), size)
                groups = depth_range_index(disparity_to_metres(disparity), self.depth_bins)
                num_ranges = len(self.depth_bins) + 1
                groups[groups < 0] = num_ranges  # pixels without depth: one more group, for the totals
                counts = confusion_counts(pred, label, self.num_classes, groups, num_ranges + 1)
                self.by_range = counts[:num_ranges] if self.by_range is None else \
                    self.by_range + counts[:num_ranges]
                image_counts = counts.sum(0)
            else:
                image_counts = confusion_counts(pred, label, self.num_classes)[0]
            self.confusion.add(image_counts)
            name = str(item.get("name", f"image{len(self.per_image)}"))
            self.per_image.append({"name": name, "miou": nanmean(iou_from_confusion(image_counts))})
            depth_pred = None
            scores_depth = self.depth_quality_mode and item.get("depth") is not None
            if depth is not None and (scores_depth or name in self.keep):  # else not worth upsampling
                depth_pred = upsample(depth[index:index + 1].float(), size)[0, 0]
                if scores_depth:
                    gt = _resize_nearest(item["depth"].to(depth_pred.device), size)
                    self.depth_metrics.update(depth_pred, gt)
            if name in self.keep:
                self.kept[name] = {"pred": pred.to(torch.uint8).cpu().numpy(),
                                   "depth": None if depth_pred is None else depth_pred.cpu().numpy()}

    def evaluate(self) -> EvalResult:
        iou = self.confusion.iou()
        result = EvalResult(num_classes=self.num_classes, class_names=self.class_names,
                            iou=[float(v) for v in iou], miou=self.confusion.miou(),
                            miou13=self.confusion.miou13(), pixel_accuracy=self.confusion.pixel_accuracy(),
                            confusion=self.confusion.numpy().tolist(), num_images=len(self.per_image),
                            per_image=list(self.per_image), kept=dict(self.kept),
                            class_map=self.class_map.describe() if self.class_map is not None else None)
        if self.by_range is not None:
            names = depth_range_names(self.depth_bins)
            ranges = {}
            for name, counts in zip(names, self.by_range.cpu().numpy(), strict=True):
                range_iou = iou_from_confusion(counts)
                ranges[name] = {"iou": [float(v) for v in range_iou], "miou": nanmean(range_iou),
                                "pixels": int(counts.sum()),
                                "pixel_accuracy": float(np.trace(counts) / counts.sum()) if counts.sum()
                                else float("nan")}
            definition = ("depth from the target's disparity with the Cityscapes rig scaled to the label "
                          "width (Z = 0.209313 m · 1.1047 · W / d); near < first bin ≤ middle < second bin ≤ "
                          "far; pixels without disparity in no range")
            result.depth_ranges = {"bins_m": list(self.depth_bins), "names": list(names), "ranges": ranges,
                                   "definition": definition}
        if self.depth_metrics.pixels:
            result.depth_quality = {**self.depth_metrics.compute(), "space": "depth = metres_per_unit / "
                                    "inverse depth", "metres_per_unit": self.depth_metres_per_unit}
        return result


def _resize_nearest(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    depth = depth.float()
    while depth.dim() > 2:
        depth = depth[0]
    if tuple(depth.shape) == tuple(size):
        return depth
    return F.interpolate(depth[None, None], size=size, mode="nearest")[0, 0]


def collate_items(items: list[dict]) -> list[dict]:
    """Keep a batch as a list of items (labels may differ in size); images are stacked by the caller."""
    return items


def _stack_images(items: Sequence[dict]) -> torch.Tensor:
    shapes = {tuple(item["image"].shape) for item in items}
    if len(shapes) > 1:
        raise DadaError(f"images of one batch differ in size ({sorted(shapes)}): give the dataset a fixed "
                        f"size or use batch_size=1")
    return torch.stack([item["image"] for item in items])


def evaluate_segmenter(model: torch.nn.Module, dataset, *, num_classes: int,
                       device: str | torch.device = "cpu",
                       batch_size: int = 1, depth_bins: Sequence[float] | None = DEFAULT_DEPTH_BINS,
                       depth_quality: bool = False, max_images: int | None = None, keep: Iterable[str] = (),
                       class_names: Sequence[str] | None = None, num_workers: int = 0,
                       progress: bool = True, desc: str = "eval") -> EvalResult:
    """Evaluate ``model`` on a labelled ``dataset`` (items with ``image``, ``label`` at full resolution,
    optional ``depth``, ``name``) with the official protocol.

    ``depth_bins``: bin edges in metres for IoU by depth range, computed from the items' ``depth`` (target
    disparity in the Cityscapes convention; default near < 10 m ≤ middle < 30 m ≤ far; None: off).
    ``depth_quality=True`` scores the model's depth head against the items' ``depth`` as ground-truth
    inverse depth (source validation items, e.g. SYNTHIA ``val``) instead of using it for depth ranges.
    ``max_images``: the first N items only. ``keep``: names whose predictions are kept in
    ``result.kept`` for figures. The model is put in eval mode and left there. ``num_classes`` is the
    model's; a dataset whose labels have another class set (``label_class_set``, e.g. CamVid's 11) is
    scored on its own classes with the model's predictions merged (:mod:`dada.evaluation.classmap`).
    """
    from dada.evaluation.classmap import dataset_class_map

    device = torch.device(device)
    if len(dataset) == 0:
        raise DadaError("the evaluation dataset is empty")
    class_map, label_classes = dataset_class_map(dataset, num_classes)
    if label_classes is not None:
        num_classes, class_names = label_classes.num_classes, class_names or label_classes.names
    if max_images is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(int(max_images), len(dataset))))
    evaluator = SegmentationEvaluator(num_classes, class_names,
                                      depth_bins=None if depth_quality else depth_bins,
                                      keep=keep, depth_quality=depth_quality, class_map=class_map)
    # a private generator: the loader's base seed is not drawn from the global RNG, so evaluating in
    # the middle of training does not change the training's random stream
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, int(batch_size)), shuffle=False,
                                         num_workers=num_workers, collate_fn=collate_items,
                                         generator=torch.Generator().manual_seed(0))
    model.eval()
    bar = None
    if progress:  # a live bar in a terminal, a line every few seconds in a file or a pipe
        from dada.io import progress_bar

        bar = progress_bar(total=len(dataset), desc=desc, unit="img", dynamic_ncols=True, leave=False)
    try:
        with torch.inference_mode():
            for items in loader:
                if "label" not in items[0]:
                    raise DadaError(f"item {items[0].get('name')!r} has no label: evaluation needs a "
                                    f"labelled split (build the dataset with labels=True)")
                images = _stack_images(items).to(device)
                seg, depth = model_outputs(model, images)
                evaluator.process(items, seg, depth)
                if bar is not None:
                    bar.update(len(items))
    finally:
        if bar is not None:
            bar.close()
    return evaluator.evaluate()
