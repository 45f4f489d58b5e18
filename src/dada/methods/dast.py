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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from dada import losses
from dada.errors import DadaError
from dada.methods import selftraining as st
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

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        if cfg.method.depth_mix not in DEPTH_MIXES:
            raise DadaError(f"method.depth_mix must be one of {', '.join(DEPTH_MIXES)}, got "
                            f"{cfg.method.depth_mix!r}")
        if not cfg.model.depth_head:
            raise DadaError("method dast needs the depth head: set model.depth_head=true")
        super().__init__(cfg, model, device)
        self.removed = float("nan")  # the fraction of ClassMix pixels the occlusion test removed

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
        return {**super().log_scalars(), "mix_removed_by_depth": self.removed}
