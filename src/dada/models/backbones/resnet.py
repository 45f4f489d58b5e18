"""The Caffe DeepLab-v2 ResNets (ResNet-101/50/18) and the small CPU variants, with their weight
conversion (reference §1.1, §1.7).

What differs from torchvision's ResNet, and matters for the official weights:

* the stride of a bottleneck sits on its first 1×1 conv (torchvision puts it on the 3×3 conv);
* the max-pool uses ``ceil_mode=True`` (512×1024 → 65×129 at the output, not 64×128);
* layer3 and layer4 keep stride 1 and dilate **every** block (2 and 4): output stride 8;
* a downsample branch is built by the official ``_make_layer`` rule: ``stride != 1`` or
  ``inplanes != planes·expansion`` or ``dilation in (2, 4)``, i.e. in block 0 of every bottleneck stage;
* BatchNorm affine parameters are frozen (``requires_grad=False``); their statistics follow ``bn_mode``
  (:class:`~dada.models.backbones.base.Backbone`).

Module attribute names are the official ones (``conv1``, ``bn1``, ``layer1`` … ``layer4``, blocks with
``conv1..3``, ``bn1..3``, ``downsample.0/1``), so state-dict keys match the released checkpoints.
All activations are out-of-place so that autocast, channels_last and ``torch.compile`` work unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dada.errors import DadaError
from dada.models.backbones.base import Backbone, FrozenAffineBatchNorm2d
from dada.models.weights import SHOW_KEYS, check_layout, layout


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


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    padding = dilation if kernel == 3 else 0
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation, bias=False)


class Bottleneck(nn.Module):
    """1×1 (stride here, Caffe style) → 3×3 (dilated) → 1×1, expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 1, stride=stride)
        self.bn1 = FrozenAffineBatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, dilation=dilation)
        self.bn2 = FrozenAffineBatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = FrozenAffineBatchNorm2d(planes * 4)
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
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride=stride, dilation=dilation)
        self.bn1 = FrozenAffineBatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, dilation=dilation)
        self.bn2 = FrozenAffineBatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _make_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int,
                dilation: int) -> nn.Sequential:
    """One stage, with the official downsample rule and the dilation on every block."""
    out_ch = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_ch or dilation in (2, 4):
        downsample = nn.Sequential(_conv(inplanes, out_ch, 1, stride=stride), FrozenAffineBatchNorm2d(out_ch))
    layers = [block(inplanes, planes, stride, dilation, downsample)]
    layers += [block(out_ch, planes, 1, dilation, None) for _ in range(1, blocks)]
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


#: (stride, dilation) of layer1..layer4 for each output stride (DeepLab-v2 uses 8).
_STAGE_GEOMETRY = {8: ((1, 1), (2, 1), (1, 2), (1, 4)), 16: ((1, 1), (2, 1), (2, 1), (1, 2))}


class DeepLabResNet(Backbone):
    """Stem + layer1..layer4; ``forward`` returns the layer4 features (output stride 8, or 16)."""

    preprocess: ClassVar[str] = "caffe"
    #: the first component of every backbone key, as in the official checkpoints
    KEY_ROOTS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")

    def __init__(self, arch: str = "resnet101", bn_mode: str = "train", output_stride: int = 8):
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
        if output_stride not in _STAGE_GEOMETRY:
            raise ValueError(f"unknown output_stride {output_stride!r} for {arch}; choose 8 or 16")
        super().__init__(bn_mode, output_stride)
        spec = ARCHS[arch]
        self.arch, self.arch_spec = arch, spec
        block = Bottleneck if spec.block == "bottleneck" else BasicBlock
        w = spec.width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenAffineBatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        inplanes = w
        stages = []
        for planes, blocks, (stride, dilation) in zip((w, 2 * w, 4 * w, 8 * w), spec.layers,
                                                      _STAGE_GEOMETRY[output_stride], strict=True):
            stages.append(_make_layer(block, inplanes, planes, blocks, stride, dilation))
            inplanes = planes * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = inplanes
        init_official(self)
        self.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the output for an (H, W) input, from the layer definitions: 7×7/2 conv (pad 3),
        3×3/2 ceil-mode max-pool (pad 1), 1×1/2 conv in layer2 (and in layer3 at output stride 16)."""
        return output_size(size, self.output_stride)

    def official_sgd_roots(self) -> list[nn.Module]:
        """ADVENT ``get_1x_lr_params_no_scale``: ``conv1, bn1, layer1..layer4`` in this order."""
        return [getattr(self, name) for name in self.KEY_ROOTS]

    def load_pretrained(self, state_dict: Mapping[str, torch.Tensor], kind: str = "auto") -> dict:
        """Load ``DeepLab_resnet_pretrained_imagenet.pth`` (``kind="imagenet"``) or a torchvision-layout
        ResNet (``kind="torchvision"``); ``auto`` tells them apart by their keys."""
        if kind == "auto":
            kind = "torchvision" if all(k.split(".")[0] in self.KEY_ROOTS + ("fc",) for k in state_dict) \
                else "imagenet"
        converted = convert_pretrained(state_dict, kind, model=self)
        self.load_state_dict(converted)
        return {"kind": kind, "loaded": len(converted)}


def output_size(input_size: tuple[int, int], output_stride: int = 8) -> tuple[int, int]:
    """(H, W) of a DeepLab ResNet's output for an (H, W) input (see :meth:`DeepLabResNet.output_size`)."""

    def conv(n: int, k: int, s: int, p: int) -> int:
        return (n + 2 * p - k) // s + 1

    def pool_ceil(n: int, k: int = 3, s: int = 2, p: int = 1) -> int:
        out = math.ceil((n + 2 * p - k) / s) + 1
        if (out - 1) * s >= n + p:  # the last window must start inside the input (PyTorch's rule)
            out -= 1
        return out

    def stride8(n: int) -> int:
        return conv(pool_ceil(conv(n, 7, 2, 3)), 1, 2, 0)

    if output_stride == 16:
        return tuple(conv(stride8(n), 1, 2, 0) for n in input_size)  # type: ignore[return-value]
    return tuple(stride8(n) for n in input_size)  # type: ignore[return-value]


