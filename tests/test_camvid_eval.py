"""Synthetic source → CamVid end to end on tiny files: the benchmark2camvid presets train (tiny model,
2 iterations), the 16 predicted classes are merged into CamVid's 11 (during training and in ``dada eval
--dataset camvid --split val|test``), the oracle trains on CamVid's 11 classes, and the merge itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dada.cli import main
from dada.config import load_config
from dada.data.camvid import write_camvid
from dada.data.classes import CLASSES_16, CLASSES_CAMVID11
from dada.engine import Trainer
from dada.errors import DadaError
from dada.evaluation.classmap import SYNTHIA16_TO_CAMVID11, class_map
from dada.evaluation.evaluator import SegmentationEvaluator
from test_data_camvid import frame, labels

HW = (36, 48)  # CamVid's 4:3, small


def tiny(tmp: Path, camvid: Path, preset: str, *more: str):
    return load_config(preset, [
        "data.benchmark.num_source=12", "data.benchmark.num_target_train=2",
        "data.benchmark.num_target_val=1",
        "data.benchmark.size=[32,64]", f"data.benchmark.cache_dir={tmp / 'cache'}",
        "model.arch=tiny", "model.pretrained=none", "data.source.batch_size=2", "data.target.batch_size=2",
        "model.output_stride=8", "data.target.size=[48,64]", "data.target.augment.crop=[32,64]",
        "data.val.size=[48,64]",
        f"data.target.root={camvid}", "train.max_iters=2", "eval.every=2", "train.progress=false",
        "train.device=cpu", "train.checkpoint_every=2", f"output.root={tmp / 'runs'}", *more])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("camvid")
    camvid = tmp / "camvid"
    for split, count in (("train", 4), ("val", 3), ("test", 2)):
        for i in range(count):
            write_camvid(camvid, split, f"{split}_{i:03d}", frame(i, HW), labels(i, HW), suffix=".jpg")
    torch.manual_seed(0)
    run = Trainer(tiny(tmp, camvid, "benchmark2camvid_s7")).fit()
    return {"tmp": tmp, "camvid": camvid, "run": run}


def test_training_scores_the_merged_prediction_on_camvid_val(study):
    records = [json.loads(x) for x in (study["run"] / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert len(evaluations) == 1 and 0.0 <= evaluations[0]["miou"] <= 1.0


@pytest.mark.parametrize("split, images", [("val", 3), ("test", 2)])
def test_dada_eval_on_any_camvid_folder(study, split, images, tmp_path, capsys):
    out = tmp_path / split
    code = main(["eval", str(study["run"]), "--data", str(study["camvid"]), "--dataset", "camvid",
                 "--split", split, "--device", "cpu", "--figures", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    result = results["result"]
    assert results["dataset"]["split"] == split and result["num_images"] == images
    assert result["num_classes"] == 11 and result["class_names"] == list(CLASSES_CAMVID11.names)
    assert len(result["iou"]) == 11 and len(result["confusion"]) == 11
    assert result["class_map"]["merged"]["bicyclist"] == ["rider", "motorcycle", "bicycle"]
    assert result["depth_ranges"] is None and result["miou13"] is None
    assert any("IoU by depth range skipped" in n for n in results["notes"])
    assert results["depth_quality"]["images"] >= 1  # the depth head, scored on the source's val images
    text = (out / "results.md").read_text()
    assert "car ← car + bus" in text and "CamVid has no depth" in text


def test_oracle_trains_on_camvids_eleven_classes(study):
    cfg = tiny(study["tmp"], study["camvid"], "benchmark2camvid_oracle", "eval.every=0")
    assert cfg.model.num_classes == 11
    assert cfg.data.source.name == "camvid" and cfg.data.source.split == "train"
    run = Trainer(cfg).fit()
    from dada.evaluation.pipeline import evaluate_run

    results = evaluate_run(run, device="cpu", figures=0, progress=False)
    assert results["result"]["num_classes"] == 11 and results["result"]["class_map"] is None
    assert "oracle (target-trained)" in results["model"]["label"]


def test_camvid_root_is_required():
    cfg = load_config("benchmark2camvid_s1")
    if cfg.data.target.root is not None:
        pytest.skip(f"DADA_CAMVID is set ({cfg.data.target.root}): the root comes from it")
    from dada.engine.data import build_part

    with pytest.raises(DadaError, match="data.target.root is not set"):
        build_part(cfg, "target")


def test_merge_scores_wall_as_building_and_bus_as_car():
    assert class_map(16, CLASSES_CAMVID11) is SYNTHIA16_TO_CAMVID11
    assert class_map(11, CLASSES_CAMVID11) is None
    with pytest.raises(DadaError, match="no class map"):
        class_map(7, CLASSES_CAMVID11)
    names = CLASSES_16.names
    logits = torch.zeros(1, 16, 2, 2)
    for (y, x), cls in (((0, 0), "wall"), ((0, 1), "bus"), ((1, 0), "sky"), ((1, 1), "road")):
        logits[0, names.index(cls), y, x] = 5.0
    cam = CLASSES_CAMVID11.names
    label = torch.tensor([[cam.index("building"), cam.index("car")],
                          [cam.index("sky"), cam.index("pavement")]])
    evaluator = SegmentationEvaluator(11, cam, depth_bins=None, class_map=SYNTHIA16_TO_CAMVID11)
    evaluator.process([{"label": label, "name": "a"}], logits)
    result = evaluator.evaluate()
    iou = dict(zip(cam, result.iou, strict=True))
    assert iou["building"] == iou["car"] == iou["sky"] == 1.0
    assert iou["road"] == 0.0 and iou["pavement"] == 0.0  # road predicted where pavement is
    with pytest.raises(DadaError, match="predicts 11 classes"):
        evaluator.process([{"label": label, "name": "b"}], torch.zeros(1, 11, 2, 2))
