"""Evaluation: the official confusion-matrix metrics, per-image mIoU, negative transfer and D-Gain, IoU by
depth range, depth quality; reports (``results.json`` / ``results.md``, ``report.html``) and figures.
Deployment (``dada predict``, video, ONNX export) is :mod:`dada.deploy`, a layer above this one.

See ``docs/evaluation.md``.
"""

from dada.evaluation.compare import compare_runs
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
from dada.evaluation.pipeline import evaluate_run
from dada.evaluation.reports import load_results, results_markdown, write_results

__all__ = [
    "DEFAULT_DEPTH_BINS",
    "ConfusionMatrix",
    "DepthMetrics",
    "EvalResult",
    "SegmentationEvaluator",
    "compare_runs",
    "d_gain",
    "evaluate_run",
    "evaluate_segmenter",
    "load_results",
    "miou13",
    "negative_transfer",
    "per_image_miou",
    "results_markdown",
    "write_results",
]