# -------------------------------------------------------------------------------- weight conversion
PRETRAINED_KINDS = ("imagenet", "torchvision")
IMAGENET_PREFIX = "Scale."


def _blocks_per_stage(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"layer{stage}\.(\d+)\.")
        indices = [int(m.group(1)) for k in state_dict if (m := pattern.match(k))]
        counts.append(max(indices) + 1 if indices else 0)
    return tuple(counts)


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The :data:`ARCHS` name whose backbone has this (backbone-key) state dict's block type, depth and
    width."""
    if "conv1.weight" not in state_dict:
        raise DadaError(f"no 'conv1.weight' key: not a DeepLab/ResNet state dict (first keys: "
                        f"{list(state_dict)[:SHOW_KEYS]})")
    width = state_dict["conv1.weight"].shape[0]
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    layers = _blocks_per_stage(state_dict)
    for name, spec in ARCHS.items():
        if spec.block == block and spec.layers == layers and spec.width == width:
            return name
    raise DadaError(f"no known architecture has {block} blocks {list(layers)} with stem width {width}; "
                    f"known: {sorted(ARCHS)}")


def backbone_layout(model: DeepLabResNet | None, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Key → shape of ``model`` (or of the ResNet the state dict describes, built on the meta device)."""
    if model is None:
        with torch.device("meta"):
            model = DeepLabResNet(infer_arch(state_dict))
    return layout(model)


def convert_pretrained(state_dict: Mapping[str, torch.Tensor], kind: str,
                       model: DeepLabResNet | None = None) -> dict[str, torch.Tensor]:
    """Published ImageNet weights → this backbone's keys, checked key by key.

    ``imagenet``: ``DeepLab_resnet_pretrained_imagenet.pth``, read as the official ``train.py`` does: a
    key whose second component is ``layer5`` is skipped, the first component (a wrapper prefix, probably
    ``Scale``) is stripped. ``torchvision``: a torchvision-layout ResNet-50/101: same names, ``fc.*``
    dropped. torchvision puts a bottleneck's stride on its 3×3 conv, we (Caffe style) on the first 1×1:
    the shapes agree and the weights load, but expect fine-tuning to be needed.
    """
    if kind == "imagenet":
        backbone = {}
        for key, value in state_dict.items():
            parts = key.split(".")
            if len(parts) > 1 and parts[1] == "layer5":
                continue
            backbone[".".join(parts[1:])] = value
        return check_layout(backbone, backbone_layout(model, backbone), "the backbone (kind 'imagenet': "
                            "keys are read as '<prefix>.<name>', as the official train.py does)")
    if kind == "torchvision":
        backbone = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        return check_layout(backbone, backbone_layout(model, backbone), "the backbone (kind 'torchvision')")
    raise DadaError(f"unknown ImageNet weight kind {kind!r} for a DeepLab ResNet; choose one of "
                    f"{PRETRAINED_KINDS}")


def export_imagenet(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Backbone keys → the ``DeepLab_resnet_pretrained_imagenet.pth`` layout (``Scale.`` prefix)."""
    checked = check_layout(state_dict, backbone_layout(None, state_dict), "the backbone")
    return {IMAGENET_PREFIX + k: v for k, v in checked.items()}


def _factory(arch: str):
    def build(bn_mode: str = "train", output_stride: int = 8) -> DeepLabResNet:
        return DeepLabResNet(arch, bn_mode=bn_mode, output_stride=output_stride)

    build.__name__ = arch
    build.__doc__ = f"The DeepLab-v2 {arch} backbone."
    return build


def resnet101(bn_mode: str = "train", output_stride: int = 8) -> DeepLabResNet:
    """DeepLab-v2 ResNet-101 (the paper's backbone; ImageNet weights:
    DeepLab_resnet_pretrained_imagenet.pth)."""
    return DeepLabResNet("resnet101", bn_mode=bn_mode, output_stride=output_stride)


def resnet50(bn_mode: str = "train", output_stride: int = 8) -> DeepLabResNet:
    """DeepLab-v2 ResNet-50 (torchvision ImageNet weights convert: ``model.pretrained_kind=torchvision``)."""
    return DeepLabResNet("resnet50", bn_mode=bn_mode, output_stride=output_stride)


def resnet18(bn_mode: str = "train", output_stride: int = 8) -> DeepLabResNet:
    """DeepLab-v2 ResNet-18 (basic blocks)."""
    return DeepLabResNet("resnet18", bn_mode=bn_mode, output_stride=output_stride)


def resnet18_w32(bn_mode: str = "train", output_stride: int = 8) -> DeepLabResNet:
    """ResNet-18 at half width (CPU-sized; no ImageNet weights)."""
    return DeepLabResNet("resnet18_w32", bn_mode=bn_mode, output_stride=output_stride)


def tiny(bn_mode: str = "train", output_stride: int = 8) -> DeepLabResNet:
    """One basic block per stage, 16 wide: the from-scratch smoke-test backbone (no ImageNet weights)."""
    return DeepLabResNet("tiny", bn_mode=bn_mode, output_stride=output_stride)


#: name → constructor, merged into :data:`dada.models.backbones.BACKBONES` (one explicit function each)
RESNETS = {f.__name__: f for f in (resnet101, resnet50, resnet18, resnet18_w32, tiny)}
assert set(RESNETS) == set(ARCHS), "every ARCHS entry has its named constructor"
