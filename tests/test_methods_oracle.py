"""The oracle preset: the segmenter trained on the target's labelled train split, labelled as such."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dada.config import load_config
from dada.evaluation.pipeline import ORACLE_LABEL, model_label
from dada.methods import METHODS
from dada.models import build_segmenter


def test_oracle_trains_on_the_target_train_split():
    cfg = load_config("synthia2cityscapes_oracle", ["data.target.root=/data/cityscapes"])
    source, target = cfg.data.source, cfg.data.target
    assert (source.name, source.root, source.split, list(source.size)) == \
        ("cityscapes", "/data/cityscapes", "train", [512, 1024])
    assert source.batch_size == target.batch_size
    assert cfg.method.name == "oracle" and not METHODS["oracle"].needs_target
    assert not cfg.model.depth_head and not cfg.method.depth_supervision


def test_oracle_on_the_benchmark_reads_the_target_folder(monkeypatch):
    made = []
    monkeypatch.setattr("dada.benchmark.cache.ensure_benchmark",
                        lambda **params: made.append(params) or "/bench")
    from dada.benchmark import resolve_root

    oracle, dada = load_config("benchmark_oracle"), load_config("benchmark_dada")
    assert str(resolve_root(oracle.data.source.root, "source", oracle)) == "/bench/target"
    assert str(resolve_root(dada.data.source.root, "source", dada)) == "/bench/source"


def test_reports_label_the_oracle():
    info = {"config": {"preset": "benchmark_oracle", "seed": 3, "method": {"name": "oracle"}}}
    assert model_label(info) == f"benchmark_oracle (seed 3): {ORACLE_LABEL}"
    other = {"config": {"preset": "benchmark_dada", "method": {"name": "dada"}}}
    assert ORACLE_LABEL not in model_label(other)


def test_oracle_two_iterations_are_supervised_cross_entropy():
    torch.manual_seed(0)
    cfg = load_config("benchmark_oracle", ["model.num_classes=5"])
    model = build_segmenter(arch="tiny", num_classes=5, depth_head=False, feature_fusion=False)
    method = METHODS["oracle"](cfg, model, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    for iteration in range(2):
        batch = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40,
                 "label": torch.randint(0, 5, (2, 32, 64), generator=generator)}
        with torch.no_grad():
            logits = F.interpolate(model(batch["image"]).seg, size=(32, 64), mode="bilinear",
                                   align_corners=True)
        expected = F.cross_entropy(logits, batch["label"]).item()
        losses = method.train_step(batch, {}, iteration)
        assert set(losses) == {"seg_src"} and losses["seg_src"].item() == pytest.approx(expected, rel=1e-5)
