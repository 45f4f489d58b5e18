"""MinEnt (ADVENT, Vu et al. CVPR 2019): supervised source, entropy minimisation on the target."""

from __future__ import annotations

from typing import ClassVar

import torch

from dada import losses
from dada.methods.base import Method, SourceSettings, forward_upsampled


class MinEnt(Method):
    """ADVENT's ``train_minent``: λ_seg·CE on the source, then λ_ent·(normalised entropy of the target
    prediction); both backward before one SGD step. No discriminator."""

    Settings: ClassVar[type] = SourceSettings

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        train = self.cfg.train
        self.start_step(iteration)
        loss: dict[str, torch.Tensor] = {}
        seg_src, depth_src = forward_upsampled(self.model, source["image"])
        self.source_objective(source, seg_src, depth_src, loss, self.cfg.method.depth_supervision).backward()
        seg_trg, depth_trg = forward_upsampled(self.model, target["image"])
        loss["ent_trg"] = losses.entropy(torch.softmax(seg_trg, dim=1))
        (train.lambda_ent * loss["ent_trg"]).backward()
        self.remember(image_source=source["image"], seg_source=seg_src, depth_source=depth_src,
                      image_target=target["image"], seg_target=seg_trg, depth_target=depth_trg)
        return self.finish_step(loss, iteration)
