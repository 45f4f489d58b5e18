"""The DADA segmenter: a backbone, the residual auxiliary depth block and the ASPP classifier (§1.2–1.3).

::

    x ─ backbone ─ f (C_b ch) ─────────────────────────────────────── ⊙ ─ layer6 (ASPP) ─ seg
                    └ enc4_1 1×1 ─ReLU─ enc4_2 3×3 ─ReLU─ enc4_3 1×1 ─┤
                                                        ├ mean over channels ─ depth
                                                        └ dec4 1×1 ─ReLU──────┘ (fusion)

Two independent switches (the ablations S1–S7 need every combination):

* ``depth_head``: the encoder predicts inverse depth, returned as ``out.depth`` (N×1×h×w).
* ``feature_fusion``: ``dec4`` decodes the encoding back to the backbone width and the classifier sees
  ``f ⊙ ReLU(dec4(enc))`` instead of ``f``.

``depth_scale`` (not in the official code, default None = official): the depth output becomes
``depth_scale · (1 + mean over channels)``, a fixed reparametrisation that makes the branch start at
``depth_scale`` (set it to the source's mean inverse depth) and learn relative deviations from it. The
output stays in the data's inverse-depth units, so the losses, the DADA map and the evaluation are
unchanged. The official output starts near 0 against a target of mean ~70 on the built-in benchmark
(SYNTHIA's 65536/(cm+1)); at λ_dep = 1e-3 the branch does not learn in a short schedule
(``benchmarks/study_depth_branch.py``; docs/demo.md). The paper's 90k iterations may get there.

``fusion_scale`` (not in the official code, default None = official): the fusion gate becomes
``fusion_scale · ReLU(dec4(enc))``, a fixed factor that lets the gate start near 1 instead of near the
official init's ~0.03 (dec4 ~ N(0, 0.01)); the classifier then sees features of the backbone's scale from
the first iteration. The function class is the same (dec4 could grow by that factor), only the speed of
a short schedule differs.

``feature_fusion`` without ``depth_head`` keeps the encoder-decoder as a residual attention block whose
depth is neither returned nor supervised (``out.depth is None``). Presets: S1/S2 (source only, AdvEnt) use
neither; S3 (AdvEnt + feature fusion, with depth supervision) uses both; S4 (depth adaptation only) uses
``depth_head`` alone; S5–S7 (DADA) use both.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dada.models.backbones import BACKBONES, build_backbone
from dada.models.heads import ClassifierModule, depth_decoder, depth_encoder


class SegmenterOutput(NamedTuple):
    """``seg``: N×C×h×w logits at the backbone's stride; ``depth``: N×1×h×w inverse depth, or None."""

    seg: torch.Tensor
    depth: torch.Tensor | None


