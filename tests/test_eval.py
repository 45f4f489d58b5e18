"""evaluate_segmenter against the official evaluation loop restated by hand (numpy fast_hist), on a tiny
real segmenter and on fakes with known outputs."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dada.errors import DadaError
from dada.evaluation import EvalResult, evaluate_segmenter
from dada.models import build_segmenter


def fast_hist(gt, pred, n):  # ADVENT advent/utils/func.py, verbatim
    k = (gt >= 0) & (gt < n)
    return np.bincount(n * gt[k].astype(int) + pred[k], minlength=n ** 2).reshape(n, n)


def make_items(count=3, size=(32, 48), label_size=(64, 96), num_classes=16, depth=True, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for index in range(count):
        label = rng.integers(0, num_classes, label_size)
        label[rng.random(label_size) < 0.1] = 255
        item = {"image": torch.from_numpy(rng.normal(0, 50, (3, *size)).astype(np.float32)),
                "label": torch.from_numpy(label.astype(np.int64)), "name": f"city/img{index}.png"}
        if depth:
            disparity = rng.uniform(1, 80, (1, *label_size)).astype(np.float32)
            disparity[0, :2] = np.nan
            item["depth"] = torch.from_numpy(disparity)
        items.append(item)
    return items


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_segmenter(arch="tiny", num_classes=16, depth_head=True).eval()


def test_matches_the_official_loop(tiny_model):
    items = make_items()
    result = evaluate_segmenter(tiny_model, items, num_classes=16, progress=False)
    hist = np.zeros((16, 16), dtype=np.int64)
    per_image = []
    with torch.no_grad():
        for item in items:
            logits = tiny_model(item["image"][None]).seg
            upsampled = F.interpolate(logits, size=item["label"].shape, mode="bilinear", align_corners=True)
            pred = upsampled[0].numpy().argmax(0)
            image_hist = fast_hist(item["label"].numpy().flatten(), pred.flatten(), 16)
            hist += image_hist
            with np.errstate(divide="ignore", invalid="ignore"):
                diag = np.diag(image_hist)
                image_iou = diag / (image_hist.sum(1) + image_hist.sum(0) - diag)
            per_image.append(np.nanmean(image_iou))
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    np.testing.assert_array_equal(np.array(result.confusion), hist)
    np.testing.assert_allclose(result.iou, iou)
    assert result.miou == pytest.approx(np.nanmean(iou))
    assert result.miou13 == pytest.approx(np.nanmean(iou[[0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]))
    assert result.pixel_accuracy == pytest.approx(np.trace(hist) / hist.sum())
    np.testing.assert_allclose([row["miou"] for row in result.per_image], per_image)
    assert [row["name"] for row in result.per_image] == [item["name"] for item in items]
    assert result.num_images == 3 and 0 <= result.miou <= 1


def test_depth_ranges_partition_the_valid_pixels(tiny_model):
    items = make_items(2)
    result = evaluate_segmenter(tiny_model, items, num_classes=16, progress=False, depth_bins=(0.5, 1.0))
    ranges = result.depth_ranges["ranges"]
    assert list(ranges) == ["near", "middle", "far"]
    labelled = sum(int((item["label"] != 255).sum()) for item in items)
    nan_labelled = sum(int((item["label"][:2] != 255).sum()) for item in items)  # NaN disparity rows
    assert sum(r["pixels"] for r in ranges.values()) == labelled - nan_labelled
    # label width 96: Z = 0.209313 · (2262.52 / 2048) · 96 / d, so Z < 0.5 m ⇔ d > 44.4 px
    near_disparity = 0.209313 * 2262.52 / 2048 * 96 / 0.5
    near = sum(int(((item["label"] != 255) & (item["depth"][0] > near_disparity)).sum()) for item in items)
    assert near > 0
    assert ranges["near"]["pixels"] == near
    off = evaluate_segmenter(tiny_model, items, num_classes=16, progress=False, depth_bins=None)
    assert off.depth_ranges is None and off.miou == result.miou


def test_batches_subsets_keep_and_json(tiny_model):
    items = make_items(3)
    one = evaluate_segmenter(tiny_model, items, num_classes=16, progress=False)
    two = evaluate_segmenter(tiny_model, items, num_classes=16, batch_size=2, progress=False,
                             keep=["city/img1.png"])
    np.testing.assert_array_equal(one.confusion, two.confusion)
    assert set(two.kept) == {"city/img1.png"}
    kept = two.kept["city/img1.png"]
    assert kept["pred"].shape == (64, 96) and kept["pred"].dtype == np.uint8
    assert kept["depth"].shape == (64, 96)
    first = evaluate_segmenter(tiny_model, items, num_classes=16, max_images=1, progress=False)
    assert first.num_images == 1
    data = json.loads(json.dumps(two.to_dict(), allow_nan=False))
    back = EvalResult.from_dict(data)
    assert back.miou == pytest.approx(two.miou) and back.confusion == two.confusion
    assert sum(math.isnan(v) for v in back.iou) == sum(math.isnan(v) for v in two.iou)


class ConstantModel(nn.Module):
    """Predicts class ``k`` everywhere and inverse depth ``inverse`` (a stride-8 output)."""

    def __init__(self, num_classes, k, inverse=None):
        super().__init__()
        self.num_classes, self.k, self.inverse = num_classes, k, inverse
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        n, _, h, w = x.shape
        seg = torch.zeros(n, self.num_classes, h // 8, w // 8)
        seg[:, self.k] = 1
        depth = None if self.inverse is None else torch.full((n, 1, h // 8, w // 8), self.inverse)
        return type("Out", (), {"seg": seg, "depth": depth})()


def test_constant_model_and_depth_quality():
    label = torch.tensor([[0, 0, 1, 255]] * 4)
    items = [{"image": torch.zeros(3, 16, 16), "label": label, "name": "a",
              "depth": torch.full((1, 4, 4), 2.0)}]
    result = evaluate_segmenter(ConstantModel(7, 0, inverse=4.0), items, num_classes=7, progress=False,
                                depth_quality=True)
    assert result.iou[0] == pytest.approx(8 / 12) and result.iou[1] == 0.0
    assert all(math.isnan(v) for v in result.iou[2:])
    assert result.miou13 is None and result.depth_ranges is None
    quality = result.depth_quality
    # depth = 655.36 / inverse: GT 327.68 m, predicted 163.84 m
    assert quality["abs_rel"] == pytest.approx(0.5) and quality["rmse"] == pytest.approx(163.84)
    assert quality["delta1"] == 0.0 and quality["pixels"] == 16


def test_wrong_class_count_and_missing_labels():
    items = [{"image": torch.zeros(3, 16, 16), "label": torch.zeros(4, 4, dtype=torch.long), "name": "a"}]
    with pytest.raises(DadaError, match="7 classes"):
        evaluate_segmenter(ConstantModel(7, 0), items, num_classes=16, progress=False)
    with pytest.raises(DadaError, match="no label"):
        evaluate_segmenter(ConstantModel(7, 0), [{"image": torch.zeros(3, 16, 16), "name": "a"}],
                           num_classes=7, progress=False)
    with pytest.raises(DadaError, match="empty"):
        evaluate_segmenter(ConstantModel(7, 0), [], num_classes=7, progress=False)


def test_evaluation_leaves_the_global_random_state_alone(tiny_model):
    items = make_items(2)
    before = torch.get_rng_state()
    evaluate_segmenter(tiny_model, items, num_classes=16, progress=False)
    assert torch.equal(before, torch.get_rng_state())
