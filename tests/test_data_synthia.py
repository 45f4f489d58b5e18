"""SYNTHIA-RAND-CITYSCAPES read from tiny files in the real formats, checked against hand-computed values."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dada import DadaError
from dada.data import build_dataset
from dada.data.readers import anydepth_gray
from dada.data.synthia import label_png as synthia_label_png
from dada.data.synthia import write_synthia

MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434], dtype=np.float32)

# raw SYNTHIA ids: road 3, lanemarking 22, wall 21, car 8, void 0, bus 19, sky 1, pedestrian 10
RAW_IDS = np.array([[3, 3, 22, 21, 8, 0],
                    [3, 19, 22, 21, 8, 1],
                    [10, 19, 4, 2, 6, 1],
                    [10, 12, 4, 2, 6, 1]], dtype=np.uint16)
# the same ids mapped by hand: to 16 classes, to 7 classes
TRAIN_16 = np.array([[0, 0, 255, 3, 12, 255],
                     [0, 13, 255, 3, 12, 9],
                     [10, 13, 1, 2, 8, 9],
                     [10, 14, 1, 2, 8, 9]])
TRAIN_7 = np.array([[0, 0, 0, 255, 6, 255],
                    [0, 255, 0, 255, 6, 4],
                    [5, 255, 0, 1, 3, 4],
                    [5, 255, 0, 1, 3, 4]])
# instance ids in the second channel are valid class ids too, so reading the wrong channel shows
INSTANCES = np.full((4, 6), 8, dtype=np.uint16)


def rgb_image(height=4, width=6):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    rgb[0, 0] = (10, 20, 30)
    return rgb


def depth_bgr():
    """A 3-channel 16-bit depth array (BGR) whose channels differ at some pixels."""
    depth = np.repeat(np.full((4, 6), 1000, dtype=np.uint16)[:, :, None], 3, axis=2)
    depth[0, 0] = (100, 200, 300)      # B, G, R → (3737·100 + 19234·200 + 9797·300 + 16384) >> 15 = 218
    depth[0, 1] = (65535, 65535, 65535)  # equal channels: kept exactly → inverse depth 1
    depth[0, 2] = (0, 0, 0)              # → 65536
    depth[1, 0] = (65535, 0, 0)          # blue only → (3737·65535 + 16384) >> 15 = 7474
    depth[1, 1] = (0, 0, 65535)          # red only → 19594
    depth[1, 2] = (0, 65535, 0)          # green only → 38467
    return depth


EXPECTED_GRAY = {(0, 0): 218, (0, 1): 65535, (0, 2): 0, (1, 0): 7474, (1, 1): 19594, (1, 2): 38467}


@pytest.fixture
def synthia_root(tmp_path):
    root = tmp_path / "SYNTHIA"
    write_synthia(root, "0000000.png", rgb_image(), RAW_IDS, depth_bgr(), instance_ids=INSTANCES)
    write_synthia(root, "0000001.png", rgb_image()[::-1].copy(), RAW_IDS[::-1].copy(),
                  np.full((4, 6), 500, np.uint16), instance_ids=INSTANCES)
    return root


def test_raw_gt_labels_hold_the_class_in_the_first_rgb_channel(synthia_root):
    raw = cv2.imread(str(synthia_root / "GT/LABELS/0000000.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (4, 6, 3)
    np.testing.assert_array_equal(raw[:, :, 2], RAW_IDS)  # BGR index 2 = R
    # Pillow cannot read these files faithfully (it truncates 16-bit RGB to 8 bits)
    assert Image.open(synthia_root / "GT/LABELS/0000000.png").mode == "RGB"


def test_synthia_item_matches_hand_computed_values(synthia_root):
    ds = build_dataset("synthia", synthia_root, "all", 16, depth=True)
    assert len(ds) == 2
    item = ds[0]
    assert item["name"] == "0000000.png"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 4, 6)
    # pixel (0, 0) is RGB (10, 20, 30): BGR minus the Caffe mean, no /255
    expected = np.array([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434], dtype=np.float32)
    np.testing.assert_array_equal(item["image"][:, 0, 0].numpy(), expected)
    rgb = rgb_image().astype(np.float32)
    np.testing.assert_array_equal(item["image"].numpy(), (rgb[:, :, ::-1] - MEAN_BGR).transpose(2, 0, 1))
    assert item["label"].dtype == torch.int64
    np.testing.assert_array_equal(item["label"].numpy(), TRAIN_16)
    depth = item["depth"]
    assert depth.shape == (1, 4, 6) and depth.dtype == torch.float32
    for (y, x), gray in EXPECTED_GRAY.items():
        assert depth[0, y, x].item() == np.float32(65536.0) / np.float32(gray + 1)
    assert depth[0, 3, 5].item() == np.float32(65536.0 / 1001.0)
    assert depth[0, 0, 1].item() == 1.0 and depth[0, 0, 2].item() == 65536.0


def test_depth_is_the_same_without_the_opencv_fast_path(synthia_root, monkeypatch):
    from dada.data import readers

    fast = build_dataset("synthia", synthia_root, "all", 16, labels=False, depth=True)[0]["depth"]
    monkeypatch.setattr(readers, "_ANYDEPTH_FAST", False)
    slow = build_dataset("synthia", synthia_root, "all", 16, labels=False, depth=True)[0]["depth"]
    assert torch.equal(fast, slow)


def test_anydepth_reproduces_opencv(tmp_path):
    rng = np.random.default_rng(0)
    for dtype, high in ((np.uint16, 65536), (np.uint8, 256)):
        array = rng.integers(0, high, (9, 11, 3)).astype(dtype)
        array[0, :3] = array[0, :3, :1]  # some pixels with equal channels
        path = tmp_path / f"d{high}.png"
        cv2.imwrite(str(path), array)
        np.testing.assert_array_equal(anydepth_gray(array), cv2.imread(str(path), cv2.IMREAD_ANYDEPTH))
    gray = anydepth_gray(depth_bgr())
    for (y, x), value in EXPECTED_GRAY.items():
        assert gray[y, x] == value


def test_seven_classes_and_parsed_labels_and_nested_depth(tmp_path):
    root = tmp_path / "S"
    write_synthia(root, "0000000.png", rgb_image(), RAW_IDS, np.full((4, 6), 9, np.uint16),
                  labels="parsed", depth_folder="Depth/Depth")
    item = build_dataset("synthia", root, "all", 7, depth=True)[0]
    np.testing.assert_array_equal(item["label"].numpy(), TRAIN_7)
    assert torch.all(item["depth"] == np.float32(65536.0 / 10.0))


def test_resizing_uses_the_official_libraries(synthia_root):
    ds = build_dataset("synthia", synthia_root, "all", 16, size=(2, 3), depth=True)
    item = ds[0]
    resized = np.asarray(Image.fromarray(rgb_image()).resize((3, 2), Image.BICUBIC)).astype(np.float32)
    np.testing.assert_array_equal(item["image"].numpy(), (resized[:, :, ::-1] - MEAN_BGR).transpose(2, 0, 1))
    # Pillow nearest samples source pixels 1, 3 (rows) and 1, 3, 5 (columns) ...
    np.testing.assert_array_equal(item["label"].numpy(), TRAIN_16[[1, 3]][:, [1, 3, 5]])
    # ... OpenCV INTER_NEAREST (depth, as the official get_depth) samples rows 0, 2 and columns 0, 2, 4
    gray = anydepth_gray(depth_bgr())[[0, 2]][:, [0, 2, 4]].astype(np.float32)
    np.testing.assert_array_equal(item["depth"][0].numpy(), np.float32(65536.0) / (gray + 1))
    native = build_dataset("synthia", synthia_root, "all", 16, size=(2, 3), label_size="native")[0]
    assert native["image"].shape == (3, 2, 3) and native["label"].shape == (4, 6)


def test_splits_list_files_and_fraction(synthia_root):
    (synthia_root / "val.txt").write_text("0000001.png\n\n")
    ds = build_dataset("synthia", synthia_root, "val", 16)
    assert [r.name for r in ds.records] == ["0000001.png"]
    np.testing.assert_array_equal(ds[0]["label"].numpy(), TRAIN_16[::-1])
    assert "depth" not in ds[0]
    with pytest.raises(DadaError, match="train.txt"):
        build_dataset("synthia", synthia_root, "train", 16)
    half = build_dataset("synthia", synthia_root, "all", 16, fraction=0.5, seed=3)
    again = build_dataset("synthia", synthia_root, "all", 16, fraction=0.5, seed=3)
    assert len(half) == 1 and [r.name for r in half.records] == [r.name for r in again.records]
    with pytest.raises(DadaError, match="fraction"):
        build_dataset("synthia", synthia_root, "all", 16, fraction=0)
    unlabeled = build_dataset("synthia", synthia_root, "all", 16, labels=False)
    assert set(unlabeled[0]) == {"image", "name"}


def test_augmentations_are_seeded_and_consistent(synthia_root):
    augment = {"crop": [2, 4], "flip": True, "scale": [1.0, 1.5]}
    ds = build_dataset("synthia", synthia_root, "all", 16, depth=True, augment=augment, seed=5)
    item = ds[0]
    assert item["image"].shape == (3, 2, 4) and item["label"].shape == (2, 4)
    assert item["depth"].shape == (1, 2, 4)
    again = build_dataset("synthia", synthia_root, "all", 16, depth=True, augment=augment, seed=5)[0]
    assert torch.equal(item["image"], again["image"]) and torch.equal(item["label"], again["label"])
    flip_only = build_dataset("synthia", synthia_root, "all", 16, augment={"flip": True}, seed=0)
    labels = {tuple(flip_only[0]["label"][0].tolist()) for _ in range(12)}
    assert labels == {tuple(TRAIN_16[0]), tuple(TRAIN_16[0][::-1])}
    with pytest.raises(DadaError, match="augmentation"):
        build_dataset("synthia", synthia_root, "all", 16, augment={"rotate": 3})


# ------------------------------------------------------------------------------------------ bad input
def test_missing_folder_and_unpaired_files(synthia_root, tmp_path):
    with pytest.raises(DadaError, match="does not exist"):
        build_dataset("synthia", tmp_path / "nowhere", "all", 16)
    with pytest.raises(DadaError, match="RGB"):
        build_dataset("synthia", tmp_path, "all", 16)
    (synthia_root / "GT/LABELS/0000001.png").unlink()
    with pytest.raises(DadaError, match=r"1 label file\(s\) missing .*0000001.png"):
        build_dataset("synthia", synthia_root, "all", 16)
    (synthia_root / "Depth/0000000.png").unlink()
    with pytest.raises(DadaError, match="0000000.png"):
        build_dataset("synthia", synthia_root, "all", 16, labels=False, depth=True)


def test_truncated_and_non_image_files(synthia_root):
    label = synthia_root / "GT/LABELS/0000000.png"
    label.write_bytes(label.read_bytes()[:60])
    ds = build_dataset("synthia", synthia_root, "all", 16, depth=True)
    with pytest.raises(DadaError, match="0000000.png.*(truncated|not an image)"):
        ds[0]
    (synthia_root / "RGB/0000001.png").write_text("not a png")
    with pytest.raises(DadaError, match="RGB/0000001.png.*not a readable image"):
        ds[1]
    (synthia_root / "Depth/0000000.png").write_bytes(b"")
    with pytest.raises(DadaError, match="empty"):
        build_dataset("synthia", synthia_root, "all", 16, labels=False, depth=True)[0]


def test_size_mismatch_and_unknown_label_value(synthia_root):
    cv2.imwrite(str(synthia_root / "GT/LABELS/0000001.png"), synthia_label_png(np.zeros((4, 5), np.uint16)))
    bad_ids = RAW_IDS.copy()
    bad_ids[2, 2] = 40
    cv2.imwrite(str(synthia_root / "GT/LABELS/0000000.png"), synthia_label_png(bad_ids))
    ds = build_dataset("synthia", synthia_root, "all", 16)
    with pytest.raises(DadaError, match=r"0000000.png has unknown label value\(s\) 40 \(1 pixels\)"):
        ds[0]
    with pytest.raises(DadaError, match=r"0000001.png is 5×4 .* is 6×4"):
        ds[1]


def test_crop_larger_than_the_image_pads_with_ignore_and_far_depth(synthia_root):
    ds = build_dataset("synthia", synthia_root, "all", 16, depth=True, augment={"crop": [6, 8]}, seed=1)
    item = ds[1]  # 4×6 image, constant depth 500 → inverse depth 65536/501 everywhere
    label, depth = item["label"].numpy(), item["depth"][0].numpy()
    assert label.shape == (6, 8) and depth.shape == (6, 8)
    assert (label[4:] == 255).all() and (label[:, 6:] == 255).all()
    np.testing.assert_array_equal(label[:4, :6], TRAIN_16[::-1])
    assert np.all(depth == np.float32(65536.0) / np.float32(501.0))
    assert torch.all(item["image"][:, 4:, :] == -torch.from_numpy(MEAN_BGR)[:, None, None])


def test_items_batch_through_a_dataloader(synthia_root):
    ds = build_dataset("synthia", synthia_root, "all", 16, depth=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 4, 6) and batch["label"].shape == (2, 4, 6)
    assert batch["depth"].shape == (2, 1, 4, 6) and batch["name"] == ["0000000.png", "0000001.png"]


def test_depth_or_labels_of_the_wrong_bit_depth_are_refused_naming_the_file(synthia_root):
    """An 8-bit conversion of the 16-bit centimetre depth would train with depth ~250× off."""
    depth8 = (depth_bgr() // 257).astype(np.uint8)
    cv2.imwrite(str(synthia_root / "Depth/0000001.png"), depth8)
    ds = build_dataset("synthia", synthia_root, "all", 16, depth=True)
    assert ds[0]["depth"].shape == (1, 4, 6)  # the 16-bit file still reads
    with pytest.raises(DadaError, match=r"Depth/0000001.png is a 8-bit PNG with 3 channel\(s\), expected "
                                        r"16-bit .*centimetres"):
        ds[1]
    cv2.imwrite(str(synthia_root / "GT/LABELS/0000000.png"), synthia_label_png(RAW_IDS).astype(np.uint8))
    with pytest.raises(DadaError, match=r"GT/LABELS/0000000.png is a 8-bit PNG .* expected 16-bit"):
        build_dataset("synthia", synthia_root, "all", 16)[0]
