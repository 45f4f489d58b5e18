"""Cityscapes read from tiny files in the real formats, checked against hand-computed values."""

import math

import numpy as np
import pytest
from PIL import Image

from dada import DadaError
from dada.data import build_dataset
from dada.data.cityscapes import write_cityscapes

# labelIds: road 7, sidewalk 8, car 26, truck 27 (ignored in 16, vehicle in 7), terrain 22 (ignored in 16,
# nature in 7), unlabeled 0, ego vehicle 1, sky 23, person 24, parking 9 (ignoreInEval: ignored in both)
LABEL_IDS = np.array([[7, 7, 8, 26, 27, 22, 0, 1],
                      [7, 7, 8, 26, 27, 22, 23, 23],
                      [24, 24, 9, 9, 33, 32, 28, 25],
                      [11, 12, 13, 17, 19, 20, 21, 23]], dtype=np.uint8)
TRAIN_16 = np.array([[0, 0, 1, 12, 255, 255, 255, 255],
                     [0, 0, 1, 12, 255, 255, 9, 9],
                     [10, 10, 255, 255, 15, 14, 13, 11],
                     [2, 3, 4, 5, 6, 7, 8, 9]])
TRAIN_7 = np.array([[0, 0, 0, 6, 6, 3, 255, 255],
                    [0, 0, 0, 6, 6, 3, 4, 4],
                    [5, 5, 255, 255, 6, 6, 6, 5],
                    [1, 1, 1, 2, 2, 2, 3, 4]])
DISPARITY = np.array([[0, 1, 257, 25601, 0, 513, 2, 65535]] * 4, dtype=np.uint16)


def rgb(seed):
    return np.random.default_rng(seed).integers(0, 256, (4, 8, 3)).astype(np.uint8)


@pytest.fixture
def cityscapes_root(tmp_path):
    root = tmp_path / "cityscapes"
    write_cityscapes(root, "val", "lindau", "lindau_000000_000019", rgb(0), LABEL_IDS, DISPARITY)
    write_cityscapes(root, "val", "frankfurt", "frankfurt_000000_000294", rgb(1), LABEL_IDS[::-1], DISPARITY)
    write_cityscapes(root, "train", "aachen", "aachen_000000_000019", rgb(2))  # no labels: target training
    return root


def test_file_list_is_discovered_sorted_and_labels_mapped(cityscapes_root):
    ds = build_dataset("cityscapes", cityscapes_root, "val", 16, label_size="native")
    assert [r.name for r in ds.records] == ["frankfurt/frankfurt_000000_000294_leftImg8bit.png",
                                            "lindau/lindau_000000_000019_leftImg8bit.png"]
    item = ds[1]
    assert item["name"] == "lindau/lindau_000000_000019_leftImg8bit.png"
    np.testing.assert_array_equal(item["label"].numpy(), TRAIN_16)
    np.testing.assert_array_equal(ds[0]["label"].numpy(), TRAIN_16[::-1])
    seven = build_dataset("cityscapes", cityscapes_root, "val", 7)[1]
    np.testing.assert_array_equal(seven["label"].numpy(), TRAIN_7)


def test_evaluation_resizes_images_but_keeps_native_labels(cityscapes_root):
    ds = build_dataset("cityscapes", cityscapes_root, "val", 16, size=(2, 4), label_size="native")
    item = ds[1]
    assert item["image"].shape == (3, 2, 4) and item["label"].shape == (4, 8)
    resized = np.asarray(Image.fromarray(rgb(0)).resize((4, 2), Image.BICUBIC)).astype(np.float32)
    mean = np.array([104.00698793, 116.66876762, 122.67891434], dtype=np.float32)
    np.testing.assert_array_equal(item["image"].numpy(), (resized[:, :, ::-1] - mean).transpose(2, 0, 1))
    train = build_dataset("cityscapes", cityscapes_root, "val", 16, size=(2, 4))[1]
    np.testing.assert_array_equal(train["label"].numpy(), TRAIN_16[[1, 3]][:, [1, 3, 5, 7]])


