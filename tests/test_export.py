"""`dada export` to ONNX: parity with PyTorch through onnxruntime, dynamic axes, metadata, the onnxruntime
backend of `dada predict`, and the bad inputs (unknown arch, a folder as output, an existing file)."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from dada.cli import main
from dada.data.classes import CLASSES_16
from dada.data.transforms import preprocess_image
from dada.deploy import export as export_module
from dada.deploy.export import OnnxSegmenter, export_onnx, preprocess_with_metadata, read_metadata
from dada.deploy.predict import predict_checkpoint
from dada.errors import DadaError
from dada.models import build_segmenter
from dada.models.backbones import BACKBONES


def _families() -> dict[str, list[tuple[int, str]]]:
    """Backbone family (the module of its class) → [(parameters, arch)] over the registry."""
    families: dict[str, list[tuple[int, str]]] = {}
    for arch in BACKBONES:
        with torch.device("meta"):
            net = build_segmenter(arch=arch, num_classes=16)
        size = sum(p.numel() for p in net.parameters())
        families.setdefault(type(net.backbone).__module__, []).append((size, arch))
    return families


#: Exported in this suite: the smallest arch of every backbone family in the registry (each family's
#: members differ only in depth and width; ResNet-101 is measured by benchmarks/bench_infer.py).
EXPORTED_ARCHS = sorted(min(members)[1] for members in _families().values())


def save_checkpoint(path: Path, arch: str = "tiny", depth_head: bool = True, size=(48, 96),
                    preprocess: str | None = None, seed: int = 0) -> Path:
    """One of our checkpoints; ``preprocess`` default: what the backbone's ImageNet weights expect."""
    torch.manual_seed(seed)
    net = build_segmenter(arch=arch, num_classes=16, depth_head=depth_head, feature_fusion=depth_head)
    preprocess = preprocess or net.backbone.preprocess
    with torch.no_grad():  # spread the head's outputs so that the argmax is not decided by the biases alone
        for conv in net.layer6.conv2d_list:
            conv.weight.mul_(30)
    config = {"data": {"preprocess": preprocess, "val": {"name": "cityscapes", "size": list(size)}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "dada-seg/1", "iteration": 7, "config": config, "model_spec": net.spec,
                "model": net.state_dict()}, path)
    return path


def test_every_family_is_exported():
    assert "tiny" in EXPORTED_ARCHS and "resnet101" not in EXPORTED_ARCHS
    assert len(EXPORTED_ARCHS) == len(_families())


@pytest.mark.slow
@pytest.mark.parametrize("arch", EXPORTED_ARCHS)
def test_export_matches_pytorch_with_dynamic_axes(arch, tmp_path):
    checkpoint = save_checkpoint(tmp_path / f"{arch}.pt", arch=arch)
    result = export_onnx(checkpoint, tmp_path / "model.onnx", class_map=True)
    parity = result["parity"]
    assert parity["passed"] and parity["max_relative_error"] <= 1e-4
    assert parity["argmax_agreement"] >= 0.9999 and parity["class_map_agreement"] >= 0.9999
    assert [c["shape"] for c in parity["checks"]] == [[1, 3, 48, 96], [2, 3, 37, 73]]
    proto = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(proto)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
    assert [o.name for o in proto.graph.output] == ["logits", "inverse_depth", "class_map"]

    # a batch and a size the export never saw: the same numbers as PyTorch
    model = torch.load(checkpoint, weights_only=True)
    net = build_segmenter(**model["model_spec"])
    net.load_state_dict(model["model"])
    net.eval()
    image = torch.randn(3, 3, 57, 81) * 40
    with torch.no_grad():
        reference = net(image)
    exported = OnnxSegmenter(tmp_path / "model.onnx", threads=1)(image)
    scale = reference.seg.abs().max()
    assert (exported.seg - reference.seg).abs().max() <= 1e-4 * scale
    assert (exported.seg.argmax(1) == reference.seg.argmax(1)).float().mean() >= 0.9999
    assert torch.allclose(exported.depth, reference.depth, rtol=1e-4, atol=1e-4 * reference.depth.abs().max())


