"""VGG-16 DeepLab-v2 backbone of the AdaptSegNet code (wasidennis/AdaptSegNet, ``model/deeplab_vgg.py``),
the network of the top half of DADA's Table 1 (SPIGAN, AdaptSegNet-VGG). ADVENT releases no VGG model.

From torchvision's ``vgg16()``: conv1_1 … conv5_3 with ReLU; pool1–pool3 (2×2, stride 2) kept, pool4 and
pool5 removed, so the output stride is 8; conv5_1–5_3 dilated 2 (padding 2); then two new layers,
``fc6`` 3×3 conv 512→1024 dilation 4 and ``fc7`` 3×3 conv 1024→1024 dilation 4 (AdaptSegNet's code makes
fc7 3×3 dilated too, not DeepLab-LargeFOV's 1×1), each followed by ReLU, no dropout. fc6/fc7 start from
PyTorch's default init: the official code does not derive them from the ImageNet fc layers.

Weights: a torchvision-layout VGG-16 state dict (``features.N.weight``, ``classifier.0/3/6.weight``); the
AdaptSegNet code uses the Caffe VGG-16 converted to that layout (``vgg16-00b39a1b.pth``), which expects
Caffe preprocessing (BGR, mean subtracted, 0–255: ``preprocess = "caffe"``). torchvision's own
``vgg16-397923af.pth`` has the same layout but expects ``imagenet`` preprocessing: set
``data.preprocess=imagenet`` with it. The classifier (fc) weights are dropped, as the official code drops
them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dada.errors import DadaError
from dada.models.backbones.base import Backbone
from dada.models.weights import check_layout, strip_wrapper_prefixes

#: (name, in, out, dilation) of the 13 convs; ``None`` marks a 2×2/2 max-pool kept in the backbone.
VGG16_LAYERS = (
    ("conv1_1", 3, 64, 1), ("conv1_2", 64, 64, 1), None,
    ("conv2_1", 64, 128, 1), ("conv2_2", 128, 128, 1), None,
    ("conv3_1", 128, 256, 1), ("conv3_2", 256, 256, 1), ("conv3_3", 256, 256, 1), None,
    ("conv4_1", 256, 512, 1), ("conv4_2", 512, 512, 1), ("conv4_3", 512, 512, 1),  # pool4 removed
    ("conv5_1", 512, 512, 2), ("conv5_2", 512, 512, 2), ("conv5_3", 512, 512, 2),  # pool5 removed
)

#: Index of each conv in torchvision's ``vgg16().features`` (conv, ReLU and the 5 pools counted).
TORCHVISION_FEATURE_INDEX = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24, "conv5_2": 26, "conv5_3": 28,
}
#: The same in our ``features`` (pool4 removed).
OUR_FEATURE_INDEX = {name: index - (index > 23) for name, index in TORCHVISION_FEATURE_INDEX.items()}
FC_CHANNELS = 1024
FC_DILATION = 4


class DeepLabVGG16(Backbone):
    """conv1–conv5 of VGG-16 + fc6/fc7 as dilated convs: N×3×H×W → N×1024×h×w at output stride 8."""

    preprocess = "caffe"

    def __init__(self, bn_mode: str = "train", output_stride: int = 8):
        if output_stride != 8:
            raise ValueError(f"vgg16 (DeepLab-v2) has output stride 8 only, got {output_stride}")
        super().__init__(bn_mode, output_stride)  # no BatchNorm in VGG-16: both modes behave the same
        layers: list[nn.Module] = []
        for spec in VGG16_LAYERS:
            if spec is None:
                layers.append(nn.MaxPool2d(2, stride=2))
                continue
            name, c_in, c_out, dilation = spec
            conv = nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation)
            # torchvision's vgg16() init, i.e. what the official code builds before loading weights
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            assert len(layers) == OUR_FEATURE_INDEX[name]
            layers += [conv, nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc6 = nn.Conv2d(512, FC_CHANNELS, 3, padding=FC_DILATION, dilation=FC_DILATION)
        self.fc7 = nn.Conv2d(FC_CHANNELS, FC_CHANNELS, 3, padding=FC_DILATION, dilation=FC_DILATION)
        self.out_channels = FC_CHANNELS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(self.features(x)))))

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Three 2×2/2 max-pools (floor) on "same" 3×3 convs: ⌊⌊⌊n/2⌋/2⌋/2⌋ = ⌊n/8⌋."""
        return tuple(n // 8 for n in size)  # type: ignore[return-value]

    def load_pretrained(self, state_dict: Mapping[str, torch.Tensor], kind: str = "auto") -> dict:
        """Load a torchvision-layout ImageNet VGG-16 (conv1_1 … conv5_3); fc6/fc7 keep their init.
        ``kind``: ``auto`` or ``torchvision`` (the layout of the Caffe-converted file too)."""
        if kind not in ("auto", "torchvision", "imagenet"):
            raise DadaError(f"vgg16 loads a torchvision-layout VGG-16 (kind 'torchvision'), not {kind!r}")
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items() if k.startswith("features.")}
        converted = check_layout(convert_pretrained(state_dict), expected,
                                 "vgg16 (conv1_1-conv5_3 of a torchvision-layout VGG-16)")
        self.load_state_dict(converted, strict=False)
        return {"kind": "torchvision", "loaded": len(converted)}


def convert_pretrained(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ``features.N.*`` → our ``features.M.*`` (pool4 gone: conv5's indices shift by one);
    ``classifier.*`` (the ImageNet fc layers) dropped; a ``module.`` / ``_orig_mod.`` prefix stripped.
    Other keys pass unchanged so that the check names them."""
    rename = {f"features.{TORCHVISION_FEATURE_INDEX[name]}.": f"features.{OUR_FEATURE_INDEX[name]}."
              for name in TORCHVISION_FEATURE_INDEX}
    converted = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        if key.startswith("classifier."):
            continue
        prefix = key.rpartition(".")[0] + "."
        converted[rename[prefix] + key[len(prefix):] if prefix in rename else key] = value
    return converted


def vgg16(bn_mode: str = "train", output_stride: int = 8) -> DeepLabVGG16:
    return DeepLabVGG16(bn_mode, output_stride)
