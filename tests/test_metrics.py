"""Metrics against hand-computed confusion matrices, negative transfer and D-Gain on constructed results."""

import math

import numpy as np
import pytest
import torch

from dada.evaluation import ConfusionMatrix, DepthMetrics, d_gain, miou13, negative_transfer, per_image_miou
from dada.evaluation.metrics import confusion_counts, depth_range_index, disparity_to_metres

# 3 classes; 255 = ignore. Ground truth rows, predictions columns.
LABEL = np.array([[0, 0, 1, 1],
                  [0, 255, 1, 2],
                  [255, 255, 2, 2]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 0, 2],
                 [1, 0, 2, 0]])


def test_confusion_matrix_by_hand():
    cm = ConfusionMatrix(3)
    cm.update(PRED, LABEL)
    # GT 0: pixels (0,0)->0 (0,1)->1 (1,0)->0          → row [2, 1, 0]
    # GT 1: (0,2)->1 (0,3)->1 (1,2)->0                 → row [1, 2, 0]
    # GT 2: (1,3)->2 (2,2)->2 (2,3)->0                 → row [1, 0, 2]
    # the three 255 pixels are ignored, whatever is predicted there
    expected = np.array([[2, 1, 0], [1, 2, 0], [1, 0, 2]])
    np.testing.assert_array_equal(cm.numpy(), expected)
    # IoU_c = diag / (row + col - diag)
    iou = cm.iou()
    np.testing.assert_allclose(iou, [2 / (3 + 4 - 2), 2 / (3 + 3 - 2), 2 / (3 + 2 - 2)])
    assert cm.miou() == pytest.approx(np.mean(iou))
    assert cm.pixel_accuracy() == pytest.approx(6 / 9)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 1, 1]))
    iou = cm.iou()
    # class 0: TP 1, GT 1, pred 2 → 1/2; class 1: TP 2, GT 3, pred 2 → 2/3; classes 2, 3 absent: NaN
    np.testing.assert_allclose(iou[:2], [0.5, 2 / 3])
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert cm.miou() == pytest.approx((0.5 + 2 / 3) / 2)


def test_class_predicted_but_absent_from_gt_counts_as_zero():
    cm = ConfusionMatrix(3)
    cm.update(np.array([2, 1]), np.array([1, 1]))
    iou = cm.iou()
    assert iou[2] == 0.0 and iou[1] == 0.5 and math.isnan(iou[0])
    assert cm.miou() == pytest.approx(0.25)


def test_accumulates_over_updates_and_resets():
    cm = ConfusionMatrix(3)
    cm.update(PRED[:1], LABEL[:1])
    cm.update(torch.from_numpy(PRED[1:]), torch.from_numpy(LABEL[1:]))
    whole = ConfusionMatrix(3)
    whole.update(PRED, LABEL)
    np.testing.assert_array_equal(cm.numpy(), whole.numpy())
    assert cm.matrix.device.type == "cpu" and cm.matrix.dtype == torch.int64
    cm.reset()
    assert cm.numpy().sum() == 0 and math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())


def test_only_ignore_pixels_and_bad_predictions():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), int), np.full((2, 2), 255))
    assert cm.numpy().sum() == 0
    with pytest.raises(ValueError):
        cm.update(np.array([3]), np.array([0]))
    with pytest.raises(ValueError):
        cm.update(np.array([0, 1]), np.array([0]))


def test_miou13_excludes_wall_fence_pole():
    iou = np.arange(16) / 16.0
    cm_value = miou13(iou)
    assert cm_value == pytest.approx(np.mean([iou[i] for i in range(16) if i not in (3, 4, 5)]))
    assert miou13(np.ones(7)) is None
    cm = ConfusionMatrix(16)
    cm.update(np.array([3, 0]), np.array([3, 0]))
    assert cm.miou() == 1.0 and cm.miou13() == 1.0  # wall counts in mIoU, not in mIoU*
    cm.update(np.array([0]), np.array([4]))  # fence wrong: 0 in mIoU, absent from mIoU*
    assert cm.miou() == pytest.approx((1 + 0.5 + 0) / 3)
    assert cm.miou13() == pytest.approx(0.5)
    assert ConfusionMatrix(7).miou13() is None


