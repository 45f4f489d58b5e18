"""The DADA segmenter: DeepLab-v2 backbone, residual auxiliary depth block, ASPP classifier (§1.2–1.3).

::

    x ─ backbone ─ f (layer4, C_b ch) ─────────────────────────────── ⊙ ─ layer6 (ASPP) ─ seg
                    └ enc4_1 1×1 ─ReLU─ enc4_2 3×3 ─ReLU─ enc4_3 1×1 ─┤
                                                        ├ mean over channels ─ depth
                                                        └ dec4 1×1 ─ReLU──────┘ (fusion)

Two independent switches (the ablations S1–S7 need every combination):

* ``depth_head``: the encoder predicts inverse depth, returned as ``out.depth`` (N×1×h×w).
* ``feature_fusion``: ``dec4`` decodes the encoding back to the backbone width and the classifier sees
  ``f ⊙ ReLU(dec4(enc))`` instead of ``f``.

``feature_fusion`` without ``depth_head`` keeps the encoder-decoder as a residual attention block whose
depth is neither returned nor supervised (``out.depth is None``). Presets: S1/S2 (source only, AdvEnt) use
neither; S3 (AdvEnt + feature fusion, with depth supervision) uses both; S4 (depth adaptation only) uses
``depth_head`` alone; S5–S7 (DADA) use both.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dada.models.resnet import ARCHS, DeepLabResNet, init_official

DEPTH_WIDTHS = ("official", "paper")
ASPP_RATES = (6, 12, 18, 24)


class SegmenterOutput(NamedTuple):
    """``seg``: N×C×h×w logits at stride 8; ``depth``: N×1×h×w predicted inverse depth, or None."""

    seg: torch.Tensor
    depth: torch.Tensor | None


class ClassifierModule(nn.Module):
    """ASPP of DeepLab-v2: the **sum** of four dilated 3×3 convs with bias (rates 6, 12, 18, 24)."""

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...] = ASPP_RATES):
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates)
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


def depth_block_widths(backbone_channels: int, depth_widths: str = "official") -> tuple[int, int, int]:
    """Encoder widths: ``official`` = C/4, C/4, C/16 (2048→512→512→128, the released code);
    ``paper`` = C/4, C/16, C/64 (2048→512→128→32, "4 times fewer channels" per layer)."""
    if depth_widths == "official":
        divisors = (4, 4, 16)
    elif depth_widths == "paper":
        divisors = (4, 16, 64)
    else:
        raise ValueError(f"unknown depth_widths {depth_widths!r}; choose one of {DEPTH_WIDTHS}")
    return tuple(max(1, backbone_channels // d) for d in divisors)  # type: ignore[return-value]


class Segmenter(DeepLabResNet):
    """DeepLab-v2 + DADA depth block. Build it with :func:`build_segmenter`.

    State-dict keys are the official ones: ``conv1, bn1, layer1..4, layer6.conv2d_list.{0..3},
    enc4_1, enc4_2, enc4_3, dec4`` (the depth block keys only when the switches create them).
    """

    HEAD_PREFIXES = ("layer6.", "enc4_1.", "enc4_2.", "enc4_3.", "dec4.")

    def __init__(self, arch: str = "resnet101", num_classes: int = 16, depth_head: bool = True,
                 feature_fusion: bool = True, bn_mode: str = "train", depth_widths: str = "official"):
        super().__init__(arch, bn_mode)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.depth_head = bool(depth_head)
        self.feature_fusion = bool(feature_fusion)
        self.depth_widths = depth_widths
        c = self.out_channels
        w1, w2, w3 = depth_block_widths(c, depth_widths)
        self.layer6 = ClassifierModule(c, num_classes)
        if self.depth_head or self.feature_fusion:
            self.enc4_1 = nn.Conv2d(c, w1, 1, bias=True)
            self.enc4_2 = nn.Conv2d(w1, w2, 3, padding=1, bias=True)
            self.enc4_3 = nn.Conv2d(w2, w3, 1, bias=True)
        if self.feature_fusion:
            self.dec4 = nn.Conv2d(w3, c, 1, bias=True)
        init_official(self)

    @property
    def spec(self) -> dict:
        """The :func:`build_segmenter` keyword arguments that rebuild this model (saved in checkpoints)."""
        return {"arch": self.arch, "num_classes": self.num_classes, "depth_head": self.depth_head,
                "feature_fusion": self.feature_fusion, "bn_mode": self.bn_mode,
                "depth_widths": self.depth_widths}

    def forward(self, x: torch.Tensor) -> SegmenterOutput:
        features = self.features(x)
        depth = None
        if self.depth_head or self.feature_fusion:
            encoding = self.enc4_3(F.relu(self.enc4_2(F.relu(self.enc4_1(features)))))
            if self.depth_head:
                depth = encoding.mean(dim=1, keepdim=True)  # no activation: may be negative (official)
            if self.feature_fusion:
                features = features * F.relu(self.dec4(encoding))
        return SegmenterOutput(self.layer6(features), depth)

    def param_groups(self, lr: float) -> list[dict]:
        """Two SGD groups (§1.5): backbone convs at ``lr``; classifier and depth block at ``10·lr``.

        Frozen BN affine parameters are excluded. Each group carries ``lr_mult`` (1 or 10) and a
        ``name`` so that a scheduler can set ``group["lr"] = lr_mult · poly(lr)``.
        """
        backbone, head = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (backbone if name.startswith(self.BACKBONE_PREFIXES) else head).append(param)
        return [{"params": backbone, "lr": lr, "lr_mult": 1.0, "name": "backbone"},
                {"params": head, "lr": 10.0 * lr, "lr_mult": 10.0, "name": "head"}]


def build_segmenter(arch: str = "resnet101", num_classes: int = 16, depth_head: bool = True,
                    feature_fusion: bool = True, bn_mode: str = "train",
                    depth_widths: str = "official") -> Segmenter:
    """Build the DADA segmenter (DeepLab-v2 when both switches are off).

    ``arch`` ∈ :data:`ARCHS`; ``bn_mode`` ∈ {"train", "frozen"}; ``depth_widths`` ∈ {"official",
    "paper"}. Weights follow the official init (§1.4); load ImageNet or released weights afterwards.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return Segmenter(arch, num_classes, depth_head, feature_fusion, bn_mode, depth_widths)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling with ``align_corners=True`` to ``size`` = (H, W), as the official code does
    for logits and depth before the losses and the discriminator."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
