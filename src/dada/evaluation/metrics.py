"""Segmentation and depth metrics: the confusion matrix of the official evaluation, per-image mIoU, the
comparison metrics of the paper's §4.2 (negative transfer rate, D-Gain), and depth quality.

The confusion matrix is the official ``fast_hist`` (ADVENT ``advent/utils/func.py``): rows are ground
truth, columns are predictions, pixels whose ground truth is outside ``0 .. C-1`` (255) are ignored. IoU
per class = diag / (row sum + column sum − diag); NaN where a class is absent from both the ground truth
and the prediction; mIoU = ``nanmean`` over classes. All fractions are in [0, 1]; reports show %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from dada.data.classes import IGNORE_INDEX, MIOU13_CLASSES

#: Default depth ranges for "IoU by depth range", in metres: near < 10 m ≤ middle < 30 m ≤ far.
DEFAULT_DEPTH_BINS: tuple[float, float] = (10.0, 30.0)
DEPTH_RANGE_NAMES = ("near", "middle", "far")
#: The Cityscapes stereo rig: baseline (m) and focal length (px) of the 2048-pixel-wide images. Disparity
#: d (px) at image width W gives depth Z = B · (f / 2048) · W / d; the built-in benchmark renders its
#: disparity with the same baseline and a focal length per width within ±15 % of Cityscapes'.
CITYSCAPES_BASELINE_M = 0.209313
CITYSCAPES_FOCAL_PER_WIDTH = 2262.52 / 2048.0

#: SYNTHIA inverse depth is 65536 / (raw + 1) with raw in centimetres: metres ≈ 655.36 / inverse depth.
SYNTHIA_METRES_PER_INVERSE_UNIT = 65536.0 / 100.0


def _as_long_tensor(values, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(np.asarray(values)))
    if device is not None:
        tensor = tensor.to(device)
    return tensor.long()


def confusion_counts(pred, label, num_classes: int, groups=None, num_groups: int = 1) -> torch.Tensor:
    """Confusion counts (``num_groups``×C×C, int64, on the inputs' device) of one map or a batch.

    ``pred`` and ``label`` are class-index maps of the same shape (tensors on any device, or arrays);
    pixels whose label is outside ``0 .. C-1`` are ignored (the official ``fast_hist``). ``groups``
    (optional, same shape, values ``0 .. num_groups-1``, negative = excluded) splits the pixels, e.g. by
    depth range, with one ``bincount``.
    """
    label = _as_long_tensor(label)
    pred = _as_long_tensor(pred, label.device)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
    n = int(num_classes)
    valid = (label >= 0) & (label < n)
    if groups is not None:
        groups = _as_long_tensor(groups, label.device)
        if groups.shape != label.shape:
            raise ValueError(f"groups shape {tuple(groups.shape)} != label shape {tuple(label.shape)}")
        valid &= (groups >= 0) & (groups < num_groups)
    if pred.numel():
        low, high = torch.aminmax(pred)
        if (int(low) < 0 or int(high) >= n) and bool((((pred < 0) | (pred >= n)) & valid).any()):
            raise ValueError(f"predictions must be class indices in 0..{n - 1} on labelled pixels, "
                             f"got values in {int(low)}..{int(high)}")
    index = n * label + pred
    if groups is not None:
        index += n * n * groups
    total = num_groups * n * n
    # excluded pixels go to one extra bin (a masked select would cost several times more)
    index = torch.where(valid, index, torch.full_like(index, total))
    counts = torch.bincount(index.flatten(), minlength=total + 1)[:total]
    return counts.reshape(num_groups, n, n)


def iou_from_confusion(matrix) -> np.ndarray:
    """Per-class IoU (float64, NaN where a class is absent from both GT and prediction)."""
    hist = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
    diag = np.diag(hist)
    union = hist.sum(1) + hist.sum(0) - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)


def nanmean(values: Iterable[float]) -> float:
    """Mean over the non-NaN values (NaN when there are none), without numpy's empty-slice warning."""
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else float("nan")


class ConfusionMatrix:
    """The official evaluation's confusion matrix, accumulated on the device of the inputs.

    >>> cm = ConfusionMatrix(num_classes=16)
    >>> cm.update(pred, label)          # class-index maps, any shape, tensors (any device) or arrays
    >>> cm.iou(), cm.miou(), cm.miou13(), cm.pixel_accuracy()

    Rows are ground truth, columns are predictions; label pixels outside ``0 .. C-1`` (``ignore_index``,
    255) are ignored.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (0..{num_classes - 1})")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix: torch.Tensor | None = None

    def reset(self) -> None:
        self.matrix = None

    def update(self, pred, label) -> torch.Tensor:
        """Add the pixels of ``pred`` vs ``label``; returns this update's C×C counts."""
        counts = confusion_counts(pred, label, self.num_classes)[0]
        self.add(counts)
        return counts

    def add(self, counts) -> None:
        """Add C×C counts (e.g. another matrix's, or a per-image one)."""
        counts = counts if isinstance(counts, torch.Tensor) else torch.as_tensor(np.asarray(counts))
        counts = counts.long()
        if self.matrix is None:
            self.matrix = counts.clone()
        else:
            self.matrix += counts.to(self.matrix.device)

    def numpy(self) -> np.ndarray:
        """The C×C int64 matrix (rows GT, columns prediction) on the CPU."""
        if self.matrix is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self.matrix.cpu().numpy()

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN where a class is absent from both GT and prediction."""
        return iou_from_confusion(self.numpy())

    def miou(self) -> float:
        """Mean IoU over the classes present (``nanmean``), in [0, 1]; NaN before any pixel."""
        return nanmean(self.iou())

    def miou13(self) -> float | None:
        """mIoU* of the paper: the 16-class IoUs without wall, fence, pole; None for other class sets."""
        if self.num_classes != 16:
            return None
        return nanmean(self.iou()[list(MIOU13_CLASSES)])

    def pixel_accuracy(self) -> float:
        """Correct pixels / labelled pixels, in [0, 1] (NaN before any labelled pixel)."""
        hist = self.numpy()
        total = hist.sum()
        return float(np.trace(hist) / total) if total else float("nan")

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.numpy().sum())})"


def miou13(iou: Sequence[float]) -> float | None:
    """mIoU* (13-class subset) of a 16-class IoU vector; None for other class counts."""
    iou = np.asarray(iou, dtype=np.float64)
    return nanmean(iou[list(MIOU13_CLASSES)]) if iou.size == 16 else None


def per_image_miou(counts) -> float:
    """Per-image mIoU: the mean IoU of one image's confusion counts over the classes present in its
    ground truth or its prediction (on labelled pixels); NaN when the image has no labelled pixel."""
    return nanmean(iou_from_confusion(counts))


# -------------------------------------------------------------------------- comparison metrics (§4.2)
def _by_name(per_image) -> dict[str, float]:
    """``{name: miou}`` from a mapping or ``{"name", "miou"}`` rows; None (JSON null) is NaN."""
    if isinstance(per_image, Mapping):
        pairs = per_image.items()
    else:
        pairs = ((row["name"], row["miou"]) for row in per_image)
    return {str(name): float("nan") if value is None else float(value) for name, value in pairs}


def negative_transfer(per_image, baseline_per_image) -> dict:
    """The negative transfer rate of SPIGAN / DADA §4.2: the share of target images whose per-image mIoU
    is **strictly below** the baseline's (the source-only model's), over the images both evaluated with a
    defined per-image mIoU. Inputs: ``{name: miou}`` or lists of ``{"name", "miou"}``.

    Returns ``{"rate", "worse", "images", "unmatched"}`` (rate NaN when no image is shared).
    """
    ours, base = _by_name(per_image), _by_name(baseline_per_image)
    shared = [name for name in ours if name in base
              and not math.isnan(ours[name]) and not math.isnan(base[name])]
    worse = sum(ours[name] < base[name] for name in shared)
    unmatched = len(set(ours) ^ set(base))
    rate = worse / len(shared) if shared else float("nan")
    return {"rate": rate, "worse": int(worse), "images": len(shared), "unmatched": unmatched}


def d_gain(miou_depth: float, miou_no_depth: float) -> float:
    """D-Gain (paper Table 1): the mIoU of a depth-aware model minus that of its no-depth counterpart
    (same units as the inputs: fractions in, fraction out)."""
    return float(miou_depth) - float(miou_no_depth)


# ------------------------------------------------------------------------------------- depth ranges
def disparity_to_metres(disparity, width: int | None = None) -> torch.Tensor:
    """Cityscapes-convention disparity (px; NaN or ≤ 0 invalid) → depth in metres (NaN where invalid),
    with the Cityscapes rig scaled to the disparity map's width (default: its last dimension)."""
    disparity = disparity if isinstance(disparity, torch.Tensor) else torch.from_numpy(
        np.asarray(disparity, np.float32))
    disparity = disparity.float()
    width = disparity.shape[-1] if width is None else width
    valid = torch.isfinite(disparity) & (disparity > 0)
    metres = CITYSCAPES_BASELINE_M * CITYSCAPES_FOCAL_PER_WIDTH * float(width) / torch.where(
        valid, disparity, torch.ones_like(disparity))
    return torch.where(valid, metres, torch.full_like(metres, float("nan")))


