"""``Trainer.train_step`` against the official iteration written out by hand (reference §1.5, §2.8).

The reference restates ``DADA:train_UDA.py::train_dada`` (and ADVENT's ``train_advent`` for S2) with
plain torch calls, on copies of the same tiny model and discriminator, with the official optimizer:
ADVENT's ``optim_parameters`` (``get_1x_lr_params_no_scale`` yields a tensor once per enclosing module)
stepped by a re-statement of PyTorch 1.2.0's ``SGD.step``, the version the paper ran. After two
iterations every weight, BN statistic and optimizer state must match the trainer's.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dada import DadaError
from dada.config import load_config
from dada.engine import Trainer
from official_loop import SGD_1_2, bce_loss, loss_calc_depth, prob_2_entropy

H, W = 32, 64
TINY = ["model.arch=tiny", "method.ndf=8", "train.device=cpu", "train.max_iters=10"]


def batches(seed: int, num_classes: int = 16):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, num_classes, (1, H, W), generator=g)
    label[:, :4] = 255  # ignored pixels
    source = {"image": torch.randn(1, 3, H, W, generator=g) * 50, "label": label,
              "depth": torch.rand(1, 1, H, W, generator=g) * 30, "name": ["s.png"]}
    target = {"image": torch.randn(1, 3, H, W, generator=g) * 50, "name": ["t.png"]}
    return source, target


def get_1x_lr_params_no_scale(model):
    """ADVENT ``deeplabv2.py``, verbatim but for ``model.backbone.``: every tensor once per module that
    encloses it."""
    b = [model.backbone.conv1, model.backbone.bn1, model.backbone.layer1, model.backbone.layer2,
         model.backbone.layer3, model.backbone.layer4]
    for i in range(len(b)):
        for j in b[i].modules():
            jj = 0
            for k in j.parameters():
                jj += 1
                if k.requires_grad:
                    yield k


def get_10x_lr_params(model):
    """DADA's override: ``layer6``, ``enc4_1..3``, ``dec4`` (those the switches create)."""
    for name in ("layer6", "enc4_1", "enc4_2", "enc4_3", "dec4"):
        if hasattr(model, name):
            yield from getattr(model, name).parameters()


def official_optimizer(model, lr=2.5e-4):
    """ADVENT ``optim_parameters(lr)`` into ``optim.SGD(..., momentum=0.9, weight_decay=5e-4)``."""
    return SGD_1_2([{"params": get_1x_lr_params_no_scale(model), "lr": lr},
                    {"params": get_10x_lr_params(model), "lr": 10 * lr}],
                   lr=lr, momentum=0.9, weight_decay=5e-4)


def official_iteration(i, model, d_main, optimizer, optimizer_d, source, target, *, use_depth, advent,
                       max_iters=10, lr=2.5e-4, lr_d=1e-4):
    interp = lambda x: F.interpolate(x, size=(H, W), mode="bilinear", align_corners=True)  # noqa: E731
    optimizer.zero_grad()
    optimizer_d.zero_grad()
    decay = (1 - float(i) / max_iters) ** 0.9
    optimizer.param_groups[0]["lr"] = lr * decay
    optimizer.param_groups[1]["lr"] = 10 * lr * decay
    optimizer_d.param_groups[0]["lr"] = lr_d * decay
    for param in d_main.parameters():
        param.requires_grad = False
    # source
    out = model(source["image"])
    pred_src = interp(out.seg)
    loss = F.cross_entropy(pred_src, source["label"], ignore_index=255)
    if use_depth:
        depth_src = interp(out.depth)
        loss = loss + 0.001 * loss_calc_depth(depth_src, source["depth"])
    loss.backward()
    # target
    out = model(target["image"])
    pred_trg = interp(out.seg)
    d_in = prob_2_entropy(F.softmax(pred_trg, dim=1))
    if use_depth:
        depth_trg = interp(out.depth)
        d_in = d_in * depth_trg
    (0.001 * bce_loss(d_main(d_in), 0)).backward()
    # discriminator
    for param in d_main.parameters():
        param.requires_grad = True
    half = 2 if advent else 1
    d_in = prob_2_entropy(F.softmax(pred_src.detach(), dim=1))
    if use_depth:
        d_in = d_in * depth_src.detach()
    (bce_loss(d_main(d_in), 0) / half).backward()
    d_in = prob_2_entropy(F.softmax(pred_trg.detach(), dim=1))
    if use_depth:
        d_in = d_in * depth_trg.detach()
    (bce_loss(d_main(d_in), 1) / half).backward()
    optimizer.step()
    optimizer_d.step()


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)


