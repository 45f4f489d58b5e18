"""What every backbone provides to the segmenter, the optimizer and the weight loaders.

A backbone is the feature extractor of the segmenter: image in, its last features out (what the ASPP
classifier and the DADA depth block see). One file per family in this package; each registers its
constructors in :data:`dada.models.backbones.BACKBONES`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from dada.errors import DadaError

BN_MODES = ("train", "frozen")
PREPROCESS_MODES = ("caffe", "imagenet", "lite")


def check_bn_mode(bn_mode: str) -> str:
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of {BN_MODES}")
    return bn_mode


class FrozenAffineBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose affine parameters are not trained (``requires_grad=False``), as in DeepLab-v2.

    The state-dict keys are those of ``nn.BatchNorm2d`` (weight, bias, running_mean, running_var,
    num_batches_tracked). Whether its statistics update is the backbone's ``bn_mode``.
    """

    def __init__(self, num_features: int):
        super().__init__(num_features, affine=True)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)


class Backbone(nn.Module):
    """Base class of the backbones. Subclasses set ``out_channels``, ``output_stride`` and
    ``preprocess``, build their layers and implement :meth:`forward`.

    ``bn_mode``: ``"train"`` (the official behaviour: batch statistics and running-stat updates whenever
    the model is in train mode) or ``"frozen"`` (every BatchNorm stays in eval mode, even in train mode).
    """

    #: what its ImageNet weights expect: "caffe" (BGR, Caffe mean), "imagenet" (RGB, /255, mean/std) or
    #: "lite" (RGB, (x − 127)/128)
    preprocess: ClassVar[str] = "imagenet"

    def __init__(self, bn_mode: str = "train", output_stride: int = 8):
        super().__init__()
        self._bn_mode = check_bn_mode(bn_mode)
        self.output_stride = int(output_stride)
        self.out_channels = 0  # set by the subclass once its layers are built

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    # ------------------------------------------------------------------------------------ BatchNorm
    @property
    def bn_mode(self) -> str:
        return self._bn_mode

    def set_bn_mode(self, bn_mode: str) -> None:
        """Switch BatchNorm statistics between ``"train"`` and ``"frozen"`` on a built model."""
        self._bn_mode = check_bn_mode(bn_mode)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode and self._bn_mode == "frozen":
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.train(False)
        return self

    # --------------------------------------------------------------------------------- sizes, groups
    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of :meth:`forward`'s output for an (H, W) input. This default runs the network on the
        meta device (no memory, no compute); families with a closed formula override it."""
        meta = {name: torch.empty_like(t, device="meta")
                for name, t in self.state_dict(keep_vars=True).items()}
        with torch.no_grad():
            out = torch.func.functional_call(self, meta, (torch.empty(1, 3, *size, device="meta"),))
        return tuple(out.shape[-2:])  # type: ignore[return-value]

    def official_sgd_roots(self) -> list[nn.Module] | None:
        """The modules whose parameters the official optimizer lists for the backbone, in the order of the
        official ``get_1x_lr_params_no_scale`` (see :mod:`dada.optim`); None where no official code
        defines one (then each trainable tensor is listed once)."""
        return None

    # ---------------------------------------------------------------------------------- weights
    def load_pretrained(self, state_dict: dict[str, torch.Tensor], kind: str = "auto") -> dict:
        """Convert the family's published ImageNet weights to this module's keys and load them; returns
        ``{"kind", "loaded"}``. A mismatch raises DadaError naming the first mismatching keys."""
        raise DadaError(f"the {type(self).__name__} backbone has no ImageNet weight conversion; "
                        "leave model.pretrained empty or give a whole segmenter (model.pretrained_kind="
                        "segmenter)")
