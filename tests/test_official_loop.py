"""Five iterations of ``Trainer.train_step`` against the official loop re-stated on the official modules
(``tests/official_loop.py``: ADVENT/DADA's network classes, PyTorch 1.2's SGD with the repeats, Adam,
``train_dada`` and ``train_advent``), every gradient, update and discriminator weight within 1e-5.

Both run in float64. In float32 the two agree bit for bit for the first iterations and then drift: at a
random initialisation the gradient is so ill-conditioned that a 1e-7 relative change of the weights moves
it by up to a few 1e-2 (``benchmarks/official_loop.py`` measures it on ResNet-101), so float32 rounding
of mathematically equal operations (the official berHu reads c with ``.item()`` in double precision, its
ASPP sums in place) shows up as a 1e-2 difference of the depth branch's gradient after two or three
iterations. Float64 removes the rounding and leaves any real difference of the step visible.
"""

import copy

import pytest
import torch

from dada.config import load_config
from dada.engine import Trainer
from dada.models.backbones import BACKBONES, resnet
from dada.models.official import export
from official_loop import OfficialDADA, OfficialLoop, compare_with_official

MINI = "nested_bottleneck_mini"  # the official nesting (layerN > Bottleneck > conv, downsample Sequential)


@pytest.fixture
def nested_mini(monkeypatch):
    """A DeepLab-v2 ResNet with one Bottleneck per stage and the official widths (2048 at layer4)."""
    monkeypatch.setitem(resnet.ARCHS, MINI, resnet.ArchSpec("bottleneck", (1, 1, 1, 1), 64))
    monkeypatch.setitem(BACKBONES, MINI, resnet._factory(MINI))
    return MINI


def batches(n, source=(32, 64), target=(32, 48)):
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(100 + i)
        label = torch.randint(0, 16, (1, *source), generator=g)
        label[:, :3] = 255
        out.append(({"image": torch.randn(1, 3, *source, generator=g, dtype=torch.float64) * 50,
                     "label": label,
                     "depth": torch.rand(1, 1, *source, generator=g, dtype=torch.float64) * 60 + 1},
                    {"image": torch.randn(1, 3, *target, generator=g, dtype=torch.float64) * 50}))
    return out


def official_pair(arch: str, method: str):
    cfg = load_config(f"synthia2cityscapes_{method}", [f"model.arch={arch}", "model.pretrained=none",
                                                      "train.device=cpu", "train.max_iters=10"])
    trainer = Trainer(cfg)
    trainer.model.double()
    trainer.discriminator.double()
    model = OfficialDADA(layers=resnet.ARCHS[arch].layers, depth=method == "dada").double()
    model.load_state_dict(export(trainer.model.state_dict(), "segmenter"))
    return trainer, OfficialLoop(model, copy.deepcopy(trainer.discriminator), dada=method == "dada")


@pytest.mark.parametrize("method", ["dada", "advent"])
def test_five_iterations_match_the_official_loop(nested_mini, method):
    trainer, official = official_pair(nested_mini, method)
    rows = compare_with_official(trainer, official, batches(5))
    assert len(rows) == 5 and rows[0]["tensors"] == len(official.grads) > 0
    if method == "dada":
        assert any(name.startswith("enc4_1") for name in official.grads)  # the depth branch is compared
    for row in rows:  # the issue asks 1e-5; in float64 the two agree to rounding (about 1e-15)
        assert row["grad"] < 1e-10, row
        assert row["update"] < 1e-10, row
        assert row["discriminator"] < 1e-10, row


def test_the_comparison_sees_a_wrong_step(nested_mini, monkeypatch):
    """The check can fail: a depth branch that gets no adversarial gradient (a detach in the fooling
    term, λ_adv = 1e-3 of the objective) differs from the official loop from the first iteration on, by
    orders of magnitude more than rounding."""
    from dada import losses

    trainer, official = official_pair(nested_mini, "dada")
    original = losses.depth_aware_map
    monkeypatch.setattr(losses, "depth_aware_map",
                        lambda surprisal, depth: original(surprisal, depth.detach()))
    rows = compare_with_official(trainer, official, batches(1))
    assert rows[0]["grad"] > 1e-6 and not rows[0]["grad_at"].startswith("layer6")
