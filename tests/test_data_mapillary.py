"""Mapillary Vistas: letterboxing as the official code, labels at input or native resolution."""

import numpy as np
import pytest
from PIL import Image

from dada import DadaError
from dada.data import build_dataset
from dada.data.mapillary import write_mapillary
from dada.data.transforms import letterbox_shape

MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434], dtype=np.float32)
# Mapillary ids: road 13, sky 27, car 55, unlabeled 65, vegetation 30, person 19, bird 0, terrain 29 (flat)
WIDE_IDS = np.array([[27, 27, 27, 30, 30, 0],
                     [13, 55, 55, 19, 29, 65],
                     [13, 13, 13, 13, 29, 65]], dtype=np.uint8)
WIDE_7 = np.array([[4, 4, 4, 3, 3, 255],
                   [0, 6, 6, 5, 0, 255],
                   [0, 0, 0, 0, 0, 255]])
TALL_IDS = np.full((8, 3), 17, dtype=np.uint8)  # building → construction (1)


def rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)


@pytest.fixture
def mapillary_root(tmp_path):
    root = tmp_path / "mapillary"
    write_mapillary(root, "validation", "wide", rgb(3, 6), WIDE_IDS)
    write_mapillary(root, "validation", "tall", rgb(8, 3, 1), TALL_IDS)
    write_mapillary(root, "training", "t0", rgb(3, 6, 2), WIDE_IDS)
    return root


def test_letterbox_shape_truncates_like_the_official_code():
    assert letterbox_shape((3, 6), (6, 8)) == (4, 8)       # wider than 4:3: width fits
    assert letterbox_shape((8, 3), (6, 8)) == (6, 2)       # taller: height fits, int(2.25) = 2
    assert letterbox_shape((1200, 1600), (768, 1024)) == (768, 1024)
    assert letterbox_shape((1080, 1920), (768, 1024)) == (576, 1024)


def test_images_are_letterboxed_top_left_with_zero_fill(mapillary_root):
    ds = build_dataset("mapillary", mapillary_root, "validation", 7, size=(6, 8))
    assert [r.name for r in ds.records] == ["tall.jpg", "wide.jpg"]
    item = ds[1]
    decoded = Image.open(mapillary_root / "validation/images/wide.jpg").convert("RGB")
    fitted = np.asarray(decoded.resize((8, 4), Image.BICUBIC)).astype(np.float32)
    expected = np.zeros((6, 8, 3), np.float32)
    expected[:4] = fitted
    np.testing.assert_array_equal(item["image"].numpy(), (expected[:, :, ::-1] - MEAN_BGR).transpose(2, 0, 1))
    # the padding is 0 before mean subtraction, i.e. minus the mean afterwards
    np.testing.assert_array_equal(item["image"][:, 5, 0].numpy(), -MEAN_BGR)
    # labels letterboxed with Pillow nearest: rows 0, 1, 1, 2 and columns 0, 1, 1, 2, 3, 4, 4, 5; padding 255
    expected_label = np.full((6, 8), 255)
    expected_label[:4] = WIDE_7[[0, 1, 1, 2]][:, [0, 1, 1, 2, 3, 4, 4, 5]]
    np.testing.assert_array_equal(item["label"].numpy(), expected_label)
    tall = ds[0]
    assert (tall["label"][:, :2] == 1).all() and (tall["label"][:, 2:] == 255).all()


def test_evaluation_labels_stay_native_and_are_padded_to_four_thirds(mapillary_root):
    ds = build_dataset("mapillary", mapillary_root, "validation", 7, size=(6, 8), label_size="native")
    wide = ds[1]["label"].numpy()
    assert wide.shape == (4, 6)  # height = int(6 / (4/3)) = 4
    np.testing.assert_array_equal(wide[:3], WIDE_7)
    assert (wide[3] == 255).all()
    tall = ds[0]["label"].numpy()
    assert tall.shape == (8, 10)  # width = int(8 · 4/3) = 10
    assert (tall[:, :3] == 1).all() and (tall[:, 3:] == 255).all()


def test_default_canvas_and_split_names(mapillary_root):
    item = build_dataset("mapillary", mapillary_root, "train", 7)[0]  # 'train' finds training/
    assert item["image"].shape == (3, 768, 1024) and item["label"].shape == (768, 1024)
    assert item["name"] == "t0.jpg"
    with pytest.raises(DadaError, match="no class mapping"):
        build_dataset("mapillary", mapillary_root, "validation", 16)
    with pytest.raises(DadaError, match="no depth"):
        build_dataset("mapillary", mapillary_root, "validation", 7, depth=True)


def test_bad_mapillary_input(mapillary_root):
    with pytest.raises(DadaError, match="'testing' not found"):
        build_dataset("mapillary", mapillary_root, "testing", 7)
    bad = WIDE_IDS.copy()
    bad[0, 0] = 70
    write_mapillary(mapillary_root, "validation", "wide", rgb(3, 6), bad)
    ds = build_dataset("mapillary", mapillary_root, "validation", 7, size=(6, 8))
    with pytest.raises(DadaError, match=r"wide.png has unknown label value\(s\) 70"):
        ds[1]
    (mapillary_root / "validation/labels/tall.png").unlink()
    with pytest.raises(DadaError, match="tall.png"):
        build_dataset("mapillary", mapillary_root, "validation", 7)
