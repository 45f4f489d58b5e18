"""Output-space adversarial adaptation: AdvEnt, AdaptSegNet, DADA and the ablations S3–S6 (Table 3).

They share one step and differ in data: which maps the discriminators see (``method.adversarial``, one
discriminator each), whether the source depth is supervised (``method.depth_supervision``) and whether
the discriminator's loss is halved (``method.halve_d_loss``, ADVENT's ``train_advent`` and AdaptSegNet).
The discriminator inputs (:data:`DISCRIMINATOR_INPUTS`):

* ``self_information``: AdvEnt's weighted self-information I(P) (eq. 5), C channels;
* ``depth``: the predicted inverse depth, 1 channel (Table 3's "depth adaptation", S4–S6);
* ``depth_aware``: DADA's depth-aware map I(P) ⊙ inverse depth, the input of eq. (6)–(7), C channels;
* ``softmax``: the class probabilities P (AdaptSegNet's output-space adaptation), C channels.

The step (``DADA:dada/domain_adaptation/train_UDA.py::train_dada``, reference §2.8) is written out in
:meth:`Adversarial.train_step` in the paper's order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from dada import losses
from dada.methods.base import Method, forward_upsampled
from dada.models import Segmenter, build_discriminator


def _softmax(seg: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    return torch.softmax(seg, dim=1)


def _self_information(seg: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    return losses.self_information(torch.softmax(seg, dim=1))  # eq. (5)


def _depth(seg: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    return depth


def _depth_aware(seg: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    return losses.depth_aware_map(_self_information(seg, depth), depth)  # I(P) ⊙ Z


#: discriminator input name → (map from upsampled logits and inverse depth, channels given C)
DISCRIMINATOR_INPUTS: dict[str, tuple[Callable, Callable[[int], int]]] = {
    "self_information": (_self_information, lambda c: c),
    "depth": (_depth, lambda c: 1),
    "depth_aware": (_depth_aware, lambda c: c),
    "softmax": (_softmax, lambda c: c),
}


def discriminator_input(kind: str, seg: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    """The map discriminator ``kind`` sees, from N×C×H×W logits and N×1×H×W inverse depth."""
    return DISCRIMINATOR_INPUTS[kind][0](seg, depth)


class Adversarial(Method):
    """One discriminator per entry of ``method.adversarial``, all trained by one Adam (official: lr_d,
    betas (0.9, 0.99), the same poly decay)."""

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        super().__init__(cfg, model, device)
        method, train = cfg.method, cfg.train
        if not method.adversarial:
            raise ValueError(f"method {method.name!r} adapts adversarially but method.adversarial is empty")
        for kind in method.adversarial:
            channels = DISCRIMINATOR_INPUTS[kind][1](cfg.model.num_classes)
            self.discriminators[kind] = build_discriminator(cfg.model.num_classes, in_channels=channels,
                                                            ndf=method.ndf)
        self.discriminators.to(device).train()
        self.extra_modules["discriminators"] = self.discriminators
        self.optimizers["discriminator"] = torch.optim.Adam(self.discriminators.parameters(), lr=train.lr_d,
                                                            betas=tuple(train.betas_d))
        self.base_lrs["discriminator"] = train.lr_d

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        train, method = self.cfg.train, self.cfg.method
        loss: dict[str, torch.Tensor] = {}
        self.start_step(iteration)

        # The segmenter's step, discriminators frozen.
        self.discriminators.requires_grad_(False)
        # Source: eq. (1) segmentation CE + eq. (2)-(3) berHu on the inverse depth = eq. (4).
        seg_src, depth_src = forward_upsampled(self.model, source["image"])
        self.source_objective(source, seg_src, depth_src, loss, method.depth_supervision).backward()
        # Target: eq. (5) self-information I(P), its depth-aware map I(P) ⊙ Z; eq. (7) the fooling term:
        # each discriminator should take the target map for a source one (not detached: the adversarial
        # gradient reaches the depth branch, as in the official code).
        seg_trg, depth_trg = forward_upsampled(self.model, target["image"])
        fooling = 0.0
        for kind, discriminator in self.discriminators.items():
            d_out = discriminator(discriminator_input(kind, seg_trg, depth_trg))
            loss[f"adv_trg_{kind}"] = losses.adversarial_bce(d_out, train.source_label)
            fooling = fooling + train.lambda_adv * loss[f"adv_trg_{kind}"]
        fooling.backward()

        # Eq. (6): the discriminator's objective on detached maps, source labelled source, target target.
        self.discriminators.requires_grad_(True)
        scale = 0.5 if method.halve_d_loss else 1.0
        for kind, discriminator in self.discriminators.items():
            for domain, seg, depth, label in (("src", seg_src, depth_src, train.source_label),
                                              ("trg", seg_trg, depth_trg, train.target_label)):
                d_in = discriminator_input(kind, seg.detach(), None if depth is None else depth.detach())
                loss[f"d_{kind}_{domain}"] = losses.adversarial_bce(discriminator(d_in), label)
                (scale * loss[f"d_{kind}_{domain}"]).backward()

        self.remember(image_source=source["image"], seg_source=seg_src, depth_source=depth_src,
                      image_target=target["image"], seg_target=seg_trg, depth_target=depth_trg)
        return self.finish_step(loss, iteration)  # NaN guard, then SGD step, then Adam step
