"""What every training method provides to the engine, and the pieces methods share.

A method owns its settings (``Settings``, a dataclass of the keys under ``method.*``: the config types
``cfg.method`` from the chosen method's class), what it trains besides the segmenter (``extra_modules``:
discriminators, a second classifier, a generator, a teacher), all its optimizers (the segmenter's SGD
included, built by :mod:`dada.optim`), one ``train_step`` in its paper's order, and its state for
checkpoints. The engine (:mod:`dada.engine`) asks it what it needs — source depth
(:meth:`Method.needs_source_depth`), the target batch (``needs_target``), which network to evaluate
(:meth:`Method.evaluation_network`), what to log (:meth:`Method.log_images`, :meth:`Method.log_scalars`)
— and knows nothing else about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from dada import losses
from dada.errors import DadaError
from dada.models import Segmenter, upsample
from dada.optim import build_segmenter_sgd


def forward_upsampled(model: Segmenter, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Segmentation logits and inverse depth (None without a depth head), upsampled to the input size
    (bilinear, ``align_corners=True``, as the official code before every loss)."""
    out = model(image)
    size = image.shape[-2:]
    return upsample(out.seg, size), None if out.depth is None else upsample(out.depth, size)


def poly_lr(base: float, iteration: int, max_iters: int, power: float) -> float:
    """The official poly schedule: ``base · (1 − iteration / max_iters) ** power``."""
    return base * (1.0 - iteration / max_iters) ** power


@dataclass
class MethodSettings:
    """The keys every method has; a method's ``Settings`` subclasses it with its own keys (each with a
    comment citing where its default comes from)."""

    name: str = "dada"


@dataclass
class SourceSettings(MethodSettings):
    """A method that may supervise the source depth (eq. 4)."""

    depth_supervision: bool = False  # λ_dep·berHu (eq. 2-3) on the source depth (needs model.depth_head)


