"""Our arrays against the official loaders' pipeline, restated step by step from the reference
(official-implementation.md §3–4: ADVENT base_dataset / DADA synthia, depth, mapillary)."""

import cv2
import numpy as np
import pytest
from PIL import Image

from dada.data import build_dataset
from dada.data.cityscapes import write_cityscapes
from dada.data.classes import CITYSCAPES_TO_16, MAPILLARY_TO_7, SYNTHIA_TO_16
from dada.data.mapillary import write_mapillary
from dada.data.synthia import write_synthia

IMG_MEAN = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)


def official_image(path, size_wh):
    image = Image.open(path).convert("RGB").resize(size_wh, Image.BICUBIC)
    image = np.asarray(image, np.float32)[:, :, ::-1] - IMG_MEAN
    return image.transpose((2, 0, 1))


def official_label(array, size_wh, table):
    label = np.asarray(Image.fromarray(array).resize(size_wh, Image.NEAREST), np.float32)
    out = 255 * np.ones(label.shape, dtype=np.float32)
    for k, v in table.items():
        out[label == k] = v
    return out


def official_depth(path, size_wh):
    depth = cv2.imread(str(path), flags=cv2.IMREAD_ANYDEPTH).astype(np.float32)
    depth = cv2.resize(depth, size_wh, interpolation=cv2.INTER_NEAREST)
    return 65536.0 / (depth + 1)


def official_resize_with_pad(target_wh, image, resample, fill_value=0):
    target_ratio = target_wh[0] / target_wh[1]
    image_ratio = image.size[0] / image.size[1]
    if image_ratio > target_ratio:
        ratio = target_wh[0] / image.size[0]
        shape = (target_wh[0], int(image.size[1] * ratio))
    else:
        ratio = target_wh[1] / image.size[1]
        shape = (int(image.size[0] * ratio), target_wh[1])
    resized = np.array(image.resize(shape, resample))
    if resized.ndim == 2:
        resized = resized[:, :, None]
    result = np.ones([target_wh[1], target_wh[0], resized.shape[2]], np.float32) * fill_value
    result[: resized.shape[0], : resized.shape[1]] = resized
    return result


def official_pad_with_fixed_as(target_ratio, image, fill_value=0):
    width, height = float(image.size[0]), float(image.size[1])
    ratio = width / height
    if target_ratio > ratio:
        width = target_ratio * height
    elif target_ratio < ratio:
        height = width / target_ratio
    else:
        return np.array(image)
    array = np.array(image)
    result = np.ones((int(height), int(width)), np.float32) * fill_value
    result[: array.shape[0], : array.shape[1]] = array
    return result


def content(rng, height, width):
    coarse = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
    return np.clip(cv2.resize(coarse, (width, height)).astype(int) + rng.integers(-9, 9, (height, width, 3)),
                   0, 255).astype(np.uint8)


def test_synthia_matches_the_official_pipeline(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 23, (19, 33)).astype(np.uint16)
    depth = rng.integers(0, 65536, (19, 33, 3)).astype(np.uint16)
    write_synthia(tmp_path, "0000000.png", content(rng, 19, 33), ids, depth,
                  instance_ids=rng.integers(0, 500, (19, 33)))
    item = build_dataset("synthia", tmp_path, "all", 16, size=(11, 17), depth=True)[0]
    expected_image = official_image(tmp_path / "RGB/0000000.png", (17, 11))
    np.testing.assert_array_equal(item["image"].numpy(), expected_image)
    # the official code reads parsed_LABELS (raw ids, one channel): ids here are those of GT/LABELS
    np.testing.assert_array_equal(item["label"].numpy(), official_label(ids, (17, 11), SYNTHIA_TO_16))
    np.testing.assert_array_equal(item["depth"][0].numpy(), official_depth(tmp_path / "Depth/0000000.png",
                                                                           (17, 11)))


@pytest.mark.parametrize("label_size", ["input", "native"])
def test_cityscapes_matches_the_official_pipeline(tmp_path, label_size):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 34, (20, 40)).astype(np.uint8)
    write_cityscapes(tmp_path, "val", "lindau", "lindau_000000_000019", content(rng, 20, 40), ids)
    item = build_dataset("cityscapes", tmp_path, "val", 16, size=(10, 20), label_size=label_size)[0]
    image_path = tmp_path / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"
    np.testing.assert_array_equal(item["image"].numpy(), official_image(image_path, (20, 10)))
    labels_wh = (20, 10) if label_size == "input" else (40, 20)
    np.testing.assert_array_equal(item["label"].numpy(), official_label(ids, labels_wh, CITYSCAPES_TO_16))


@pytest.mark.parametrize("shape", [(21, 50), (40, 23)])
def test_mapillary_matches_the_official_pipeline(tmp_path, shape):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 66, shape).astype(np.uint8)
    write_mapillary(tmp_path, "validation", "k", content(rng, *shape), ids)
    lut = np.full(256, 255, np.uint8)
    for k, v in MAPILLARY_TO_7.items():
        lut[k] = v
    image = Image.open(tmp_path / "validation/images/k.jpg").convert("RGB")
    expected = official_resize_with_pad((16, 12), image, Image.BICUBIC)
    expected = (expected[:, :, ::-1] - IMG_MEAN).transpose((2, 0, 1))
    label_image = Image.open(tmp_path / "validation/labels/k.png")
    train_label = official_resize_with_pad((16, 12), label_image, Image.NEAREST, fill_value=65)[:, :, 0]
    test_label = official_pad_with_fixed_as(16 / 12, label_image, fill_value=65)
    item = build_dataset("mapillary", tmp_path, "validation", 7, size=(12, 16))[0]
    np.testing.assert_array_equal(item["image"].numpy(), expected)
    np.testing.assert_array_equal(item["label"].numpy(), lut[train_label.astype(np.uint8)])
    native = build_dataset("mapillary", tmp_path, "validation", 7, size=(12, 16), label_size="native")[0]
    np.testing.assert_array_equal(native["label"].numpy(), lut[test_label.astype(np.uint8)])