def momentum_buffers(named_parameters, state) -> dict:
    return {name: state[p]["momentum_buffer"] for name, p in named_parameters if p in state}


def official_run(trainer, use_depth, advent):
    """The official two iterations on copies of the trainer's model and discriminator, and its own."""
    model, d_main = copy.deepcopy(trainer.model), copy.deepcopy(trainer.discriminator)
    optimizer = official_optimizer(model)
    optimizer_d = torch.optim.Adam(d_main.parameters(), lr=1e-4, betas=(0.9, 0.99))
    for i in range(2):
        source, target = batches(i)
        official_iteration(i, model, d_main, optimizer, optimizer_d, source, target, use_depth=use_depth,
                           advent=advent)
    return model, d_main, optimizer


@pytest.mark.parametrize("preset, use_depth, advent", [("benchmark_dada", True, False),
                                                      ("benchmark_advent", False, True)])
def test_train_step_matches_the_official_iteration(preset, use_depth, advent):
    trainer = Trainer(load_config(preset, TINY))
    start = copy.deepcopy(trainer.model.state_dict())
    model, d_main, optimizer = official_run(trainer, use_depth, advent)
    assert sum(len(g["params"]) for g in optimizer.param_groups[:1]) > len(optimizer.state) // 2  # repeats
    for i in range(2):
        losses = trainer.train_step(*batches(i))
    assert trainer.iteration == 2
    assert ("depth_src" in losses) == use_depth and all(math.isfinite(v) for v in losses.values())
    assert_same_state(trainer.model.state_dict(), model.state_dict())  # weights and BN statistics
    assert_same_state(trainer.discriminator.state_dict(), d_main.state_dict())
    moved = [k for k in start if not torch.equal(start[k], model.state_dict()[k])]
    assert any("layer6" in k for k in moved) and any("conv1" in k for k in moved)
    ours = momentum_buffers(trainer.model.named_parameters(), trainer.optimizer.state)
    theirs = momentum_buffers(model.named_parameters(), optimizer.state)
    assert ours.keys() == theirs.keys() and len(ours) == sum(p.requires_grad for p in model.parameters())
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-9, msg=name)
    lrs = trainer.learning_rates()
    assert lrs["seg_group0"] == pytest.approx(2.5e-4 * 0.9 ** 0.9)
    assert lrs["seg_group1"] == pytest.approx(2.5e-3 * 0.9 ** 0.9)
    assert lrs["discriminator"] == pytest.approx(1e-4 * 0.9 ** 0.9)


def test_standard_sgd_differs_from_the_official_update_in_the_backbone_only():
    """``train.sgd=standard`` (each tensor once, current PyTorch) is not the paper's update: the backbone
    moves several times less; the heads, listed once by the official code too, agree."""
    trainer = Trainer(load_config("benchmark_dada", [*TINY, "train.sgd=standard"]))
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    start = copy.deepcopy(trainer.model.state_dict())
    model, _, _ = official_run(trainer, use_depth=True, advent=False)
    for i in range(2):
        trainer.train_step(*batches(i))
    ours, theirs = trainer.model.state_dict(), model.state_dict()
    with pytest.raises(AssertionError):
        assert_same_state(ours, theirs)
    for key in ("backbone.layer1.0.conv1.weight", "backbone.layer2.0.downsample.0.weight"):
        step_ours = (ours[key] - start[key]).norm().item()
        step_official = (theirs[key] - start[key]).norm().item()
        assert step_official > 1.5 * step_ours, key  # listed 3 and 4 times: much larger official steps
    torch.testing.assert_close(ours["layer6.conv2d_list.0.bias"], theirs["layer6.conv2d_list.0.bias"],
                               rtol=1e-3, atol=1e-7)


