"""CamVid in the SegNet distribution's layout: files written here in that format (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dada.data import build_dataset
from dada.data.camvid import write_camvid
from dada.data.classes import CLASSES_CAMVID11, IGNORE_INDEX
from dada.data.doctor import diagnose
from dada.errors import DadaError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def frame(seed: int, hw=(12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*hw, 3), dtype=np.uint8)


def labels(seed: int, hw=(12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 12, size=hw, dtype=np.uint8)  # 0..10 and void 11


def make_camvid(root: Path, splits=("train", "val"), count: int = 3, suffix: str = ".jpg") -> Path:
    for split in splits:
        for i in range(count):
            write_camvid(root, split, f"0016E5_{i:05d}", frame(i), labels(i), suffix=suffix)
    return root


def test_reads_frames_and_labels_void_ignored(tmp_path):
    root = make_camvid(tmp_path, suffix=".png")
    ds = build_dataset("camvid", root, "val", 11, label_size="native")
    assert len(ds) == 3 and ds.num_classes == 11 and ds.label_class_set is CLASSES_CAMVID11
    item = ds[1]
    raw = labels(1)
    label = item["label"].numpy()
    assert item["name"] == "0016E5_00001.png" and item["image"].shape == (3, 12, 16)
    assert (label[raw == 11] == IGNORE_INDEX).all()
    assert (label[raw < 11] == raw[raw < 11]).all()


def test_jpeg_frames_resize_and_unlabelled_target(tmp_path):
    root = make_camvid(tmp_path, splits=("train",))
    ds = build_dataset("camvid", root, "train", 16, size=(24, 32), labels=False)  # a 16-class model's target
    item = ds[0]
    assert item["image"].shape == (3, 24, 32) and "label" not in item
    # training labels of a 16-class model are refused: they are CamVid's 11 classes
    with pytest.raises(DadaError, match="model.num_classes=11"):
        build_dataset("camvid", root, "train", 16)
    # evaluation (native labels) of a 16-class model keeps the 11 CamVid classes
    assert build_dataset("camvid", root, "train", 16, label_size="native").num_classes == 11


def test_label_id_above_void_is_refused_naming_the_file(tmp_path):
    root = make_camvid(tmp_path, splits=("val",))
    bad = labels(0)
    bad[0, 0] = 12
    write_camvid(root, "val", "0016E5_00000", frame(0), bad, suffix=".jpg")
    ds = build_dataset("camvid", root, "val", 11, label_size="native")
    with pytest.raises(DadaError, match=r"0016E5_00000\.png.*unknown label value\(s\) 12"):
        ds[0]


def test_colour_label_is_refused(tmp_path):
    root = make_camvid(tmp_path, splits=("val",), count=1)
    write_camvid(root, "val", "0016E5_00000", frame(0), suffix=".jpg")
    from PIL import Image

    Image.fromarray(frame(3)).save(root / "valannot" / "0016E5_00000.png")
    with pytest.raises(DadaError, match="8-bit PNG with 3 channel"):
        build_dataset("camvid", root, "val", 11, label_size="native")[0]


def test_missing_label_partner_is_named(tmp_path):
    root = make_camvid(tmp_path, splits=("val",))
    (root / "valannot" / "0016E5_00002.png").unlink()
    with pytest.raises(DadaError, match=r"0016E5_00002\.jpg.*valannot"):
        build_dataset("camvid", root, "val", 11)
    # without labels (a training target) the frame alone is enough
    assert len(build_dataset("camvid", root, "val", 11, labels=False)) == 3


def test_size_mismatch_names_the_label(tmp_path):
    root = make_camvid(tmp_path, splits=("val",), count=1)
    write_camvid(root, "val", "0016E5_00000", frame(0), labels(0, hw=(6, 8)), suffix=".jpg")
    with pytest.raises(DadaError, match=r"label file .*0016E5_00000\.png is 8×6 .* must have the same size"):
        build_dataset("camvid", root, "val", 11, label_size="native")[0]


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(DadaError, match=r"val holds no frames"):
        build_dataset("camvid", tmp_path, "val", 11)
    with pytest.raises(DadaError, match=r"split 'test' not found.*splits found under .*: val"):
        build_dataset("camvid", tmp_path, "test", 11)
    make_camvid(tmp_path, splits=("train",), count=1)
    (tmp_path / "trainannot" / "0016E5_00000.png").unlink()
    (tmp_path / "trainannot").rmdir()
    with pytest.raises(DadaError, match="trainannot is not a folder"):
        build_dataset("camvid", tmp_path, "train", 11)
    with pytest.raises(DadaError, match="CamVid has no depth"):
        build_dataset("camvid", tmp_path, "train", 11, depth=True, labels=False)


def test_doctor_reports_counts_classes_and_pairing(tmp_path):
    root = make_camvid(tmp_path)
    report = diagnose("camvid", root)
    text = report.render()
    assert report.usable, text
    assert "train: 3 images, 3 labels in trainannot/" in text and "test: absent" in text
    assert "classes sky, building" in text
    (root / "valannot" / "0016E5_00001.png").unlink()
    write_camvid(root, "train", "0016E5_00000", frame(0), labels(0, hw=(6, 8)), suffix=".jpg")
    broken = diagnose("camvid", root)
    text = broken.render()
    assert not broken.usable
    assert "val: 1 image(s) without a label file in valannot/: 0016E5_00001.jpg" in text
    assert "0016E5_00000.png (8×6 vs image 16×12)" in text


def test_doctor_cli_exit_status(tmp_path, capsys):
    from dada.cli import main

    root = make_camvid(tmp_path)
    assert main(["doctor", "camvid", str(root)]) == 0
    bad = labels(2)
    bad[3, 3] = 200
    write_camvid(root, "val", "0016E5_00002", frame(2), bad, suffix=".jpg")
    assert main(["doctor", "camvid", str(root), "--all"]) == 2
    assert "unknown label value(s) 200" in capsys.readouterr().out


def test_real_camvid_frames_if_present():
    if not (REAL / "val").is_dir():
        pytest.skip(f"the real CamVid frames are not at {REAL}")
    ds = build_dataset("camvid", REAL, "val", 16, size=(192, 256), label_size="native")
    item = ds[0]
    assert len(ds) == 101 and item["image"].shape == (3, 192, 256) and item["label"].shape == (360, 480)
    assert int(item["label"].max()) in (*range(11), IGNORE_INDEX)
