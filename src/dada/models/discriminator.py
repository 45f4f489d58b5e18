"""The fully convolutional patch discriminator of ADVENT / DADA (§2.5).

Five 4×4 stride-2 convs (padding 1, bias) with ``ndf``, 2·ndf, 4·ndf, 8·ndf, 1 channels and LeakyReLU 0.2
after the first four; no BN, no sigmoid: the output is a 1-channel patch logit map at 1/32 of the input.
It is an ``nn.Sequential``, so the state-dict keys are the official ``0, 2, 4, 6, 8`` (PyTorch default init,
as the official code).
"""

from __future__ import annotations

from torch import nn


class Discriminator(nn.Sequential):
    def __init__(self, in_channels: int, ndf: int = 64):
        widths = (in_channels, ndf, 2 * ndf, 4 * ndf, 8 * ndf)
        layers: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=2, padding=1))
        super().__init__(*layers)
        self.in_channels = in_channels
        self.ndf = ndf


def build_discriminator(num_classes: int = 16, in_channels: int | None = None,
                        ndf: int = 64) -> Discriminator:
    """``in_channels`` defaults to ``num_classes`` (the self-information map); use 1 for a depth-map
    discriminator (ablations S4–S6)."""
    channels = num_classes if in_channels is None else in_channels
    if channels < 1 or ndf < 1:
        raise ValueError(f"in_channels and ndf must be positive, got {channels} and {ndf}")
    return Discriminator(channels, ndf)


def discriminator_output_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the patch logit map for an (H, W) input: five 4×4/2 convs with padding 1."""
    out = []
    for n in input_size:
        for _ in range(5):
            n = (n + 2 - 4) // 2 + 1
        out.append(n)
    return tuple(out)  # type: ignore[return-value]