def test_separate_discriminators_each_step_once():
    trainer = Trainer(load_config("benchmark_s6", TINY))
    assert set(trainer.discriminators) == {"self_information", "depth"}
    assert trainer.discriminators["depth"][0].in_channels == 1
    before = {k: copy.deepcopy(d.state_dict()) for k, d in trainer.discriminators.items()}
    losses = trainer.train_step(*batches(0))
    assert {"adv_trg_self_information", "adv_trg_depth", "d_depth_src", "d_depth_trg"} <= set(losses)
    for kind, discriminator in trainer.discriminators.items():
        after = discriminator.state_dict()
        assert all(not torch.equal(before[kind][k], after[k]) for k in after), kind


def test_source_only_skips_the_target_and_minent_has_no_discriminator():
    trainer = Trainer(load_config("benchmark_s1", TINY))
    assert trainer.discriminator is None and set(trainer.method.optimizers) == {"segmenter"}
    assert set(trainer.train_step(*batches(0))) == {"seg_src"}
    trainer = Trainer(load_config("benchmark_minent", TINY))
    assert set(trainer.train_step(*batches(0))) == {"seg_src", "ent_trg"}


def test_nan_loss_stops_before_any_update():
    trainer = Trainer(load_config("benchmark_dada", TINY))
    source, target = batches(0)
    trainer.train_step(source, target)
    weights = {k: v.clone() for k, v in trainer.model.named_parameters()}
    source, target = batches(1)
    source["depth"][0, 0, 3, 5] = float("nan")
    with pytest.raises(DadaError, match=r"iteration 1: non-finite loss \{'depth_src': nan\}"):
        trainer.train_step(source, target)
    assert all(torch.equal(weights[k], v) for k, v in trainer.model.named_parameters())
    assert trainer.iteration == 1


def test_imagenet_initialisation_loads_the_backbone_only(tmp_path):
    from dada.models import build_segmenter
    from dada.models.official import export

    torch.manual_seed(5)
    donor = build_segmenter("tiny", num_classes=16)
    path = tmp_path / "DeepLab_resnet_pretrained_imagenet.pth"
    torch.save(export(donor.state_dict(), "imagenet"), path)
    trainer = Trainer(load_config("benchmark_dada", [*TINY, f"model.pretrained={path}",
                                                     "model.pretrained_kind=imagenet"]))
    ours, theirs = trainer.model.state_dict(), donor.state_dict()
    assert torch.equal(ours["backbone.layer1.0.conv1.weight"], theirs["backbone.layer1.0.conv1.weight"])
    assert torch.equal(ours["backbone.conv1.weight"], theirs["backbone.conv1.weight"])
    assert not torch.equal(ours["layer6.conv2d_list.0.weight"], theirs["layer6.conv2d_list.0.weight"])
    with pytest.raises(DadaError, match="missing.pth"):
        Trainer(load_config("benchmark_dada", [*TINY, f"model.pretrained={tmp_path / 'missing.pth'}"]))


def test_unknown_method_and_empty_adversarial_list_are_errors():
    with pytest.raises(DadaError, match=r"method.name: unknown method 'fancy'.*dada"):
        Trainer(load_config("benchmark_dada", [*TINY, "method.name=fancy"]))
    with pytest.raises(DadaError, match="method.adversarial is empty"):
        Trainer(load_config("benchmark_dada", [*TINY, "method.adversarial=[]"]))
