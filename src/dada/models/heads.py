"""What sits on the backbone: DeepLab-v2's ASPP classifier and the DADA depth block's layers (§1.2–1.3)."""

from __future__ import annotations

import torch
from torch import nn

DEPTH_WIDTHS = ("official", "paper")
ASPP_RATES = (6, 12, 18, 24)


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


def depth_encoder(channels: int, depth_widths: str = "official") -> dict[str, nn.Conv2d]:
    """``enc4_1`` 1×1, ``enc4_2`` 3×3, ``enc4_3`` 1×1 (official names), weights N(0, 0.01) (§1.4)."""
    w1, w2, w3 = depth_block_widths(channels, depth_widths)
    convs = {"enc4_1": nn.Conv2d(channels, w1, 1, bias=True),
             "enc4_2": nn.Conv2d(w1, w2, 3, padding=1, bias=True),
             "enc4_3": nn.Conv2d(w2, w3, 1, bias=True)}
    for conv in convs.values():
        nn.init.normal_(conv.weight, 0.0, 0.01)
    return convs


def depth_decoder(channels: int, depth_widths: str = "official") -> nn.Conv2d:
    """``dec4``: 1×1 from the encoding back to the backbone width (feature fusion)."""
    conv = nn.Conv2d(depth_block_widths(channels, depth_widths)[2], channels, 1, bias=True)
    nn.init.normal_(conv.weight, 0.0, 0.01)
    return conv
