"""DeepLab-v2 ResNet backbone, Caffe style (reference §1.1).

What differs from torchvision's ResNet, and matters for the official weights:

* the stride of a bottleneck sits on its first 1×1 conv (torchvision puts it on the 3×3 conv);
* the max-pool uses ``ceil_mode=True`` (512×1024 → 65×129 at the output, not 64×128);
* layer3 and layer4 keep stride 1 and dilate **every** block (2 and 4): output stride 8;
* a downsample branch is built by the official ``_make_layer`` rule: ``stride != 1`` or
  ``inplanes != planes·expansion`` or ``dilation in (2, 4)``, i.e. in block 0 of every bottleneck stage;
* BatchNorm affine parameters are frozen (``requires_grad=False``). Their statistics follow ``bn_mode``:
  ``"train"`` (official: batch statistics and running-stat updates whenever the model is in train mode)
  or ``"frozen"`` (the layers stay in eval mode even when the model is put in train mode).

Module attribute names are the official ones (``conv1``, ``bn1``, ``layer1`` … ``layer4``, blocks with
``conv1..3``, ``bn1..3``, ``downsample.0/1``), so state-dict keys match the released checkpoints.
All activations are out-of-place so that autocast, channels_last and ``torch.compile`` work unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_MODES = ("train", "frozen")


@dataclass(frozen=True)
class ArchSpec:
    """A backbone depth: block type, blocks per stage and the stem width (64 for the paper's ResNets)."""

    block: str  # "bottleneck" | "basic"
    layers: tuple[int, int, int, int]
    width: int = 64

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def out_channels(self) -> int:
        """Channels of the layer4 output (2048 for ResNet-50/101)."""
        return self.width * 8 * self.expansion


#: Backbones by name. ``resnet18_w32`` and ``tiny`` are CPU-sized variants for the demo and the tests.
ARCHS: dict[str, ArchSpec] = {
    "resnet101": ArchSpec("bottleneck", (3, 4, 23, 3), 64),
    "resnet50": ArchSpec("bottleneck", (3, 4, 6, 3), 64),
    "resnet18": ArchSpec("basic", (2, 2, 2, 2), 64),
    "resnet18_w32": ArchSpec("basic", (2, 2, 2, 2), 32),
    "tiny": ArchSpec("basic", (1, 1, 1, 1), 16),
}


class FrozenAffineBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with frozen affine parameters; ``freeze_stats`` keeps it in eval mode.

    The state-dict keys are those of ``nn.BatchNorm2d`` (weight, bias, running_mean, running_var,
    num_batches_tracked).
    """

    def __init__(self, num_features: int, freeze_stats: bool = False):
        super().__init__(num_features, affine=True)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        self.freeze_stats = freeze_stats

    def train(self, mode: bool = True) -> FrozenAffineBatchNorm2d:
        return super().train(mode and not self.freeze_stats)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    padding = dilation if kernel == 3 else 0
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)


class Bottleneck(nn.Module):
    """1×1 (stride here, Caffe style) → 3×3 (dilated) → 1×1, expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, freeze_stats: bool = False):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 1, stride=stride)
        self.bn1 = FrozenAffineBatchNorm2d(planes, freeze_stats)
        self.conv2 = _conv(planes, planes, 3, dilation=dilation)
        self.bn2 = FrozenAffineBatchNorm2d(planes, freeze_stats)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = FrozenAffineBatchNorm2d(planes * 4, freeze_stats)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class BasicBlock(nn.Module):
    """3×3 (stride here) → 3×3, both dilated in layer3/layer4; expansion 1 (ResNet-18 and the small
    variants; not part of the official code, which only builds ResNet-101)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, freeze_stats: bool = False):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride=stride, dilation=dilation)
        self.bn1 = FrozenAffineBatchNorm2d(planes, freeze_stats)
        self.conv2 = _conv(planes, planes, 3, dilation=dilation)
        self.bn2 = FrozenAffineBatchNorm2d(planes, freeze_stats)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _make_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int,
                dilation: int, freeze_stats: bool) -> nn.Sequential:
    """One stage, with the official downsample rule and the dilation on every block."""
    out_ch = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_ch or dilation in (2, 4):
        downsample = nn.Sequential(_conv(inplanes, out_ch, 1, stride=stride),
                                   FrozenAffineBatchNorm2d(out_ch, freeze_stats))
    layers = [block(inplanes, planes, stride, dilation, downsample, freeze_stats)]
    layers += [block(out_ch, planes, 1, dilation, None, freeze_stats) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def init_official(module: nn.Module) -> None:
    """Official init (§1.4): every conv weight ~ N(0, 0.01), biases left at the PyTorch default;
    every BatchNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.fill_(1.0)
                m.bias.zero_()


class DeepLabResNet(nn.Module):
    """The backbone: stem + layer1..layer4, output stride 8. ``forward`` returns the layer4 features."""

    BACKBONE_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")

    def __init__(self, arch: str = "resnet101", bn_mode: str = "train"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
        if bn_mode not in BN_MODES:
            raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of {BN_MODES}")
        spec = ARCHS[arch]
        self.arch = arch
        self.arch_spec = spec
        freeze = bn_mode == "frozen"
        self._bn_mode = bn_mode
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        w = spec.width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenAffineBatchNorm2d(w, freeze)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        inplanes = w
        stages = []
        for planes, blocks, stride, dilation in zip((w, 2 * w, 4 * w, 8 * w), spec.layers, (1, 2, 1, 1),
                                                    (1, 1, 2, 4), strict=True):
            stages.append(_make_layer(block, inplanes, planes, blocks, stride, dilation, freeze))
            inplanes = planes * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = inplanes

    @property
    def bn_mode(self) -> str:
        return self._bn_mode

    def set_bn_mode(self, bn_mode: str) -> None:
        """Switch BatchNorm statistics between ``"train"`` (official) and ``"frozen"``."""
        if bn_mode not in BN_MODES:
            raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of {BN_MODES}")
        self._bn_mode = bn_mode
        for m in self.modules():
            if isinstance(m, FrozenAffineBatchNorm2d):
                m.freeze_stats = bn_mode == "frozen"
        self.train(self.training)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def output_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the stride-8 output for an (H, W) input, computed from the layer definitions:
    7×7/2 conv (pad 3), 3×3/2 ceil-mode max-pool (pad 1), 1×1/2 conv in layer2."""

    def conv(n: int, k: int, s: int, p: int) -> int:
        return (n + 2 * p - k) // s + 1

    def pool_ceil(n: int, k: int = 3, s: int = 2, p: int = 1) -> int:
        out = math.ceil((n + 2 * p - k) / s) + 1
        if (out - 1) * s >= n + p:  # the last window must start inside the input (PyTorch's rule)
            out -= 1
        return out

    return tuple(conv(pool_ceil(conv(n, 7, 2, 3)), 1, 2, 0) for n in input_size)  # type: ignore[return-value]
