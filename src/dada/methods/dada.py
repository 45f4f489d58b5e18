"""DADA (Vu et al., ICCV 2019): depth-aware adversarial adaptation, Table 3's S7.

The segmenter predicts segmentation logits S and inverse depth Z (an auxiliary depth block whose
features are fused back into the segmentation stream, :mod:`dada.models.segmenter`). One iteration of
the official ``train_dada`` (reference §2.8), in the paper's terms:

* eq. (1)  L_seg = CE(S_s, Y_s) on the source;
* eq. (2)–(3)  L_dep = berHu(Z_s, D_s) on the source's inverse depth;
* eq. (4)  the source objective λ_seg·L_seg + λ_dep·L_dep, backpropagated;
* eq. (5)  the target's self-information I(P_t) = −P_t ⊙ log P_t, weighted by its depth: I(P_t) ⊙ Z_t
  (the depth-aware map, *not* detached: the adversarial gradient reaches the depth branch);
* eq. (7)  the fooling term λ_adv·BCE(D(I(P_t) ⊙ Z_t), source), backpropagated into the segmenter with
  the discriminator frozen;
* eq. (6)  the discriminator's objective BCE(D(I(P_s) ⊙ Z_s), source) + BCE(D(I(P_t) ⊙ Z_t), target) on
  detached maps, each term backpropagated on its own, not halved;
* then one SGD step of the segmenter (the official optimizer with its repeats) and one Adam step of D.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from omegaconf import DictConfig

from dada import losses
from dada.errors import DadaError
from dada.methods.adversarial import Adversarial, AdversarialSettings, OutputAdversary
from dada.methods.base import forward_upsampled
from dada.models import Segmenter


@dataclass
class DADASettings(AdversarialSettings):
    name: str = "dada"
    adversarial: list[str] = field(default_factory=lambda: ["depth_aware"])  # one D on I(P) ⊙ Z
    depth_supervision: bool = True  # eq. (4): λ_dep·berHu on the source depth


class DADA(Adversarial):
    """S7: one discriminator on the depth-aware map, depth supervision and feature fusion."""

    Settings: ClassVar[type] = DADASettings

    @classmethod
    def check_settings(cls, cfg: DictConfig) -> None:
        super().check_settings(cfg)
        if list(cfg.method.adversarial) != ["depth_aware"]:
            raise DadaError(f"method dada adapts on the depth-aware map alone (method.adversarial="
                            f"[depth_aware]), got {list(cfg.method.adversarial)}; Table 3's other set-ups "
                            f"are the presets s3-s6")

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        super(Adversarial, self).__init__(cfg, model, device)
        self.adversary = OutputAdversary(self, ["depth_aware"], ndf=cfg.method.ndf,
                                         scale=0.5 if cfg.method.halve_d_loss else 1.0)

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        train, method = self.cfg.train, self.cfg.method
        loss: dict[str, torch.Tensor] = {}
        self.start_step(iteration)  # zero the gradients, poly learning rates
        self.adversary.freeze(True)

        # eq. (1)-(4) on the source: λ_seg·CE(S_s, Y_s) + λ_dep·berHu(Z_s, D_s)
        seg_s, depth_s = forward_upsampled(self.model, source["image"])
        self.source_objective(source, seg_s, depth_s, loss, method.depth_supervision).backward()

        # eq. (5) and (7) on the target: fool D with I(P_t) ⊙ Z_t, gradients into the depth branch too
        seg_t, depth_t = forward_upsampled(self.model, target["image"])
        dada_t = losses.depth_aware_map(losses.self_information(torch.softmax(seg_t, dim=1)), depth_t)
        self.adversary.fooling({"depth_aware": dada_t}, loss, train.lambda_adv).backward()

        # eq. (6): D learns source maps as source, target maps as target (detached)
        dada_s = losses.depth_aware_map(losses.self_information(torch.softmax(seg_s.detach(), dim=1)),
                                        depth_s.detach())
        self.adversary.train_discriminators({"src": {"depth_aware": dada_s},
                                             "trg": {"depth_aware": dada_t.detach()}}, loss)

        self.remember(image_source=source["image"], seg_source=seg_s, depth_source=depth_s,
                      image_target=target["image"], seg_target=seg_t, depth_target=depth_t)
        return self.finish_step(loss, iteration)  # NaN guard, SGD step, Adam step
