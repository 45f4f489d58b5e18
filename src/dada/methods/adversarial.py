"""Output-space adversarial adaptation: the shared adversary, and AdvEnt, AdaptSegNet and the ablations
S3–S6 (Table 3). DADA (S7) is :mod:`dada.methods.dada`.

:class:`OutputAdversary` is "an output-space adversary": one discriminator per input kind, all trained by
one Adam (official: ``lr_d``, betas (0.9, 0.99), the poly decay), the fooling term (eq. 7) and the
discriminator's objective on detached maps (eq. 6). The discriminator inputs (:data:`DISCRIMINATOR_INPUTS`):

* ``self_information``: AdvEnt's weighted self-information I(P) (eq. 5), C channels;
* ``depth``: the predicted inverse depth, 1 channel (Table 3's "depth adaptation", S4–S6);
* ``depth_aware``: DADA's depth-aware map I(P) ⊙ inverse depth, the input of eq. (6)–(7), C channels;
* ``softmax``: the class probabilities P (AdaptSegNet's output-space adaptation), C channels.

:class:`Adversarial` is the family's step (ADVENT's ``train_advent``; DADA's ``train_dada`` with other
inputs): the settings say which maps the discriminators see (``method.adversarial``), whether the source
depth is supervised (``method.depth_supervision``) and whether the discriminator's loss is halved
(``method.halve_d_loss``, ADVENT's ``train_advent`` and AdaptSegNet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from omegaconf import DictConfig

from dada import losses
from dada.errors import DadaError
from dada.methods.base import Method, SourceSettings, forward_upsampled
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
#: inputs that read the predicted depth
DEPTH_INPUTS = frozenset({"depth", "depth_aware"})


def discriminator_input(kind: str, seg: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    """The map discriminator ``kind`` sees, from N×C×H×W logits and N×1×H×W inverse depth."""
    return DISCRIMINATOR_INPUTS[kind][0](seg, depth)


class OutputAdversary:
    """Discriminators on output-space maps, owned by ``method``: they go into its ``discriminators`` and
    ``extra_modules``, their Adam into its ``optimizers["discriminator"]`` (so the poly schedule, the NaN
    guard and checkpoints cover them).

    ``channels`` overrides a kind's input channels and ``build`` the network (AdaptPatch's patch
    discriminator); ``scale`` multiplies each discriminator term (0.5: ADVENT's ``train_advent``)."""

    def __init__(self, method: Method, kinds: Iterable[str], *, ndf: int, scale: float = 1.0,
                 build: Callable[[str], torch.nn.Module] | None = None):
        cfg, train = method.cfg, method.cfg.train
        self.cfg, self.scale = cfg, scale
        self.kinds = list(kinds)
        num_classes = cfg.model.num_classes
        for kind in self.kinds:
            if build is not None:
                module = build(kind)
            else:
                module = build_discriminator(num_classes,
                                             in_channels=DISCRIMINATOR_INPUTS[kind][1](num_classes),
                                             ndf=ndf)
            method.discriminators[kind] = module.to(method.device).train()
        method.extra_modules["discriminators"] = method.discriminators
        self.discriminators = method.discriminators
        method.optimizers["discriminator"] = torch.optim.Adam(method.discriminators.parameters(),
                                                              lr=train.lr_d,
                                                              betas=tuple(train.betas_d))
        method.base_lrs["discriminator"] = train.lr_d

    def freeze(self, frozen: bool) -> None:
        """The segmenter's step does not accumulate gradients in the discriminators (official toggle)."""
        self.discriminators.requires_grad_(not frozen)

    def fooling(self, maps: dict[str, torch.Tensor], loss: dict[str, torch.Tensor],
                weight: float) -> torch.Tensor:
        """Eq. (7): each discriminator should take the target map for a source one; returns
        ``weight · Σ BCE(D(map), source_label)`` and records each term as ``adv_trg_<kind>``."""
        total = 0.0
        for kind, d_in in maps.items():
            loss[f"adv_trg_{kind}"] = losses.adversarial_bce(self.discriminators[kind](d_in),
                                                              self.cfg.train.source_label)
            total = total + weight * loss[f"adv_trg_{kind}"]
        return total

    def train_discriminators(self, maps: dict[str, dict[str, torch.Tensor]],
                             loss: dict[str, torch.Tensor]) -> None:
        """Eq. (6) on detached maps (``maps[domain][kind]``, domains ``src`` and ``trg``): each term
        backpropagated on its own (the official order: per discriminator, source then target)."""
        train = self.cfg.train
        labels = {"src": train.source_label, "trg": train.target_label}
        self.freeze(False)
        for kind in self.kinds:
            for domain in ("src", "trg"):
                if kind not in maps.get(domain, {}):
                    continue
                d_out = self.discriminators[kind](maps[domain][kind].detach())
                loss[f"d_{kind}_{domain}"] = losses.adversarial_bce(d_out, labels[domain])
                (self.scale * loss[f"d_{kind}_{domain}"]).backward()

    def maps(self, seg: torch.Tensor, depth: torch.Tensor | None, *, detach: bool = False) -> dict:
        if detach:
            seg, depth = seg.detach(), None if depth is None else depth.detach()
        return {kind: discriminator_input(kind, seg, depth) for kind in self.kinds}


@dataclass
class AdversarialSettings(SourceSettings):
    """AdvEnt (S2), AdaptSegNet and Table 3's S3–S6."""

    name: str = "advent"
    # one discriminator per entry: self_information | depth | depth_aware | softmax
    adversarial: list[str] = field(default_factory=lambda: ["self_information"])
    halve_d_loss: bool = False  # ADVENT's train_advent divides each discriminator term by 2
    ndf: int = 64  # discriminator width (ADVENT get_fc_discriminator)


class Adversarial(Method):
    """One output-space adversary with a discriminator per ``method.adversarial`` entry."""

    Settings: ClassVar[type] = AdversarialSettings

    @classmethod
    def check_settings(cls, cfg: DictConfig) -> None:
        super().check_settings(cfg)
        kinds = list(cfg.method.adversarial)
        for kind in kinds:
            if kind not in DISCRIMINATOR_INPUTS:
                raise DadaError(f"method.adversarial: unknown input {kind!r}; use any of "
                                f"{', '.join(DISCRIMINATOR_INPUTS)}")
        if len(set(kinds)) != len(kinds):
            raise DadaError(f"method.adversarial lists an input twice: {kinds}")
        if not kinds:
            raise DadaError(f"method {cfg.method.name!r} adapts adversarially "
                            f"but method.adversarial is empty")
        if DEPTH_INPUTS & set(kinds) and not cfg.model.depth_head:
            raise DadaError("a depth discriminator (method.adversarial) reads the depth branch but "
                            "model.depth_head=false: set model.depth_head=true")

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        super().__init__(cfg, model, device)
        method = cfg.method
        self.adversary = OutputAdversary(self, method.adversarial, ndf=method.ndf,
                                         scale=0.5 if method.halve_d_loss else 1.0)

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        train, method = self.cfg.train, self.cfg.method
        loss: dict[str, torch.Tensor] = {}
        self.start_step(iteration)
        self.adversary.freeze(True)
        # Source: eq. (1) CE (+ eq. (2)-(3) berHu when the depth is supervised) = eq. (4).
        seg_src, depth_src = forward_upsampled(self.model, source["image"])
        self.source_objective(source, seg_src, depth_src, loss, method.depth_supervision).backward()
        # Target: eq. (7), the fooling term on each discriminator's map (not detached).
        seg_trg, depth_trg = forward_upsampled(self.model, target["image"])
        self.adversary.fooling(self.adversary.maps(seg_trg, depth_trg), loss, train.lambda_adv).backward()
        # Eq. (6): the discriminators on detached maps.
        self.adversary.train_discriminators({"src": self.adversary.maps(seg_src, depth_src, detach=True),
                                             "trg": self.adversary.maps(seg_trg, depth_trg, detach=True)},
                                            loss)
        self.remember(image_source=source["image"], seg_source=seg_src, depth_source=depth_src,
                      image_target=target["image"], seg_target=seg_trg, depth_target=depth_trg)
        return self.finish_step(loss, iteration)  # NaN guard, then SGD step, then Adam step

    def log_images(self) -> dict[str, np.ndarray]:
        """The target's self-information map (eq. 5) and, with a depth branch, DADA's depth-aware map,
        each summed over the classes."""
        seg, depth = self.last_outputs.get("seg_target"), self.last_outputs.get("depth_target")
        if seg is None:
            return {}
        surprisal = losses.self_information(torch.softmax(seg[:1].float(), 1))
        images = {"target/self_information": gray(surprisal.sum(1)[0])}
        if depth is not None:
            images["target/depth_aware"] = gray(
                losses.depth_aware_map(surprisal, depth[:1].float()).sum(1)[0])
        return images


def gray(values: torch.Tensor) -> np.ndarray:
    """A map scaled to [0, 1] for display (min–max per image)."""
    array = values.detach().float().cpu().numpy()
    low, high = np.nanmin(array), np.nanmax(array)
    return (array - low) / (high - low) if high > low else np.zeros_like(array)