def depth_range_index(metres, bins: Sequence[float] = DEFAULT_DEPTH_BINS) -> torch.Tensor:
    """Range index per pixel from a depth map in metres: 0 = near (< bins[0]), 1 … len(bins) = far
    (≥ bins[-1]); −1 where the depth is NaN, infinite or ≤ 0."""
    metres = metres if isinstance(metres, torch.Tensor) else torch.from_numpy(np.asarray(metres, np.float32))
    metres = metres.float()
    bins_t = torch.as_tensor(sorted(float(b) for b in bins), dtype=torch.float32, device=metres.device)
    index = torch.bucketize(metres, bins_t, right=True)  # count of bin edges ≤ depth
    invalid = ~torch.isfinite(metres) | (metres <= 0)
    return torch.where(invalid, torch.full_like(index, -1), index)


def depth_range_names(bins: Sequence[float]) -> tuple[str, ...]:
    if len(bins) == 2:
        return DEPTH_RANGE_NAMES
    edges = [0.0, *sorted(float(b) for b in bins)]
    names = tuple(f"{lo:g}-{hi:g} m" for lo, hi in zip(edges, edges[1:], strict=False))
    return names + (f">={edges[-1]:g} m",)


# ------------------------------------------------------------------------------------ depth quality
class DepthMetrics:
    """Depth quality of predicted inverse depth against ground-truth inverse depth, in depth space.

    Both maps are inverted (depth = 1 / inverse depth) and multiplied by ``metres_per_unit`` (SYNTHIA:
    655.36, so that depths are in metres); pixels where the ground truth is not finite or ≤ 0 are left
    out; predictions are clamped to ≥ ``min_inverse`` (default 1: SYNTHIA's farthest encodable depth,
    655.36 m, so that a near-zero prediction counts as "far", not as an infinite error). Accumulates
    sums, so images stream through: AbsRel = mean |d̂ − d| / d, RMSE = sqrt(mean (d̂ − d)²) (metres),
    δ<1.25 = share of pixels with max(d̂/d, d/d̂) < 1.25.
    """

    def __init__(self, metres_per_unit: float = SYNTHIA_METRES_PER_INVERSE_UNIT, min_inverse: float = 1.0):
        self.metres_per_unit = float(metres_per_unit)
        self.min_inverse = float(min_inverse)
        self.reset()

    def reset(self) -> None:
        self.pixels = 0
        self.abs_rel = 0.0
        self.squared = 0.0
        self.delta1 = 0

    def update(self, pred_inverse, gt_inverse) -> None:
        pred_inverse = torch.as_tensor(pred_inverse).double()
        gt_inverse = torch.as_tensor(gt_inverse).double().to(pred_inverse.device)
        if pred_inverse.shape != gt_inverse.shape:
            raise ValueError(f"depth shapes differ: {tuple(pred_inverse.shape)} vs {tuple(gt_inverse.shape)}")
        valid = torch.isfinite(gt_inverse) & (gt_inverse > 0)
        if not bool(valid.any()):
            return
        gt = self.metres_per_unit / gt_inverse[valid]
        pred = self.metres_per_unit / pred_inverse[valid].clamp_min(self.min_inverse)
        ratio = torch.maximum(pred / gt, gt / pred)
        self.pixels += int(valid.sum())
        self.abs_rel += float(((pred - gt).abs() / gt).sum())
        self.squared += float(((pred - gt) ** 2).sum())
        self.delta1 += int((ratio < 1.25).sum())

    def compute(self) -> dict:
        if not self.pixels:
            return {"abs_rel": float("nan"), "rmse": float("nan"), "delta1": float("nan"), "pixels": 0}
        return {"abs_rel": self.abs_rel / self.pixels, "rmse": math.sqrt(self.squared / self.pixels),
                "delta1": self.delta1 / self.pixels, "pixels": self.pixels}
