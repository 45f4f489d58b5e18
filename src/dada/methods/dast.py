"""Depth-aware self-training (``dast``, this project's method): DACS + DADA's depth head supervised on
the source + depth-ordered ClassMix. It uses depth on the source only (DADA's privileged-information
setting: no target depth).

With ``i`` the iteration, Z the inverse depth (larger = nearer), Ẑ its per-image min-max normalisation
to [0, 1] (DepthMix ``ssda`` train.py L913-917):

1. L_src = CE(S(x_s), y_s) + λ_d·berHu(Z(x_s), z_s)                        (DADA eq. 1-4)
2. teacher on x_t: ŷ_t, q as DACS, and its inverse depth Z_t(x_t)
3. M = M_class ∧ [Ẑ_s ≥ Ẑ_t − m_i] ∧ [Ẑ_s ≥ f], m_i = ±m with a random sign per image, m = 0.03, f = 0
   (DepthMix's occlusion rule, ``ssda`` train.py L749-767 and experiments.py L203, with the source
   ground-truth depth as "own" and the teacher's target depth as "other"): a pasted source pixel is kept
   only where it is nearer than the target's surface there;
4. x_m, y_m, w_m, jitter, blur and L_mix as DACS with this M; one backward of L_src + λ_u·L_mix, the SGD
   step, the EMA.

``depth_mix``: ``ordered`` (the above), ``class`` (plain ClassMix: DACS + depth supervision, the
ladder's middle rung) or ``depth`` (pure DepthMix: M = the occlusion test alone).

``adversarial`` (default empty): DADA's adversarial term on top, the ladder's last rung (preset
``dast_adv``). With ``["depth_aware"]``: 5. the student also sees the un-mixed target, and
L += λ_adv·BCE(D(I(P_t) ⊙ Z_t), source) (DADA eq. 7, in the same backward as L_src + λ_u·L_mix); D learns
eq. (6) on the detached source and target maps (DADA's discriminator, width ``ndf``, Adam ``train.lr_d``),
as :mod:`dada.methods.dada`. Any input of :data:`dada.methods.adversarial.DISCRIMINATOR_INPUTS` may be
listed.

``depth_weighting`` (default off): CorDA's depth-discrepancy weighting of the pseudo-label loss
(Wang et al., ICCV 2021; ``qinenergy/corda`` ``trainUDA_synthia.py``), without target depth. With
z_m = M·z_s + (1 − M)·Z_t(x_t) the depth the mixed image should have (the source's ground truth where
pasted, the teacher's target depth elsewhere; the photometric augmentations move no pixel) and
Z(x_m) the student's depth on the mixed image:

6. w = clip(relu(1 − |Z(x_m) − z_m| / z_m) + 1e-3, 0, 1) (1 where z_m is not a valid depth), and the
   pseudo-label loss's weight map becomes w_m · w / mean(w), detached.

CorDA computes the same expression between two depth heads of the student on the mixed image, one
trained on the source's depth and one on the target's (self-supervised stereo or video depth, which
DADA's setting does not have); here the reference is the mix of the source's ground truth and the
teacher's target depth, so the weight drops where the student's depth disagrees with what the mix
should look like. ``lambda_depth_mix`` (default 0; CorDA's 0.001) adds λ·berHu(Z(x_m), z_m), CorDA's
depth loss on the mixed image (``L_D``), to the objective.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig

from dada import losses
from dada.errors import DadaError
from dada.methods import selftraining as st
from dada.methods.adversarial import DISCRIMINATOR_INPUTS, OutputAdversary
from dada.methods.base import forward_upsampled
from dada.methods.dacs import DACS
from dada.models import Segmenter

DEPTH_MIXES = ("ordered", "class", "depth")


class DepthAwareSelfTraining(DACS):
    """DACS + source depth supervision + depth-ordered ClassMix (module docstring)."""

    @dataclass
    class Settings(DACS.Settings):
        name: str = "dast"
        # λ_d of the source berHu; null: train.lambda_depth, DADA's for the setting (CorDA's 0.01,
        # trainUDA_synthia.py L416, is on its own depth encoding)
        lambda_depth: float | None = None
        depth_mix: str = "ordered"  # ordered | class | depth (module docstring)
        depth_margin: float = 0.03  # DepthMix ssda experiments.py L203 ("depthcomp_margin": 0.03)
        margin_random_sign: bool = True  # ssda train.py L723, L755-756: m ← −m when U(0,1) > 0.5
        depth_foreground: float = 0.0  # ssda train.py L724, L767: Ẑ_s ≥ f
        # DADA's adversarial term on top (module docstring): discriminator inputs, e.g. [depth_aware]
        adversarial: list[str] = field(default_factory=list)
        ndf: int = 64  # the discriminators' width (DADA's, get_fc_discriminator)
        # CorDA's depth-discrepancy weighting of the pseudo-label loss, without target depth (docstring)
        depth_weighting: bool = False
        depth_weight_floor: float = 1e-3  # CorDA: relu(1 − diff / depth) + 1e-3
        lambda_depth_mix: float = 0.0  # CorDA: 0.001 · berHu on the mixed image (L_D)

    @classmethod
    def check_settings(cls, cfg: DictConfig) -> None:
        super().check_settings(cfg)
        if cfg.method.lambda_depth_mix < 0 or not 0 <= cfg.method.depth_weight_floor <= 1:
            raise DadaError(f"method.lambda_depth_mix must be ≥ 0 and method.depth_weight_floor in [0, 1]; "
                            f"got {cfg.method.lambda_depth_mix} and {cfg.method.depth_weight_floor}")
        kinds = list(cfg.method.adversarial)
        unknown = [k for k in kinds if k not in DISCRIMINATOR_INPUTS]
        if unknown or len(set(kinds)) != len(kinds):
            raise DadaError(f"method.adversarial: {kinds} must name distinct inputs among "
                            f"{', '.join(DISCRIMINATOR_INPUTS)} (or be empty: no adversarial term)")

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        if cfg.method.depth_mix not in DEPTH_MIXES:
            raise DadaError(f"method.depth_mix must be one of {', '.join(DEPTH_MIXES)}, got "
                            f"{cfg.method.depth_mix!r}")
        if not cfg.model.depth_head:
            raise DadaError("method dast needs the depth head: set model.depth_head=true")
        super().__init__(cfg, model, device)
        self.removed = float("nan")  # the fraction of ClassMix pixels the occlusion test removed
        self.depth_weight = float("nan")  # the mean CorDA depth weight of the last step (before normalising)
        kinds = list(cfg.method.adversarial)
        self.adversary = OutputAdversary(self, kinds, ndf=cfg.method.ndf) if kinds else None
        self.target_maps: dict[str, torch.Tensor] = {}

    @classmethod
    def needs_source_depth(cls, settings) -> bool:
        return True  # the source berHu (privileged depth on the source only, as DADA)

    def source_terms(self, source, seg, depth, loss):
        """L_src = CE + λ_d·berHu(Z(x_s), z_s)."""
        if depth is None:
            raise DadaError("method dast needs the depth head's output: set model.depth_head=true")
        objective = self.source_objective(source, seg, depth, loss, depth_supervision=False)
        lam = self.cfg.method.lambda_depth
        loss["depth_src"] = losses.berhu(depth, source["depth"])
        return objective + (self.cfg.train.lambda_depth if lam is None else lam) * loss["depth_src"]

    def target_terms(self, target, loss):
        """λ_adv·Σ BCE(D(map of the student's target output), source) (DADA eq. 7), when ``adversarial``."""
        if self.adversary is None:
            return 0.0
        self.adversary.freeze(True)
        seg, depth = forward_upsampled(self.model, target["image"])
        self.target_maps = self.adversary.maps(seg, depth, detach=True)
        return self.adversary.fooling(self.adversary.maps(seg, depth), loss, self.cfg.train.lambda_adv)

    def mix(self, source, target):
        """DACS's mix, plus the depth the mixed image should have (z_m), when an option uses it."""
        mixed = super().mix(source, target)
        if self.cfg.method.depth_weighting or self.cfg.method.lambda_depth_mix > 0:
            mixed["depth"] = st.one_mix(mixed["mask"], source["depth"], mixed["teacher_depth"])
        return mixed

    def mix_weight(self, mixed, depth):
        """w_m, or w_m · w / mean(w) with CorDA's depth weight w (docstring, 6)."""
        if not self.cfg.method.depth_weighting:
            return mixed["weight"]
        weight = st.depth_discrepancy_weight(depth, mixed["depth"], self.cfg.method.depth_weight_floor)
        mean = weight.mean()
        self.depth_weight = float(mean)
        return mixed["weight"] * weight[:, 0] / mean

    def mix_terms(self, mixed, seg, depth, loss):
        """λ·berHu(Z(x_m), z_m), CorDA's depth loss on the mixed image, when ``lambda_depth_mix`` > 0."""
        lam = self.cfg.method.lambda_depth_mix
        if lam <= 0:
            return 0.0
        loss["depth_mix"] = losses.berhu(depth, mixed["depth"].detach())
        return lam * loss["depth_mix"]

    def after_backward(self, seg_src, depth_src, loss):
        """The discriminators' eq. (6) on the detached source and target maps."""
        if self.adversary is not None:
            self.adversary.train_discriminators(
                {"src": self.adversary.maps(seg_src, depth_src, detach=True), "trg": self.target_maps}, loss)

    def mix_masks(self, source, target, teacher_depth):
        """M_class ∧ the occlusion test (or either alone, ``depth_mix``)."""
        method = self.cfg.method
        classes = super().mix_masks(source, target, teacher_depth)
        if method.depth_mix == "class":
            return classes
        margins = []
        for _ in range(source["depth"].shape[0]):
            flip = method.margin_random_sign and self.streams.uniform("margin") > 0.5
            margins.append(-method.depth_margin if flip else method.depth_margin)
        margin = torch.tensor(margins, device=teacher_depth.device).view(-1, 1, 1, 1)
        front = st.depth_order_mask(st.normalise_depth(source["depth"]), st.normalise_depth(teacher_depth),
                                    margin, method.depth_foreground)
        if method.depth_mix == "depth":
            return front
        mask = classes & front
        self.removed = float((classes & ~front).sum() / classes.sum().clamp_min(1))
        return mask

    def log_scalars(self) -> dict[str, float]:
        scalars = {**super().log_scalars(), "mix_removed_by_depth": self.removed}
        if self.cfg.method.depth_weighting:
            scalars["mix_depth_weight"] = self.depth_weight
        return scalars
