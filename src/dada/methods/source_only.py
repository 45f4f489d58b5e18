"""Source only (Table 3's S1): the segmenter trained on the labelled source alone, no adaptation."""

from __future__ import annotations

from typing import ClassVar

import torch

from dada.methods.base import Method, SourceSettings, forward_upsampled


class SourceOnly(Method):
    """Eq. (4) on the source batch: segmentation CE, plus the berHu depth loss when
    ``method.depth_supervision`` is set. The target batch is not used."""

    needs_target: ClassVar[bool] = False
    Settings: ClassVar[type] = SourceSettings

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        self.start_step(iteration)
        loss: dict[str, torch.Tensor] = {}
        seg, depth = forward_upsampled(self.model, source["image"])
        self.source_objective(source, seg, depth, loss, self.cfg.method.depth_supervision).backward()
        self.remember(image_source=source["image"], seg_source=seg, depth_source=depth)
        return self.finish_step(loss, iteration)


class Oracle(SourceOnly):
    """The target-trained oracle: source only on the target's own labelled train split (the ``oracle``
    preset points ``data.source`` at the target); reports label it as target-trained."""

    target_trained: ClassVar[bool] = True