def test_training_needs_no_labels(cityscapes_root):
    ds = build_dataset("cityscapes", cityscapes_root, "train", 16, size=(2, 4))
    assert len(ds) == 1 and set(ds[0]) == {"image", "name"}
    no_labels = build_dataset("cityscapes", cityscapes_root, "val", 16, labels=False)
    assert "label" not in no_labels[0]


def test_disparity_is_p_minus_one_over_256_with_nan_where_invalid(cityscapes_root):
    item = build_dataset("cityscapes", cityscapes_root, "val", 16, depth=True, label_size="native")[1]
    disparity = item["depth"][0, 0].numpy()
    assert math.isnan(disparity[0]) and math.isnan(disparity[4])
    np.testing.assert_array_equal(disparity[[1, 2, 3, 5, 6, 7]],
                                  np.array([0.0, 1.0, 100.0, 2.0, 1 / 256, 65534 / 256], np.float32))
    small = build_dataset("cityscapes", cityscapes_root, "val", 16, size=(2, 4), depth=True)[1]
    assert small["depth"].shape == (1, 2, 4)  # at label resolution; OpenCV nearest takes columns 0, 2, 4, 6
    assert math.isnan(small["depth"][0, 0, 0]) and small["depth"][0, 0, 1] == 1.0
    with pytest.raises(DadaError, match="disparity"):
        build_dataset("cityscapes", cityscapes_root, "train", 16, depth=True)


def test_list_file(cityscapes_root, tmp_path):
    listing = tmp_path / "val.txt"
    listing.write_text("lindau/lindau_000000_000019_leftImg8bit.png\n")
    ds = build_dataset("cityscapes", cityscapes_root, "val", 16, list_file=listing)
    assert len(ds) == 1 and ds[0]["name"].startswith("lindau/")
    listing.write_text("lindau/missing_leftImg8bit.png\n")
    with pytest.raises(DadaError, match="missing_leftImg8bit.png"):
        build_dataset("cityscapes", cityscapes_root, "val", 16, list_file=listing)


def test_bad_cityscapes_input(cityscapes_root):
    with pytest.raises(DadaError, match="leftImg8bit/test"):
        build_dataset("cityscapes", cityscapes_root, "test", 16)
    label = cityscapes_root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    bad = LABEL_IDS.copy()
    bad[0, 0] = 40
    Image.fromarray(bad).save(label)
    with pytest.raises(DadaError, match=r"000019_gtFine_labelIds.png has unknown label value\(s\) 40"):
        build_dataset("cityscapes", cityscapes_root, "val", 16)[1]
    Image.fromarray(LABEL_IDS[:, :6].copy()).save(label)
    with pytest.raises(DadaError, match="is 6×4 .* is 8×4"):
        build_dataset("cityscapes", cityscapes_root, "val", 16)[1]
    label.unlink()
    with pytest.raises(DadaError, match="labels=False"):
        build_dataset("cityscapes", cityscapes_root, "val", 16)
    assert len(build_dataset("cityscapes", cityscapes_root, "val", 16, labels=False)) == 2


def test_disparity_and_labels_of_the_wrong_format_are_refused(cityscapes_root):
    import cv2

    folder = cityscapes_root / "disparity/val/lindau"
    cv2.imwrite(str(folder / "lindau_000000_000019_disparity.png"), (DISPARITY // 257).astype(np.uint8))
    ds = build_dataset("cityscapes", cityscapes_root, "val", 16, depth=True, label_size="native")
    ds[0]  # frankfurt: still 16 bit
    with pytest.raises(DadaError, match=r"lindau_000000_000019_disparity.png is a 8-bit PNG with 1 "
                                        r"channel\(s\), expected 16-bit"):
        ds[1]
    label = cityscapes_root / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    cv2.imwrite(str(label), np.repeat(LABEL_IDS[:, :, None], 3, axis=2))  # a colour-like 3-channel file
    with pytest.raises(DadaError, match=r"labelIds.png is a 8-bit PNG with 3 channel\(s\), expected 8-bit "
                                        r"with 1 channel"):
        build_dataset("cityscapes", cityscapes_root, "val", 16, label_size="native")[1]
