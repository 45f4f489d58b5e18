"""The 'folder' dataset: a CARLA-like export described by a YAML spec."""

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from dada import DadaError
from dada.data import build_dataset

CARLA_SPEC = {
    "num_classes": 16,
    "labels": {"format": "rgb",
               "map": {"128,64,128": "road", "244,35,232": "sidewalk", "0,0,142": "car", "70,130,180": "sky"},
               "ignore": ["0,0,0"]},
    "depth": {"format": "rgb24", "kind": "depth"},  # CARLA: (R + 256·G + 65536·B) / (2^24 − 1) · 1000 m
}


def carla_root(tmp_path):
    root = tmp_path / "carla"
    for folder in ("images", "labels", "depth"):
        (root / folder).mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 3, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(root / "images/frame_0001.png")
    colours = np.array([[[128, 64, 128], [244, 35, 232], [0, 0, 142]],
                        [[70, 130, 180], [0, 0, 0], [128, 64, 128]]], dtype=np.uint8)
    Image.fromarray(colours).save(root / "labels/frame_0001.png")
    raw = np.array([[167772, 16777215, 0], [1677, 335544, 65536]], dtype=np.int64)
    rgb24 = np.stack([raw & 255, (raw >> 8) & 255, (raw >> 16) & 255], axis=2).astype(np.uint8)  # R, G, B
    Image.fromarray(rgb24).save(root / "depth/frame_0001.png")
    (root / "dataset.yaml").write_text(yaml.safe_dump(CARLA_SPEC))
    return root, rgb, raw


def test_carla_colours_and_rgb24_depth(tmp_path):
    root, rgb, raw = carla_root(tmp_path)
    item = build_dataset("folder", root, "all", 16, depth=True)[0]
    assert item["name"] == "frame_0001.png"
    np.testing.assert_array_equal(item["label"].numpy(), [[0, 1, 12], [9, 255, 0]])
    metres = raw * 1000.0 / (256**3 - 1)
    centimetres = np.clip(metres * 100.0, 0, 65535)
    centimetres[0, 2] = 65535  # depth 0 is invalid → far plane
    expected = (65536.0 / (centimetres + 1.0)).astype(np.float32)
    np.testing.assert_array_equal(item["depth"][0].numpy(), expected)
    assert item["depth"][0, 0, 1] == 1.0  # 1000 m lies beyond SYNTHIA's 655.35 m range: clipped to far


def test_ids_png16_and_npy_inverse_depth(tmp_path):
    root = tmp_path / "sim"
    for folder in ("images", "labels", "depth"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "images/a.jpg")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "images/b.jpg")
    cv2.imwrite(str(root / "labels/a.png"), np.array([[700, 7], [11, 0]], np.uint16))
    cv2.imwrite(str(root / "labels/b.png"), np.array([[7, 7], [7, 7]], np.uint16))
    np.save(root / "depth/a.npy", np.array([[0.1, 0.5], [0.0, np.inf]], np.float32))  # 1/m
    np.save(root / "depth/b.npy", np.ones((2, 2), np.float32))
    spec = {"num_classes": 7, "labels": {"map": {700: "vehicle", 7: 0, 11: "construction"}, "ignore": [0]},
            "depth": {"format": "npy", "kind": "inverse_depth"}}
    ds = build_dataset("folder", root, "all", 7, depth=True, spec=spec)
    item = ds[0]
    np.testing.assert_array_equal(item["label"].numpy(), [[6, 0], [1, 255]])
    expected = np.array([[65536 / 1001.0, 65536 / 201.0], [1.0, 65536 / 65536.0]], np.float32)
    np.testing.assert_allclose(item["depth"][0].numpy(), expected, rtol=1e-6)
    assert item["depth"][0, 1, 0] == 1.0  # inverse depth 0 is invalid → far plane


