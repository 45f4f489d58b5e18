"""`dada eval` end to end on a small Cityscapes-layout folder with tiny checkpoints, its reports, snapshots
and selection, and its errors (class count, labels not matching images, existing output)."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dada.cli import main
from dada.errors import DadaError
from dada.evaluation.pipeline import evaluate_run
from dada.models import build_segmenter

INPUT_SIZE = [32, 64]


def make_cityscapes(root: Path, count: int = 2, hw=(48, 96), seed: int = 0) -> Path:
    """Cityscapes val files in the real formats: RGB PNGs, labelIds PNGs, 16-bit disparity PNGs."""
    rng = np.random.default_rng(seed)
    for sub in ("leftImg8bit", "gtFine", "disparity"):
        (root / sub / "val" / "city").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        stem = f"city_{index:06d}_000019"
        cv2.imwrite(str(root / "leftImg8bit/val/city" / f"{stem}_leftImg8bit.png"),
                    rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
        label = rng.choice([7, 8, 11, 21, 23, 24, 26, 0], size=hw).astype(np.uint8)  # 0: ignored
        cv2.imwrite(str(root / "gtFine/val/city" / f"{stem}_gtFine_labelIds.png"), label)
        disparity = (rng.uniform(1, 80, hw) * 256 + 1).astype(np.uint16)
        disparity[:3] = 0  # invalid
        cv2.imwrite(str(root / "disparity/val/city" / f"{stem}_disparity.png"), disparity)
    return root


def make_checkpoint(path: Path, data_root: Path | None, *, depth_head=True, seed=0, num_classes=16,
                    preset="bench_dada", iteration=10) -> Path:
    """One of our checkpoints (format dada-seg/1) of a tiny segmenter."""
    torch.manual_seed(seed)
    net = build_segmenter(arch="tiny", num_classes=num_classes, depth_head=depth_head,
                          feature_fusion=depth_head)
    config = {"preset": preset, "seed": seed,
              "method": {"name": preset.split("_", 1)[-1], "depth_supervision": depth_head},
              "model": {"num_classes": num_classes},
              "data": {"preprocess": "caffe",
                       "val": {"name": "cityscapes", "root": str(data_root) if data_root else None,
                               "split": "val", "size": INPUT_SIZE},
                       "source": {"name": "synthia", "root": None, "split": "all", "fraction": 1.0}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "dada-seg/1", "iteration": iteration, "config": config, "model_spec": net.spec,
                "model": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = make_cityscapes(root / "cityscapes")
    run = root / "run_dada"
    make_checkpoint(run / "checkpoints" / "iter_0000005.pt", data, seed=3, iteration=5)
    make_checkpoint(run / "checkpoints" / "iter_0000010.pt", data, seed=0, iteration=10)
    make_checkpoint(run / "checkpoints" / "final.pt", data, seed=0, iteration=10)
    make_checkpoint(run / "checkpoints" / "best.pt", data, seed=4, iteration=7)  # its iter_ file was pruned
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "train", "iteration": i, "loss": {"seg": 3.0 / (i + 1), "adv": 0.7}}) + "\n"
        for i in range(0, 10, 2)) + json.dumps({"kind": "eval", "iteration": 9, "miou": 0.1}) + "\n")
    source = make_checkpoint(root / "source_only.pt", data, depth_head=False, seed=1,
                             preset="bench_source_only")
    return {"root": root, "data": data, "run": run, "source": source}


def test_eval_run_with_baseline_writes_reports_and_figures(setup, capsys):
    run = setup["run"]
    code = main(["eval", str(run), "--baseline", str(setup["source"]), "--figures", "1", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "negative transfer" in printed and "D-Gain" in printed
    results = json.loads((run / "results.json").read_text())
    result = results["result"]
    assert results["format"] == "dada-seg-results/1"
    assert result["num_images"] == 2 and len(result["iou"]) == 16 and 0 <= result["miou"] <= 1
    assert results["model"]["checkpoint"].endswith("final.pt") and results["model"]["config_hash"]
    assert results["code_version"]["dada"] and "git_commit" in results["code_version"]
    # negative transfer and D-Gain computed from the two evaluations in the file
    ours = {r["name"]: r["miou"] for r in result["per_image"]}
    base = {r["name"]: r["miou"] for r in results["baseline"]["result"]["per_image"]}
    worse = sum(ours[n] < base[n] for n in ours)
    assert results["negative_transfer"]["rate"] == pytest.approx(worse / 2)
    assert results["d_gain"] == pytest.approx(result["miou"] - results["baseline"]["result"]["miou"])
    ranges = result["depth_ranges"]["ranges"]
    assert set(ranges) == {"near", "middle", "far"} and sum(r["pixels"] for r in ranges.values()) > 0
    md = (run / "results.md").read_text()
    assert "| Model | Depth | road | sidewalk | building | wall* | fence* | pole* |" in md
    assert "mIoU | D-Gain | mIoU* | NT rate |" in md and "## IoU by depth range" in md
    for figure in ("qualitative.png", "iou_per_class.png", "iou_by_depth.png", "training_curves.png"):
        image = cv2.imread(str(run / "figures" / figure))
        assert image is not None and image.shape[0] > 100 and image.std() > 5, figure
    assert len(list((run / "figures").glob("*_pred.png"))) == 1
    assert results["baseline"]["label"] == "bench_source_only (seed 1)"  # default: preset and seed
    # the run folder's results are not replaced silently
    assert main(["eval", str(run), "--device", "cpu"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_all_snapshots_and_selection(setup, tmp_path):
    out = tmp_path / "snapshots"
    results = evaluate_run(setup["run"], out_dir=out, all_snapshots=True, select="best-on-val", figures=1,
                           device="cpu", progress=False, depth_bins=None)
    mious = {s["iteration"]: s["miou"] for s in results["snapshots"]}
    assert [s["iteration"] for s in results["snapshots"]] == [5, 7, 10]
    best = max(mious, key=mious.get)
    assert results["selection"]["iteration"] == best and results["selection"]["policy"] == "best-on-val"
    assert "selects on the evaluation set" in results["selection"]["label"]
    assert results["result"]["miou"] == pytest.approx(mious[best])
    assert "## Snapshots" in (out / "results.md").read_text()
    first_figures = set(results["figures"].values())
    assert any(name.endswith("_pred.png") for name in first_figures)
    last = evaluate_run(setup["run"], out_dir=out, overwrite=True, all_snapshots=True, select="last",
                        figures=0, device="cpu", progress=False, depth_bins=None)
    # the replaced evaluation's image figures are gone, nothing else of it is left
    assert not any((out / name).exists() for name in first_figures - set(last["figures"].values()))
    assert last["selection"]["iteration"] == 10 and last["result"]["miou"] == pytest.approx(mious[10])


def test_eval_errors(setup, tmp_path, capsys):
    data = setup["data"]
    seven = make_checkpoint(tmp_path / "seven.pt", data, num_classes=7)
    # a checkpoint with another class count than the dataset
    assert main(["eval", str(seven), "--num-classes", "16", "--device", "cpu"]) == 2
    assert "7 classes" in capsys.readouterr().err
    with pytest.raises(DadaError, match="predicts 7 classes"):
        evaluate_run(setup["source"], out_dir=tmp_path / "x", baseline=seven, figures=0, device="cpu",
                     progress=False)
    # a label folder that does not match the images
    broken = make_cityscapes(tmp_path / "broken", count=2)
    os.remove(broken / "gtFine/val/city/city_000001_000019_gtFine_labelIds.png")
    assert main(["eval", str(setup["source"]), "--data", str(broken), "--out", str(tmp_path / "o1"),
                 "--device", "cpu"]) == 2
    assert "label file(s) missing" in capsys.readouterr().err
    # an existing output folder
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something.txt").write_text("x")
    assert main(["eval", str(setup["source"]), "--out", str(taken), "--device", "cpu"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # an official state dict has no config: the data must be given
    official = tmp_path / "model_2000.pth"
    torch.save(torch.load(setup["source"], weights_only=True)["model"], official)
    assert main(["eval", str(official), "--device", "cpu"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["eval", str(setup["run"]), "--depth-bins", "a,b", "--out", str(tmp_path / "o2")]) == 2


def test_official_defaults_for_the_evaluation_data():
    from dada.evaluation.pipeline import data_settings

    official = {"config": None, "source": "model.pth"}
    assert data_settings(official, root="/c") == {
        "name": "cityscapes", "root": "/c", "split": "val", "size": [512, 1024], "preprocess": "caffe",
        "list_file": None, "spec": None}
    mapillary = data_settings(official, dataset="mapillary", root="/m")
    assert mapillary["split"] == "validation" and mapillary["size"] is None  # letterboxed into 768×1024
    ours = {"config": {"data": {"preprocess": "imagenet", "val": {"name": "cityscapes", "root": "/r",
                                                                  "split": "val", "size": [64, 128]}}}}
    assert data_settings(ours, size=None)["size"] is None and data_settings(ours)["preprocess"] == "imagenet"
    assert data_settings(ours, split="train")["split"] == "train" and data_settings(ours)["root"] == "/r"


def test_reference_labels_name_the_references(setup, tmp_path):
    """``--label``, ``--baseline-label`` and ``--counterpart-label`` name the model and the references in
    results.json and the figures."""
    out = tmp_path / "labelled"
    assert main(["eval", str(setup["run"]), "--out", str(out), "--baseline", str(setup["source"]),
                 "--counterpart", str(setup["source"]), "--baseline-label", "S1 (source only)",
                 "--counterpart-label", "S2 (AdvEnt)", "--label", "S7 (DADA)", "--figures", "1",
                 "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["label"] == "S7 (DADA)"
    assert results["baseline"]["label"] == "S1 (source only)"
    assert results["counterpart"]["label"] == "S2 (AdvEnt)"
    assert cv2.imread(str(out / "figures" / "qualitative.png")) is not None
