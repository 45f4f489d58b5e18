"""SPIGAN and SPIGAN-no-PI: image-space conversions, the networks' shapes, and two training iterations
checked against a hand-written statement of the paper's objective (α·L_GAN + β·L_T + γ·L_P + δ·L_perc)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dada.config import load_config
from dada.data.transforms import denormalize, preprocess_image
from dada.errors import DadaError
from dada.methods import METHODS
from dada.methods.spigan import (
    SPIGAN,
    Generator,
    ImageDiscriminator,
    from_rgb255,
    to_network_space,
    to_rgb255,
)
from dada.models import build_segmenter
from dada.models.backbones import build_backbone


@pytest.mark.parametrize("mode", ["caffe", "imagenet", "lite"])
def test_image_space_conversions_match_the_data_pipeline(mode):
    rgb = torch.randint(0, 256, (2, 5, 3), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    image = preprocess_image(rgb.numpy(), mode).unsqueeze(0)
    assert torch.allclose(to_rgb255(image, mode)[0].permute(1, 2, 0), rgb.float(), atol=1e-3)
    assert torch.allclose(from_rgb255(to_rgb255(image, mode), mode), image, atol=1e-4)
    assert (denormalize(image[0], mode) == rgb.numpy()).all()
    assert to_network_space(torch.tensor([0.0, 127.0, 255.0]), "lite").tolist() == pytest.approx(
        [-127 / 128, 0.0, 1.0])
    assert to_network_space(torch.tensor([0.0, 255.0]), "unit").tolist() == pytest.approx([-1.0, 1.0])


def test_generator_and_discriminator_shapes():
    generator, discriminator = Generator(ngf=4, blocks=1), ImageDiscriminator(ndf=4)
    fake = generator(torch.randn(1, 3, 32, 64))
    assert fake.shape == (1, 3, 32, 64) and fake.abs().max() <= 1.0
    assert discriminator(fake).shape == (1, 1, 2, 6)  # PatchGAN: 3 stride-2 convs, then two 4×4 stride 1


class TinyPerceptual(nn.Sequential):
    preprocess_mode = "lite"


def _method(preset):
    cfg = load_config(preset, ["model.num_classes=5", "method.generator_ngf=4", "method.generator_blocks=1",
                               "method.image_ndf=4", "train.max_iters=10"])
    model = build_segmenter(arch="tiny", num_classes=5, depth_head=False, feature_fusion=False)
    perceptual = TinyPerceptual(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    method = METHODS[cfg.method.name](cfg, model, torch.device("cpu"), perceptual=perceptual,
                                      privileged_backbone=build_backbone("tiny"))
    return cfg, model, method


@pytest.mark.parametrize("preset", ["benchmark_spigan", "benchmark_spigan_nopi"])
def test_spigan_two_iterations_match_the_paper(preset):
    torch.manual_seed(0)
    cfg, model, method = _method(preset)
    assert isinstance(method, SPIGAN)
    privileged = cfg.method.privileged
    assert ("privileged" in method.extra_modules) == privileged
    alpha, beta, gamma, delta = 1.0, 0.5, 0.1, 0.33  # the preset's weights (unverified vs the paper)
    assert (cfg.method.spigan_alpha, cfg.method.spigan_beta, cfg.method.spigan_gamma,
            cfg.method.spigan_delta) == (alpha, beta, gamma, delta)
    generator = torch.Generator().manual_seed(1)
    for iteration in range(2):
        source = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40,
                  "label": torch.randint(0, 5, (2, 32, 64), generator=generator),
                  "depth": torch.rand(2, 1, 32, 64, generator=generator)}
        target = {"image": torch.randn(2, 3, 32, 64, generator=generator) * 40}
        ref = {name: copy.deepcopy(module) for name, module in method.extra_modules.items()}
        ref_t, phi = copy.deepcopy(model), method.perceptual

        def rgb(image):  # caffe preprocessing back to RGB [0, 255]
            mean = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
            return (image + mean).flip(1)

        def caffe(rgb255):
            mean = torch.tensor([104.00698793, 116.66876762, 122.67891434]).view(1, 3, 1, 1)
            return rgb255.flip(1) - mean

        def up(x):
            return F.interpolate(x, size=(32, 64), mode="bilinear", align_corners=True)

        x_f_unit = ref["generator"](rgb(source["image"]) / 127.5 - 1)  # G(x_s) in [−1, 1]
        x_f = caffe((x_f_unit + 1) * 127.5)
        d_fake = ref["image_discriminator"](x_f_unit)
        d_real = ref["image_discriminator"](rgb(target["image"]) / 127.5 - 1)
        def ls(logits, label):  # the least-squares GAN term (method.gan_loss default)
            return ((logits - label) ** 2).mean()

        expected = {
            "gan_g": ls(d_fake, 1.0),  # real = target label 1
            "seg_src": F.cross_entropy(up(ref_t(source["image"]).seg), source["label"]),
            "seg_fake": F.cross_entropy(up(ref_t(x_f).seg), source["label"]),
            "perceptual": (phi((rgb(source["image"]) - 127) / 128) - phi(((x_f_unit + 1) * 127.5 - 127) / 128)
                           ).abs().mean(),
            "gan_d": ls(d_real, 1.0) + ls(d_fake, 0.0),
        }
        if privileged:
            expected["pi_src"] = (ref["privileged"](source["image"]) - source["depth"]).abs().mean()
            expected["pi_fake"] = (ref["privileged"](x_f) - source["depth"]).abs().mean()
        losses = method.train_step(source, target, iteration)
        assert set(losses) == set(expected)
        for name, value in expected.items():
            assert losses[name].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), name
    # every network moved; φ did not
    for name, module in method.extra_modules.items():
        before = next(ref[name].parameters())
        assert not torch.equal(before, next(module.parameters())), name
    assert all(not p.requires_grad for p in method.perceptual.parameters())


def test_reports_count_spigan_as_using_depth():
    from dada.evaluation.pipeline import uses_depth

    spigan = load_config("benchmark_spigan")
    nopi = load_config("benchmark_spigan_nopi")
    spec = {"depth_head": False}
    assert uses_depth({"config": {"method": {"privileged": spigan.method.privileged}}, "model_spec": spec})
    assert not uses_depth({"config": {"method": {"privileged": nopi.method.privileged}}, "model_spec": spec})


def test_perceptual_network_is_efficientnet_lite0_with_its_imagenet_weights():
    from dada.methods.spigan import imagenet_perceptual_network
    from dada.models.backbones.efficientnet_lite import read_imagenet_lite

    network = imagenet_perceptual_network()
    released = read_imagenet_lite("efficientnet_lite0")
    assert torch.equal(network.conv_stem.weight, released["_conv_stem.weight"])
    assert network.output_stride == 32 and network.preprocess_mode == "lite"
    cfg, model, _ = _method("benchmark_spigan_nopi")
    method = SPIGAN(cfg, model, torch.device("cpu"), perceptual=network)
    assert all(not p.requires_grad for p in method.perceptual.parameters()) and not method.perceptual.training
    assert "perceptual" not in method.extra_modules  # fixed: neither trained nor saved


def test_gan_loss_forms_and_a_bad_one():
    from dada.methods.spigan import gan_discriminator_loss, gan_generator_loss

    real, fake = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.0]])
    assert gan_generator_loss(fake, 1.0).item() == pytest.approx(((2 - 1) ** 2 + (0 - 1) ** 2) / 2)
    assert gan_discriminator_loss(real, fake, 1.0, 0.0).item() == pytest.approx(
        ((0.5 - 1) ** 2 + (-1 - 1) ** 2) / 2 + (2.0 ** 2 + 0.0) / 2)
    softplus = torch.nn.functional.softplus  # BCE with logits: label 1 → softplus(−x), label 0 → softplus(x)
    assert gan_generator_loss(fake, 1.0, "bce").item() == pytest.approx(softplus(-fake).mean().item())
    assert gan_discriminator_loss(real, fake, 1.0, 0.0, "bce").item() == pytest.approx(
        (softplus(-real).mean() + softplus(fake).mean()).item())
    with pytest.raises(DadaError, match="method.gan_loss must be one of least_squares, bce"):
        load_config("benchmark_spigan", ["method.gan_loss=wasserstein"])