def test_per_image_miou_over_classes_in_gt_or_prediction():
    counts = confusion_counts(np.array([0, 0, 2, 2]), np.array([0, 0, 0, 255]), 4)[0]
    # class 0: TP 2, GT 3, pred 2 → 2/3; class 2: predicted once on a labelled pixel → 0; 1, 3 absent
    assert per_image_miou(counts) == pytest.approx((2 / 3 + 0) / 2)
    assert math.isnan(per_image_miou(np.zeros((4, 4))))


def test_negative_transfer_rate():
    baseline = [{"name": "a", "miou": 0.5}, {"name": "b", "miou": 0.5}, {"name": "c", "miou": 0.5},
                {"name": "d", "miou": 0.5}, {"name": "e", "miou": float("nan")}]
    adapted = {"a": 0.4, "b": 0.5, "c": 0.6, "d": 0.49, "e": 0.9, "z": 0.1}
    result = negative_transfer(adapted, baseline)
    # a and d are below; b (equal) is not negative transfer; e (NaN baseline) and z (unmatched) left out
    assert result == {"rate": 0.5, "worse": 2, "images": 4, "unmatched": 1}
    assert math.isnan(negative_transfer({"x": 0.1}, {"y": 0.2})["rate"])
    # per-image results read back from results.json carry null for NaN
    assert negative_transfer([{"name": "a", "miou": None}, {"name": "b", "miou": 0.1}],
                             {"a": 0.2, "b": 0.2})["images"] == 1


def test_d_gain():
    # Table 1: DADA 42.6 vs AdvEnt 40.8 → 1.8
    assert d_gain(0.426, 0.408) == pytest.approx(0.018)
    assert d_gain(0.30, 0.35) == pytest.approx(-0.05)


def test_depth_ranges_from_disparity():
    # Cityscapes rig at full width: Z = 0.209313 m · 2262.52 px / d
    disparity = torch.tensor([[47.4, 47.3, 15.79, 15.78, float("nan"), 0.0]])
    metres = disparity_to_metres(disparity, width=2048)
    assert metres[0, 0] == pytest.approx(0.209313 * 2262.52 / 47.4)
    assert math.isnan(metres[0, 4]) and math.isnan(metres[0, 5])
    # the same scene at half the width has half the disparity, hence the same depth
    half = disparity_to_metres(disparity[:, :4] / 2, width=1024)
    np.testing.assert_allclose(half, metres[:, :4], rtol=1e-6)
    np.testing.assert_array_equal(depth_range_index(metres)[0].numpy(), [0, 1, 1, 2, -1, -1])
    assert depth_range_index(torch.tensor([10.0, 9.99, 30.0, 29.9])).tolist() == [1, 0, 2, 1]
    assert depth_range_index(torch.tensor([5.0, 1.0]), bins=[2.0]).tolist() == [1, 0]


def test_confusion_by_depth_range():
    pred = torch.tensor([0, 1, 1, 0])
    label = torch.tensor([0, 1, 0, 255])
    groups = torch.tensor([0, 1, 1, -1])
    counts = confusion_counts(pred, label, 2, groups, 2)
    np.testing.assert_array_equal(counts[0].numpy(), [[1, 0], [0, 0]])
    np.testing.assert_array_equal(counts[1].numpy(), [[0, 1], [0, 1]])


def test_depth_metrics_by_hand():
    metric = DepthMetrics(metres_per_unit=1.0, min_inverse=0.01)
    gt_inverse = torch.tensor([1.0, 0.5, float("nan"), 0.0])  # depths 1, 2, invalid, invalid
    pred_inverse = torch.tensor([0.5, 0.5, 3.0, 3.0])  # depths 2, 2
    metric.update(pred_inverse, gt_inverse)
    result = metric.compute()
    assert result["pixels"] == 2
    assert result["abs_rel"] == pytest.approx((1 / 1 + 0 / 2) / 2)
    assert result["rmse"] == pytest.approx(math.sqrt((1 + 0) / 2))
    assert result["delta1"] == pytest.approx(0.5)


def test_depth_metrics_clamp_near_zero_predictions_to_the_farthest_depth():
    metric = DepthMetrics()  # SYNTHIA: metres = 655.36 / inverse depth, predictions clamped to ≥ 1
    metric.update(torch.tensor([1e-6]), torch.tensor([1.0]))
    assert metric.compute()["abs_rel"] == pytest.approx(0.0) and metric.compute()["delta1"] == 1.0
