"""Evaluation: the official confusion-matrix metrics, per-image mIoU, negative transfer and D-Gain, IoU by
depth range, depth quality; reports (``results.json`` / ``results.md``), figures and ``dada predict``.

See ``docs/evaluation.md``.
"""

from dada.evaluation.evaluator import EvalResult, SegmentationEvaluator, evaluate_segmenter
from dada.evaluation.metrics import (
    DEFAULT_DEPTH_BINS,
    ConfusionMatrix,
    DepthMetrics,
    d_gain,
    miou13,
    negative_transfer,
    per_image_miou,
)

__all__ = [
    "DEFAULT_DEPTH_BINS",
    "ConfusionMatrix",
    "DepthMetrics",
    "EvalResult",
    "SegmentationEvaluator",
    "d_gain",
    "evaluate_segmenter",
    "miou13",
    "negative_transfer",
    "per_image_miou",
]