@pytest.mark.slow
def test_metadata_states_the_preprocessing_and_classes(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", preprocess="imagenet", size=(40, 72))
    export_onnx(checkpoint, tmp_path / "m.onnx")
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["preprocess"] == "imagenet" and meta["channel_order"] == "RGB"
    assert meta["input_size"] == [40, 72] and meta["letterbox"] is False
    assert meta["class_names"] == list(CLASSES_16.names)
    assert meta["palette"] == [list(c) for c in CLASSES_16.palette]
    assert meta["num_classes"] == 16 and meta["arch"] == "tiny" and meta["iteration"] == 7
    assert meta["parity"]["passed"] is True and set(meta["outputs"]) == {"logits", "inverse_depth"}
    # the numbers in the metadata reproduce the training preprocessing, for both modes
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for mode in ("caffe", "imagenet", "lite"):
        numbers = export_module.preprocess_spec(mode)
        np.testing.assert_allclose(preprocess_with_metadata(rgb, numbers).numpy(),
                                   preprocess_image(rgb, mode).numpy(), rtol=1e-6, atol=1e-5)


@pytest.mark.slow
def test_model_without_depth_head_has_logits_only(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "s1.pt", depth_head=False)
    result = export_onnx(checkpoint, tmp_path / "s1.onnx")
    assert result["outputs"] == ["logits"] and result["parity"]["passed"]
    assert OnnxSegmenter(tmp_path / "s1.onnx", threads=1)(torch.zeros(1, 3, 32, 32)).depth is None


@pytest.mark.slow
def test_cli_export_then_predict_with_onnxruntime(tmp_path, capsys):
    save_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")
    out = tmp_path / "deploy" / "model.onnx"
    command = ["export", str(tmp_path / "run"), "--format", "onnx", "--out", str(out), "--size", "48,96"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "parity with PyTorch" in printed and "max relative logit error" in printed and "argmax" in printed
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for name, shape in (("a", (50, 90)), ("b", (48, 96))):
        coarse = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
        smooth = cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(images / f"{name}.png"), smooth)
    assert main(["predict", "--backend", "onnxruntime", str(out), str(images), "--out", str(tmp_path / "ort"),
                 "--device", "cpu"]) == 0
    ours = predict_checkpoint(tmp_path / "run", [images], tmp_path / "torch", device="cpu", progress=False)
    auto = predict_checkpoint(out, [images], tmp_path / "auto", device="cpu", progress=False)
    assert auto["settings"] == ours["settings"] == {"preprocess": "caffe", "size": (48, 96),
                                                    "letterbox": False, "num_classes": 16}
    for name in ("a", "b"):
        for kind in ("seg", "overlay", "depth"):
            exported = cv2.imread(str(tmp_path / "ort" / f"{name}_{kind}.png"))
            reference = cv2.imread(str(tmp_path / "torch" / f"{name}_{kind}.png"))
            if kind == "seg":  # identical class maps (up to a pixel at an exact tie)
                assert (exported == reference).all(axis=2).mean() >= 0.9999
            else:
                difference = np.abs(exported.astype(int) - reference.astype(int))
                assert difference.max() <= 3 and difference.mean() < 0.05  # colour rounding at most


def test_bad_inputs_are_one_clear_error_and_nothing_is_written(tmp_path, capsys):
    good = save_checkpoint(tmp_path / "tiny.pt")
    bad = torch.load(good, weights_only=True)
    bad["model_spec"]["arch"] = "resnet_unknown"
    torch.save(bad, tmp_path / "unknown.pt")
    out = tmp_path / "out" / "m.onnx"
    assert main(["export", str(tmp_path / "unknown.pt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown.pt" in err and "resnet_unknown" in err and "Traceback" not in err
    assert not out.exists()

    (tmp_path / "folder.onnx").mkdir()
    assert main(["export", str(good), "--out", str(tmp_path / "folder.onnx")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert list((tmp_path / "folder.onnx").iterdir()) == []

    (tmp_path / "exists.onnx").write_bytes(b"keep")
    assert main(["export", str(good), "--out", str(tmp_path / "exists.onnx")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "exists.onnx").read_bytes() == b"keep"

    assert main(["predict", str(tmp_path / "exists.onnx"), str(tmp_path / "tiny.pt"), "--out",
                 str(tmp_path / "pred")]) == 2
    assert "cannot be read as an ONNX model" in capsys.readouterr().err


@pytest.mark.slow
def test_failed_parity_writes_nothing(tmp_path, monkeypatch):
    checkpoint = save_checkpoint(tmp_path / "tiny.pt")
    monkeypatch.setattr(export_module, "MAX_RELATIVE_ERROR", -1.0)  # no export can pass
    with pytest.raises(DadaError, match="differs from PyTorch"):
        export_onnx(checkpoint, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.pt"]
