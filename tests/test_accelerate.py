"""The fast settings: bf16/fp16 autocast, channels_last and torch.compile on the training step (CPU)."""

import math

import pytest
import torch

from dada.config import load_config
from dada.engine import Trainer
from dada.engine.accelerate import LossScale

SIZE = (32, 64)


def batches(num_classes=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    source = {"image": torch.randn(1, 3, *SIZE, generator=g) * 50,
              "label": torch.randint(0, num_classes, (1, *SIZE), generator=g),
              "depth": torch.rand(1, 1, *SIZE, generator=g) * 30 + 1}
    return source, {"image": torch.randn(1, 3, *SIZE, generator=g) * 50}


def trainer(*overrides):
    return Trainer(load_config("benchmark_dada", ["model.arch=tiny", "train.device=cpu", "method.ndf=8",
                                                  "train.max_iters=10", *overrides]))


def two_steps(*overrides):
    t = trainer(*overrides)
    source, target = batches()
    return t, [t.train_step(source, target) for _ in range(2)]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_finite_losses_close_to_fp32(precision):
    _, reference = two_steps()
    fast, losses = two_steps(f"train.precision={precision}")
    assert fast.model.backbone.conv1.weight.dtype == torch.float32  # weights and optimizer states stay fp32
    for ref, got in zip(reference, losses, strict=True):
        assert ref.keys() == got.keys()
        for name in ref:
            assert math.isfinite(got[name])
            assert abs(got[name] - ref[name]) <= 0.05 * abs(ref[name]) + 1e-3, (name, got[name], ref[name])
    if precision == "fp16":
        scale = fast.accelerator.loss_scale
        assert scale.skipped == 0 and float(scale.scale) == 2.0 ** 16
        assert fast.state()["accelerator"]["loss_scale"]["scale"] == 2.0 ** 16


def test_fp16_loss_scale_skips_a_non_finite_step_and_halves():
    t = trainer("train.precision=fp16")
    source, target = batches()
    t.train_step(source, target)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.accelerator.loss_scale.scale.fill_(3e38)  # the scaled gradients overflow
    t.accelerator.loss_scale.inverse.fill_(1 / 3e38)
    t.train_step(source, target)
    assert t.accelerator.loss_scale.skipped == 2  # both optimizers skipped their update
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items() if "running" not in k
               and "num_batches" not in k)
    assert float(t.accelerator.loss_scale.scale) == pytest.approx(1.5e38)


def test_loss_scale_grows_after_clean_steps():
    scale = LossScale(torch.device("cpu"), init=4.0, growth_interval=2)
    scale.update()
    scale.update()
    assert float(scale.scale) == 8.0 and float(scale.inverse) == 0.125


def test_channels_last_step_equals_the_default_step():
    reference, _ = two_steps()
    fast, _ = two_steps("train.channels_last=true")
    assert fast.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(fast.model.state_dict()[key], value, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compiled_step_equals_the_eager_step():
    reference, ref_losses = two_steps()
    fast, losses = two_steps("train.compile=true")
    for ref, got in zip(ref_losses, losses, strict=True):
        for name in ref:
            assert got[name] == pytest.approx(ref[name], abs=1e-5)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(fast.model.state_dict()[key], value, atol=1e-5, rtol=0)
    for kind, disc in reference.discriminators.items():
        for key, value in disc.state_dict().items():
            torch.testing.assert_close(fast.discriminators[kind].state_dict()[key], value, atol=1e-5, rtol=0)
    assert set(fast.model.state_dict()) == set(reference.model.state_dict())  # keys unchanged by compile
