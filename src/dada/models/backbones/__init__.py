"""Backbones: one file per family, each a :class:`Backbone` (``base.py``). Adding one is a new file
plus one entry in :data:`BACKBONES` (see ``docs/developing.md``).
"""

from __future__ import annotations

from collections.abc import Callable

from dada.models.backbones.base import BN_MODES, Backbone, FrozenAffineBatchNorm2d
from dada.models.backbones.efficientnet_lite import LITES
from dada.models.backbones.resnet import RESNETS
from dada.models.backbones.vgg import vgg16

#: name → constructor taking keyword arguments ``bn_mode="train", output_stride=8``
BACKBONES: dict[str, Callable[..., Backbone]] = {
    **RESNETS,  # resnet101, resnet50, resnet18, resnet18_w32, tiny
    **LITES,  # efficientnet_lite0, efficientnet_lite1, efficientnet_lite2
    "vgg16": vgg16,
}


def build_backbone(arch: str, **kwargs) -> Backbone:
    """The backbone ``arch`` (a :data:`BACKBONES` name) built with ``kwargs`` (``bn_mode``,
    ``output_stride``)."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[arch](**kwargs)


__all__ = ["BACKBONES", "BN_MODES", "Backbone", "FrozenAffineBatchNorm2d", "build_backbone"]
