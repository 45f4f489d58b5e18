"""`dada predict` on a folder of generated images (one corrupt) with a tiny checkpoint."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import save_tiny_checkpoint
from dada.cli import main
from dada.data.classes import CLASSES_16
from dada.deploy.predict import gather_inputs, input_settings, predict_checkpoint
from dada.errors import DadaError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), (32, 64))


def make_images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 255, (40, 80, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "sub" / "b.jpg"), rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "c.png"), rng.integers(0, 255, (40, 80), dtype=np.uint8))  # grayscale
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "notes.txt").write_text("not an image extension: ignored")
    return folder


def test_predict_folder_skips_the_corrupt_file(checkpoint, tmp_path, capsys):
    images = make_images(tmp_path / "images")
    out = tmp_path / "out"
    code = main(["predict", str(checkpoint), str(images), "--out", str(out), "--batch-size", "2",
                 "--device", "cpu"])
    assert code == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "skipping" in captured.err
    assert "3 images" in captured.out
    expected = {f"{name}_{kind}.png" for name in ("a", "sub__b", "c") for kind in ("seg", "overlay", "depth")}
    assert {p.name for p in out.iterdir()} == expected | {"predict.json"}  # the manifest (issue 28)
    seg = cv2.imread(str(out / "a_seg.png"))[..., ::-1]
    assert seg.shape == (40, 80, 3)  # the image's own resolution
    palette = {tuple(c) for c in CLASSES_16.palette}
    assert {tuple(c) for c in np.unique(seg.reshape(-1, 3), axis=0)} <= palette
    assert cv2.imread(str(out / "sub__b_overlay.png")).shape == (30, 50, 3)
    depth = cv2.imread(str(out / "c_depth.png"))
    assert depth.shape == (40, 80, 3) and depth.std() > 0
    # an output folder inside the input folder: its PNGs are not read back as inputs
    inside = main(["predict", str(checkpoint), str(images), "--out", str(images / "pred"), "--device", "cpu"])
    assert inside == 0 and len(list((images / "pred").iterdir())) == 9 + 1  # + predict.json
    assert main(["predict", str(checkpoint), str(images), "--out", str(images / "pred"), "--overwrite",
                 "--device", "cpu"]) == 0
    assert len(list((images / "pred").iterdir())) == 9 + 1
    capsys.readouterr()
    # the output folder is never reused silently
    again = ["predict", str(checkpoint), str(images / "a.png"), "--out", str(out), "--device", "cpu"]
    assert main(again) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_globs_batches_and_settings(checkpoint, tmp_path):
    images = make_images(tmp_path / "images")
    found = gather_inputs([str(images / "*.png"), images / "sub" / "b.jpg"])
    assert [name for _, name in found] == ["a", "broken", "c", "b"]
    assert [name for _, name in gather_inputs([images / "a.png", images / "a.png"])] == ["a", "a_2"]
    with pytest.raises(DadaError, match="no such file"):
        gather_inputs([tmp_path / "missing"])
    with pytest.raises(DadaError, match="no file matches"):
        gather_inputs([str(tmp_path / "*.jpeg")])
    one = predict_checkpoint(checkpoint, [images / "a.png", images / "c.png"], tmp_path / "one", batch_size=1,
                             device="cpu", progress=False)
    predict_checkpoint(checkpoint, [images / "a.png", images / "c.png"], tmp_path / "two", batch_size=2,
                             device="cpu", progress=False)
    assert one["settings"] == {"preprocess": "caffe", "size": (32, 64), "letterbox": False,
                               "num_classes": 16}
    for name in ("a_seg.png", "c_seg.png"):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "one" / name)),
                                      cv2.imread(str(tmp_path / "two" / name)))
    assert input_settings({"config": None, "model_spec": {"num_classes": 7}}) == {
        "preprocess": "caffe", "size": (512, 1024), "letterbox": False, "num_classes": 7}
    mapillary = {"config": {"data": {"val": {"name": "mapillary", "size": None}}},
                 "model_spec": {"num_classes": 7}}
    assert input_settings(mapillary)["size"] == (768, 1024) and input_settings(mapillary)["letterbox"]


def test_predict_with_an_official_state_dict(checkpoint, tmp_path):
    from dada.models.official import export

    ours = torch.load(checkpoint, weights_only=True)
    official = tmp_path / "model_2000.pth"
    torch.save(export(ours["model"], "segmenter"), official)
    images = make_images(tmp_path / "images")
    result = predict_checkpoint(official, [images / "a.png"], tmp_path / "out", size=(32, 64), device="cpu",
                                progress=False)
    assert result["settings"] == {"preprocess": "caffe", "size": (32, 64), "letterbox": False,
                                  "num_classes": 16}
    reference = predict_checkpoint(checkpoint, [images / "a.png"], tmp_path / "ref", device="cpu",
                                   progress=False)
    assert reference["images"] == result["images"] == 1
    for kind in ("seg", "depth"):  # the same weights through the official layout give the same PNGs
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / f"a_{kind}.png")),
                                      cv2.imread(str(tmp_path / "ref" / f"a_{kind}.png")))


def test_letterboxed_input_is_cropped_back(checkpoint, tmp_path):
    from dada.deploy.predict import predict_images
    from dada.models import load_segmenter

    model, _ = load_segmenter(checkpoint)
    images = make_images(tmp_path / "images")
    result = predict_images(model, [images / "a.png"], tmp_path / "out", num_classes=16, size=(48, 48),
                            letterbox=True, progress=False)
    assert result["images"] == 1
    seg = cv2.imread(str(tmp_path / "out" / "a_seg.png"))
    assert seg.shape == (40, 80, 3)
    palette = {tuple(c) for c in CLASSES_16.palette}
    assert {tuple(c) for c in np.unique(seg[..., ::-1].reshape(-1, 3), axis=0)} <= palette


def test_predict_draws_the_prediction_merged_into_camvids_classes(checkpoint, tmp_path, capsys):
    from dada.data.classes import CLASSES_CAMVID11
    from dada.evaluation.classmap import SYNTHIA16_TO_CAMVID11

    images = make_images(tmp_path / "images")
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    assert main(["predict", str(checkpoint), str(images / "a.png"), "--out", str(plain),
                 "--device", "cpu"]) == 0
    assert main(["predict", str(checkpoint), str(images / "a.png"), "--out", str(merged), "--device", "cpu",
                 "--classes", "camvid11"]) == 0
    # the 16-class drawing read back to ids, merged as the evaluation merges, drawn in CamVid's palette
    drawn = cv2.imread(str(plain / "a_seg.png"))[..., ::-1]
    ids = np.full(drawn.shape[:2], -1)
    for index, colour in enumerate(CLASSES_16.palette):
        ids[(drawn == colour).all(-1)] = index
    assert (ids >= 0).all()
    expected = CLASSES_CAMVID11.colorize(np.asarray(SYNTHIA16_TO_CAMVID11.table)[ids])
    np.testing.assert_array_equal(cv2.imread(str(merged / "a_seg.png"))[..., ::-1], expected)
    import json

    assert json.loads((merged / "predict.json").read_text())["settings"]["classes"] == "camvid11"
    capsys.readouterr()
    # an unknown set, and a set no class map reaches, fail before anything is written
    for name, message in (("cityscapes19", "unknown class set"), ("common7", "no class map")):
        out = tmp_path / f"bad_{name}"
        assert main(["predict", str(checkpoint), str(images / "a.png"), "--out", str(out), "--device", "cpu",
                     "--classes", name]) == 2
        err = capsys.readouterr().err
        assert f"--classes {name}" in err and message in err and not out.exists()