def test_png16_depth_with_scale_and_spec_file(tmp_path):
    root = tmp_path / "png16"
    for folder in ("images", "depth"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(np.zeros((1, 3, 3), np.uint8)).save(root / "images/x.png")
    cv2.imwrite(str(root / "depth/x.png"), np.array([[1000, 0, 250]], np.uint16))  # millimetres
    spec = tmp_path / "mine.yaml"
    spec.write_text("num_classes: 16\ndepth: {format: png16, scale: 0.001, invalid: 0}\n")
    item = build_dataset("folder", root, "all", 16, depth=True, spec=spec)[0]
    np.testing.assert_array_equal(item["depth"][0, 0].numpy(),
                                  np.array([65536 / 101.0, 1.0, 65536 / 26.0], np.float32))
    assert "label" not in item


def test_bad_folder_input(tmp_path):
    root, _, _ = carla_root(tmp_path)
    colours = np.zeros((2, 3, 3), np.uint8)
    colours[0, 0] = (1, 2, 3)
    Image.fromarray(colours).save(root / "labels/frame_0001.png")
    with pytest.raises(DadaError, match=r"frame_0001.png has unknown label value\(s\) \(1,2,3\)"):
        build_dataset("folder", root, "all", 16)[0]
    relaxed = dict(CARLA_SPEC, labels=dict(CARLA_SPEC["labels"], unknown="ignore"))
    assert build_dataset("folder", root, "all", 16, spec=relaxed)[0]["label"][0, 0] == 255
    with pytest.raises(DadaError, match="not in the 16-class set"):
        build_dataset("folder", root, "all", 16, spec={"labels": {"map": {"1,2,3": "tree"}, "format": "rgb"}})
    with pytest.raises(DadaError, match="maps labels to 16 classes but num_classes=7"):
        build_dataset("folder", root, "all", 7)
    with pytest.raises(DadaError, match="depth.format must be one of"):
        build_dataset("folder", root, "all", 16, spec={"depth": {"format": "exr"}})
    with pytest.raises(DadaError, match="missing.yaml does not exist"):
        build_dataset("folder", root, "all", 16, spec=root / "missing.yaml")
    (root / "depth/frame_0001.png").unlink()
    with pytest.raises(DadaError, match=r"1 depth file\(s\) missing"):
        build_dataset("folder", root, "all", 16, depth=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "labels/frame_0001.png")
    with pytest.raises(DadaError, match="is 4×4 .* is 3×2"):
        build_dataset("folder", root, "all", 16)[0]


def test_write_folder_round_trips_through_the_reader(tmp_path):
    from dada.data.folder import write_folder

    root = tmp_path / "written"
    rgb = np.random.default_rng(3).integers(0, 256, (2, 3, 3)).astype(np.uint8)
    colours = np.array([[[128, 64, 128], [0, 0, 142], [70, 130, 180]],
                        [[0, 0, 0], [244, 35, 232], [128, 64, 128]]], np.uint8)
    metres = np.array([[1.0, 2.5, 10.0], [0.0, 4.0, 655.0]], np.float32)
    write_folder(root, "f.png", rgb, colours, metres, spec={**CARLA_SPEC, "depth": {"format": "npy"}})
    write_folder(root, "g.png", rgb[::-1].copy(), colours[::-1].copy(), metres[::-1].copy())
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == [
        "dataset.yaml", "f.npy", "f.png", "f.png", "g.npy", "g.png", "g.png"]
    item = build_dataset("folder", root, "all", 16, depth=True)[0]
    np.testing.assert_array_equal(item["label"].numpy(), [[0, 12, 9], [255, 1, 0]])
    centimetres = np.where(metres > 0, metres * 100.0, 65535)
    np.testing.assert_allclose(item["depth"][0].numpy(), 65536.0 / (centimetres + 1.0), rtol=1e-6)
    write_folder(tmp_path / "ids", "h.png", rgb, np.array([[7, 700, 7], [0, 7, 7]], np.uint16))
    ids = cv2.imread(str(tmp_path / "ids/labels/h.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and ids[0, 1] == 700  # 16-bit ids survive