class Method:
    """Base class: builds the segmenter's SGD (``optimizers["segmenter"]``), keeps the learning rates on
    the poly schedule, guards against non-finite losses and saves/loads the state.

    Subclasses set ``needs_target``, add their modules to ``extra_modules`` and their optimizers to
    ``optimizers`` (with the base learning rate in ``base_lrs``), and implement :meth:`train_step`. A
    subclass may define ``prepare(datasets, run_dir)``; the engine calls it once before the first
    iteration.
    """

    needs_target: ClassVar[bool] = True
    #: the keys under ``method.*`` (``cfg.method`` is typed from it; unknown keys are errors)
    Settings: ClassVar[type] = MethodSettings
    #: the model learns from the target's own labels (the oracle): reports label it so
    target_trained: ClassVar[bool] = False

    # ----------------------------------------------------------------- what the engine asks a method
    @classmethod
    def needs_source_depth(cls, settings: DictConfig) -> bool:
        """Whether the source batches must carry depth (privileged information: reports say so)."""
        return bool(settings.get("depth_supervision", False))

    @classmethod
    def check_settings(cls, cfg: DictConfig) -> None:
        """Checks across keys that types cannot express (raise DadaError naming the key)."""
        if cfg.method.get("depth_supervision") and not cfg.model.depth_head:
            raise DadaError("method.depth_supervision=true trains the depth branch "
                            "but model.depth_head=false: "
                            "set model.depth_head=true")

    def evaluation_network(self) -> nn.Module:
        """The network periodic evaluation and the final selection evaluate (the segmenter)."""
        return self.model

    def log_images(self) -> dict[str, np.ndarray]:
        """Extra TensorBoard images of the last step (tag → H×W or H×W×3 array in [0, 1]); kept outputs
        are in ``last_outputs`` when the engine asked for them."""
        return {}

    def source_order(self):
        """None (the engine's seeded permutation of the source each epoch), or ``epoch → source indices``
        (a function of the epoch alone, so that a resumed run draws the same items): rare-class sampling."""
        return None

    def log_scalars(self) -> dict[str, float]:
        """Extra scalars of the last step for ``metrics.jsonl`` and TensorBoard (besides the losses)."""
        return {}

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        self.cfg, self.model, self.device = cfg, model, device
        train = cfg.train
        self.extra_modules = nn.ModuleDict()
        #: the discriminators among extra_modules (``Trainer.discriminator``); empty for most methods
        self.discriminators = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "segmenter": build_segmenter_sgd(model, train.lr, train.momentum, train.weight_decay, train.sgd)}
        #: optimizer name → base learning rate; a group's lr is base · group["lr_mult"] · poly decay
        self.base_lrs: dict[str, float] = {"segmenter": train.lr}
        #: when set by the engine, train_step keeps its inputs and outputs in ``last_outputs`` (images)
        self.keep_outputs = False
        self.last_outputs: dict[str, torch.Tensor | None] = {}

    # ------------------------------------------------------------------------------------- the step
    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        """One iteration; batches are dicts of tensors on the device. Returns the detached losses."""
        raise NotImplementedError(f"{type(self).__name__} must define train_step")

    def start_step(self, iteration: int) -> None:
        """Zero every gradient and set the poly learning rates of ``iteration``."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()
        train = self.cfg.train
        for name, optimizer in self.optimizers.items():
            rate = poly_lr(self.base_lrs[name], iteration, train.max_iters, train.poly_power)
            for group in optimizer.param_groups:
                group["lr"] = rate * group.get("lr_mult", 1.0)

    def finish_step(self, loss: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        """The NaN guard, then every optimizer steps once (in ``optimizers`` order)."""
        detached = self.check_finite(loss, iteration)
        for optimizer in self.optimizers.values():
            optimizer.step()
        return detached

    def check_finite(self, loss: dict[str, torch.Tensor], iteration: int) -> dict[str, torch.Tensor]:
        """Raise DadaError if a loss is NaN or infinite; called before any optimizer step, so the weights
        and the last checkpoint stay good. Returns the losses detached, on the CPU."""
        values = torch.stack([value.detach().float() for value in loss.values()]).cpu()
        if not torch.isfinite(values).all():
            bad = {name: v for name, v in zip(loss, values.tolist(), strict=True) if not math.isfinite(v)}
            raise DadaError(f"iteration {iteration}: non-finite loss {bad}; stopped before updating the "
                            f"weights (the last checkpoint is intact). Try a lower train.lr or check the "
                            f"data")
        return dict(zip(loss, values.unbind(), strict=True))

    def source_objective(self, source: dict, seg: torch.Tensor, depth: torch.Tensor | None,
                         loss: dict[str, torch.Tensor], depth_supervision: bool = False) -> torch.Tensor:
        """Eq. (4): λ_seg·L_seg (eq. 1, CE) + λ_dep·L_dep (eq. 2–3, berHu, when ``depth_supervision``),
        recording both terms in ``loss``."""
        train = self.cfg.train
        loss["seg_src"] = losses.seg_ce(seg, source["label"])
        objective = train.lambda_seg * loss["seg_src"]
        if depth_supervision:
            loss["depth_src"] = losses.berhu(depth, source["depth"])
            objective = objective + train.lambda_depth * loss["depth_src"]
        return objective

    def remember(self, **tensors: torch.Tensor | None) -> None:
        """Keep detached inputs/outputs for the logger's images when the engine asked for them."""
        if self.keep_outputs:
            self.last_outputs.update({k: None if v is None else v.detach() for k, v in tensors.items()})

    # -------------------------------------------------------------------------------- rates, state
    def learning_rates(self) -> dict[str, float]:
        rates = {f"seg_group{k}": g["lr"] for k, g in enumerate(self.optimizers["segmenter"].param_groups)}
        for name, optimizer in self.optimizers.items():
            if name != "segmenter":
                rates[name] = optimizer.param_groups[0]["lr"]
        return rates

    def state_dict(self) -> dict[str, Any]:
        return {"extra_modules": self.extra_modules.state_dict(),
                "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.extra_modules.load_state_dict(state["extra_modules"])
        missing = set(self.optimizers) - set(state["optimizers"])
        if missing:
            raise DadaError(f"the checkpoint has no state for the optimizer(s) {sorted(missing)} of this "
                            f"method; resume with the method it was trained with")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])

    def prepare(self, datasets: dict, run_dir: Path) -> None:
        """Called once by the engine before the first iteration (nothing to do by default)."""
