"""VGG-16 DeepLab-v2 backbone (AdaptSegNet's deeplab_vgg.py): conversion of a torchvision-layout ImageNet
VGG-16 state dict, the forward against the official recipe written out by hand, sizes, counts, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from dada.config import load_config
from dada.engine import Trainer
from dada.errors import DadaError
from dada.models import build_segmenter, load_pretrained
from dada.models.backbones import BACKBONES, build_backbone
from dada.models.backbones.vgg import convert_pretrained

# torchvision vgg16().features: conv at these indices, max-pools at 4, 9, 16, 23 (pool4), 30 (pool5)
TV_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
            (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512),
            (28, 512, 512)]


def torchvision_vgg16_state_dict() -> dict[str, torch.Tensor]:
    """A state dict in the layout of torchvision's / the Caffe-converted vgg16-*.pth (random values; the
    classifier's huge fc weights as zero-memory views of the real shapes)."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for index, c_in, c_out in TV_CONVS:
        weight = torch.randn(c_out, c_in, 3, 3, generator=generator)
        state[f"features.{index}.weight"] = weight * (2 / (9 * c_in)) ** 0.5  # He init keeps the scale
        state[f"features.{index}.bias"] = torch.randn(c_out, generator=generator) * 0.1
    for index, (c_out, c_in) in {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}.items():
        state[f"classifier.{index}.weight"] = torch.zeros(1, 1).expand(c_out, c_in)
        state[f"classifier.{index}.bias"] = torch.zeros(c_out)
    return state


def official_forward(state: dict[str, torch.Tensor], fc6: torch.nn.Conv2d, fc7: torch.nn.Conv2d,
                     x: torch.Tensor) -> torch.Tensor:
    """deeplab_vgg.py, written out: torchvision's features without pool4 (23) and pool5 (30), conv5_x
    with dilation 2 / padding 2, then fc6, ReLU, fc7, ReLU."""
    for index, _, _ in TV_CONVS:
        dilation = 2 if index >= 24 else 1
        x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"],
                            padding=dilation, dilation=dilation))
        if index in (2, 7, 14):  # followed by pool1, pool2, pool3
            x = F.max_pool2d(x, 2, 2)
    return F.relu(fc7(F.relu(fc6(x))))


def test_converted_weights_give_the_official_forward():
    state = torchvision_vgg16_state_dict()
    net = build_backbone("vgg16").eval()
    fc6_before = net.fc6.weight.clone()
    info = net.load_pretrained(state)
    assert info["loaded"] == 26  # 13 convs × (weight, bias); the classifier dropped
    assert torch.equal(net.fc6.weight, fc6_before)  # fc6/fc7 keep their init, as in the official code
    x = torch.randn(1, 3, 48, 72)
    with torch.no_grad():
        ours = net(x)
        expected = official_forward(state, net.fc6, net.fc7, x)
    assert tuple(ours.shape) == (1, 1024, 6, 9)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_conversion_maps_conv5_past_the_removed_pool4():
    keys = ["features.21.weight", "features.24.bias", "features.28.weight", "classifier.0.weight"]
    converted = convert_pretrained({f"module.{key}": torch.zeros(1) for key in keys})  # DataParallel
    assert list(converted) == ["features.21.weight", "features.23.bias", "features.27.weight"]
    net = build_backbone("vgg16")
    assert net.features[23].dilation == (2, 2) and net.features[21].dilation == (1, 1)
    assert net.fc6.dilation == (4, 4) and net.fc7.kernel_size == (3, 3) and net.fc7.dilation == (4, 4)


def test_parameter_count_and_interface():
    net = BACKBONES["vgg16"](bn_mode="frozen", output_stride=8)
    conv_params = 14_714_688  # VGG-16's 13 convs
    fc6 = 512 * 1024 * 9 + 1024
    fc7 = 1024 * 1024 * 9 + 1024
    assert sum(p.numel() for p in net.parameters()) == conv_params + fc6 + fc7
    assert net.out_channels == 1024 and net.output_stride == 8 and net.preprocess == "caffe"
    assert net.official_sgd_roots() is None and net.bn_mode == "frozen"
    with pytest.raises(ValueError, match="output stride 8"):
        build_backbone("vgg16", output_stride=16)


@pytest.mark.parametrize("size", [(64, 128), (65, 97), (33, 47)])
def test_output_sizes(size):
    net = build_backbone("vgg16").eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, *size))
    assert tuple(out.shape[2:]) == net.output_size(size) == (size[0] // 8, size[1] // 8)


def test_mismatching_state_dict_names_the_keys():
    state = torchvision_vgg16_state_dict()
    del state["features.26.weight"]
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    net = build_backbone("vgg16")
    with pytest.raises(DadaError) as err:
        net.load_pretrained(state)
    message = str(err.value)
    assert "vgg16" in message
    assert "features.0.weight (64, 1, 3, 3) (expected (64, 3, 3, 3))" in message
    assert "1 missing key(s), first: ['features.25.weight']" in message  # conv5_2 in our numbering
    resnet_like = {"conv1.weight": torch.zeros(64, 3, 7, 7)}
    with pytest.raises(DadaError, match=r"unexpected key\(s\), first: \['conv1.weight'\]"):
        net.load_pretrained(resnet_like)


@pytest.mark.slow
def test_segmenter_on_vgg16_trains_two_iterations():
    net = build_segmenter(arch="vgg16", num_classes=4, depth_head=True, feature_fusion=True).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 40, 72))
    assert tuple(out.seg.shape) == (1, 4, 5, 9) and tuple(out.depth.shape) == (1, 1, 5, 9)
    assert (net.enc4_1.out_channels, net.enc4_3.out_channels, net.dec4.out_channels) == (256, 64, 1024)
    trainer = Trainer(load_config("benchmark_dada", ["model.arch=vgg16", "method.ndf=8", "train.device=cpu"]))
    g = torch.Generator().manual_seed(0)
    before = trainer.model.backbone.fc7.weight.clone()
    for _ in range(2):
        source = {"image": torch.randn(1, 3, 32, 48, generator=g) * 50,
                  "label": torch.randint(0, 16, (1, 32, 48), generator=g),
                  "depth": torch.rand(1, 1, 32, 48, generator=g) * 100 + 1}
        losses = trainer.train_step(source, {"image": torch.randn(1, 3, 32, 48, generator=g) * 50})
        assert {"seg_src", "depth_src", "adv_trg_depth_aware"} <= set(losses)
        assert all(math.isfinite(v) for v in losses.values())
    assert trainer.iteration == 2 and not torch.equal(before, trainer.model.backbone.fc7.weight)


def test_imagenet_vgg16_file_initialises_the_segmenter(tmp_path):
    path = tmp_path / "vgg16-00b39a1b.pth"
    state = torchvision_vgg16_state_dict()
    torch.save(state, path)
    net = build_segmenter(arch="vgg16", num_classes=4)
    head_before = net.layer6.conv2d_list[0].weight.clone()
    report = load_pretrained(net, path)
    assert report["kind"] == "torchvision" and report["loaded"] == 26 and report["source"] == str(path)
    assert torch.equal(net.backbone.features[27].weight, state["features.28.weight"])  # conv5_3
    assert torch.equal(net.layer6.conv2d_list[0].weight, head_before)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(DadaError, match=r"vgg16-00b39a1b.pth.*25 missing key\(s\)"):
        load_pretrained(net, path)