class Segmenter(nn.Module):
    """A backbone + the DADA depth block + the ASPP classifier. Build it with :func:`build_segmenter`.

    State-dict keys: ``backbone.*`` (the backbone's own keys), ``layer6.conv2d_list.{0..3}``, ``enc4_1``,
    ``enc4_2``, ``enc4_3``, ``dec4`` (the depth block keys only when the switches create them). For the
    DeepLab ResNets, ``dada.models.official`` maps them to the official checkpoints' keys and back.
    """

    def __init__(self, arch: str = "resnet101", num_classes: int = 16, depth_head: bool = True,
                 feature_fusion: bool = True, bn_mode: str = "train", depth_widths: str = "official",
                 output_stride: int = 8, depth_scale: float | None = None,
                 fusion_scale: float | None = None):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if depth_scale is not None and not (depth_scale > 0 and depth_scale < float("inf")):
            raise ValueError(f"depth_scale must be a positive number or None, got {depth_scale}")
        if fusion_scale is not None and not (fusion_scale > 0 and fusion_scale < float("inf")):
            raise ValueError(f"fusion_scale must be a positive number or None, got {fusion_scale}")
        self.fusion_scale = None if fusion_scale is None else float(fusion_scale)
        self.arch, self.num_classes, self.depth_widths = arch, num_classes, depth_widths
        self.depth_scale = None if depth_scale is None else float(depth_scale)
        self.depth_head, self.feature_fusion = bool(depth_head), bool(feature_fusion)
        self.backbone = build_backbone(arch, bn_mode=bn_mode, output_stride=output_stride)
        channels = self.backbone.out_channels
        self.layer6 = ClassifierModule(channels, num_classes)
        if self.depth_head or self.feature_fusion:
            for name, conv in depth_encoder(channels, depth_widths).items():
                self.add_module(name, conv)
        if self.feature_fusion:
            self.dec4 = depth_decoder(channels, depth_widths)

    @property
    def spec(self) -> dict:
        """The :func:`build_segmenter` keyword arguments that rebuild this model (saved in checkpoints)."""
        return {key: getattr(self, key) for key in spec_keys()}

    @property
    def bn_mode(self) -> str:
        return self.backbone.bn_mode

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def set_bn_mode(self, bn_mode: str) -> None:
        self.backbone.set_bn_mode(bn_mode)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of ``seg`` and ``depth`` for an (H, W) input (the heads keep the backbone's size)."""
        return self.backbone.output_size(size)

    def forward(self, x: torch.Tensor) -> SegmenterOutput:
        features = self.backbone(x)
        depth = None
        if self.depth_head or self.feature_fusion:
            encoding = self.encode(features)
            if self.depth_head:
                depth = encoding.mean(dim=1, keepdim=True)  # no activation: may be negative (official)
                if self.depth_scale is not None:
                    depth = self.depth_scale * (1.0 + depth)
            if self.feature_fusion:
                gate = F.relu(self.dec4(encoding))
                features = features * (gate if self.fusion_scale is None else self.fusion_scale * gate)
        return SegmenterOutput(self.layer6(features), depth)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """The depth block's encoding of the backbone features: enc4_1 → ReLU → enc4_2 → ReLU → enc4_3."""
        return self.enc4_3(F.relu(self.enc4_2(F.relu(self.enc4_1(features)))))

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters outside the backbone: the ASPP classifier and the depth block."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in in_backbone]

    def param_groups(self, lr: float) -> list[dict]:
        """Two SGD groups (§1.5): the backbone at ``lr``; classifier and depth block at ``10·lr``.

        Frozen parameters (BN affine) are left out. Each group carries ``lr_mult`` (1 or 10) and a
        ``name`` so that a scheduler can set ``group["lr"] = lr_mult · poly(lr)``.
        """
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [{"params": backbone, "lr": lr, "lr_mult": 1.0, "name": "backbone"},
                {"params": self.head_parameters(), "lr": 10.0 * lr, "lr_mult": 10.0, "name": "head"}]


def spec_keys() -> tuple[str, ...]:
    """The :func:`build_segmenter` arguments: the keys of ``model.spec`` and those of a run's ``model``
    config that describe the network."""
    return tuple(inspect.signature(build_segmenter).parameters)


def build_segmenter(arch: str = "resnet101", num_classes: int = 16, depth_head: bool = True,
                    feature_fusion: bool = True, bn_mode: str = "train", depth_widths: str = "official",
                    output_stride: int = 8, depth_scale: float | None = None,
                    fusion_scale: float | None = None) -> Segmenter:
    """Build the DADA segmenter (DeepLab-v2 when both switches are off).

    ``arch`` ∈ :data:`~dada.models.backbones.BACKBONES`; ``bn_mode`` ∈ {"train", "frozen"};
    ``depth_widths`` ∈ {"official", "paper"}; ``output_stride`` 8 (DeepLab-v2) or 16 where the backbone
    supports it; ``depth_scale`` None (official) or the source's mean inverse depth, ``fusion_scale``
    None (official) or a constant factor on the fusion gate (see the module docstring). Weights follow
    the official init (§1.4); load ImageNet or released weights afterwards.
    """
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(BACKBONES)}")
    return Segmenter(arch, num_classes, depth_head, feature_fusion, bn_mode, depth_widths, output_stride,
                     depth_scale, fusion_scale)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling with ``align_corners=True`` to ``size`` = (H, W), as the official code does
    for logits and depth before the losses, the discriminator and the evaluation (a no-op at that size)."""
    if tuple(x.shape[-2:]) == tuple(int(s) for s in size):
        return x
    return F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=True)
