"""Preprocessing modes, their inverse, and the letterbox helpers."""

import numpy as np
import pytest
import torch

from dada import DadaError
from dada.data import denormalize, preprocess_image
from dada.data.transforms import pad_to_aspect


def test_caffe_and_imagenet_preprocessing_by_hand():
    rgb = np.array([[[10, 20, 30], [255, 0, 128]]], dtype=np.uint8)  # 1×2×3
    caffe = preprocess_image(rgb, "caffe")
    assert caffe.shape == (3, 1, 2) and caffe.dtype == torch.float32
    assert caffe[:, 0, 0].tolist() == pytest.approx([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434])
    imagenet = preprocess_image(rgb, "imagenet")
    assert imagenet[:, 0, 1].tolist() == pytest.approx([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224,
                                                        (128 / 255 - 0.406) / 0.225], rel=1e-6)


@pytest.mark.parametrize("mode", ["caffe", "imagenet", "lite"])
def test_denormalize_inverts_preprocessing(mode):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3)).astype(np.uint8)
    tensor = preprocess_image(rgb, mode)
    np.testing.assert_array_equal(denormalize(tensor, mode), rgb)
    batch = torch.stack([tensor, tensor])
    assert denormalize(batch, mode).shape == (2, 5, 7, 3)


def test_lite_preprocessing_by_hand():
    rgb = np.array([[[0, 127, 255]]], dtype=np.uint8)
    lite = preprocess_image(rgb, "lite")
    assert lite[:, 0, 0].tolist() == [-127 / 128, 0.0, 1.0]  # RGB order, (x − 127) / 128


def test_augment_config_keys_reach_the_training_datasets(tmp_path):
    from dada.config import load_config
    from dada.engine.data import build_part
    from test_train_data import tiny_overrides

    base = tiny_overrides(tmp_path, "tiny")
    plain = build_part(load_config("benchmark_dada", base), "source")
    assert plain.augment is None  # off by default, as in the paper
    cfg = load_config("benchmark_dada", [*base, "data.source.augment.crop=[16,24]",
                                         "data.source.augment.flip=true", "data.source.augment.scale=[1,2]",
                                         "data.target.augment.flip=true", "data.preprocess=lite"])
    source, target = build_part(cfg, "source"), build_part(cfg, "target")
    assert source.augment == {"crop": (16, 24), "flip": True, "scale": (1.0, 2.0)}
    assert target.augment == {"flip": True} and source.preprocess == "lite"
    item = source[0]
    assert item["image"].shape == (3, 16, 24) and item["label"].shape == (16, 24)
    assert item["depth"].shape == (1, 16, 24)
    with pytest.raises(DadaError, match=r"data.source.augment.crop must be \[H, W\]"):
        build_part(load_config("benchmark_dada", [*base, "data.source.augment.crop=[0,4]"]), "source")
    with pytest.raises(DadaError, match="data.val.augment is set"):
        build_part(load_config("benchmark_dada", [*base, "data.val.augment.flip=true"]), "val")


def test_unknown_mode_and_bad_shapes():
    with pytest.raises(DadaError, match="preprocess mode"):
        preprocess_image(np.zeros((2, 2, 3), np.uint8), "torch")
    with pytest.raises(DadaError, match="H×W×3"):
        preprocess_image(np.zeros((2, 2), np.uint8))


def test_pad_to_aspect_matches_the_official_rule():
    label = np.zeros((3, 4), np.uint8)  # exactly 4:3 → unchanged
    assert pad_to_aspect(label, 4 / 3, 255) is label
    padded = pad_to_aspect(np.zeros((5, 5), np.uint8), 4 / 3, 255)  # width = int(5 · 4/3) = 6
    assert padded.shape == (5, 6) and (padded[:, 5] == 255).all() and (padded[:, :5] == 0).all()


def test_data_and_benchmark_modules_import_without_a_circle():
    """dada.data.* and dada.benchmark.* form an acyclic import graph; data never imports the benchmark."""
    import ast
    from pathlib import Path

    import dada

    package = Path(dada.__file__).parent
    graph = {}
    for sub in ("data", "benchmark"):
        for path in (package / sub).glob("*.py"):
            if path.name == "__init__.py":
                continue
            name = f"dada.{sub}.{path.stem}"
            imported = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dada."):
                    modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                    imported.update(m for m in modules if m.startswith(("dada.data.", "dada.benchmark")))
            graph[name] = {m for m in imported if m in graph or (package / (m[5:].replace(".", "/") + ".py"))
                           .is_file()} - {name}
    assert not [m for m in graph if m.startswith("dada.data.") and any(i.startswith("dada.benchmark")
                                                                       for i in graph[m])]
    done, visiting = set(), []

    def visit(module):
        assert module not in visiting, f"import circle: {' → '.join([*visiting, module])}"
        if module in done or module not in graph:
            return
        visiting.append(module)
        for other in graph[module]:
            visit(other)
        visiting.pop()
        done.add(module)

    for module in list(graph):
        visit(module)
    assert "dada.data.datasets" not in graph["dada.data.folder"]
