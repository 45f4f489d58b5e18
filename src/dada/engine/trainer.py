"""The training loop: one ``train_step`` for every method, in the official order, and a resumable ``fit``.

The step (``DADA:dada/domain_adaptation/train_UDA.py::train_dada``, reference §2.8):

1. zero both optimizers' gradients, set the poly learning rates for iteration i, freeze the discriminators;
2. source: forward, upsample (bilinear, align_corners=True) to the input size,
   λ_seg·L_seg (eq. 1, CE) + λ_dep·L_dep (eq. 2, berHu), backward;
3. target: forward, upsample, λ_adv·L_adv: BCE(D(input), source label) for each discriminator (eq. 5
   AdvEnt / eq. 6 DADA), plus λ_ent·entropy for MinEnt, backward (gradients add to the source ones);
4. unfreeze the discriminators; for each: BCE(D(detached source input), source label), backward, then
   BCE(D(detached target input), target label), backward;
5. SGD step, then Adam step.

Which maps the discriminators see is the method's only difference (``dada.engine.methods``).
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from dada import losses
from dada.config import save_config, to_dict
from dada.devices import resolve_device
from dada.engine import checkpoint as ckpt
from dada.engine.data import build_part, infinite_loader
from dada.engine.methods import discriminator_input, input_channels
from dada.errors import DadaError
from dada.io import write_json
from dada.models import upsample

MODEL_SPEC_KEYS = ("arch", "num_classes", "depth_head", "feature_fusion", "bn_mode", "depth_widths")
#: Keys that may differ between a run and its resumption (they do not change the result).
RUNTIME_KEYS = {("train", "device"), ("train", "progress"), ("data", "num_workers"), ("output", "root"),
                ("output", "name"), ("eval", "max_images")}


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # the call imports torch._dynamo
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic  # official: benchmark on, not bit-deterministic


def default_run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.output.root) / (cfg.output.name or cfg.preset or "run")


class Trainer:
    """Builds the segmenter, the discriminator(s) and both optimizers from ``cfg``; datasets are opened
    only by :meth:`fit`."""

    def __init__(self, cfg: DictConfig):
        from dada.models import build_discriminator, build_segmenter, load_pretrained

        self.cfg = cfg
        self.device = resolve_device(cfg.train.device, "train.device")
        seed_everything(cfg.seed, cfg.train.deterministic)
        self.model_spec = {key: cfg.model[key] for key in MODEL_SPEC_KEYS}
        try:
            self.model = build_segmenter(**self.model_spec)
        except ValueError as error:  # an unknown arch, bn_mode or depth_widths
            raise DadaError(f"model: {error}") from None
        if cfg.model.pretrained:  # ImageNet (or torchvision) backbone; head and depth block stay random
            self.pretrained = load_pretrained(self.model, cfg.model.pretrained, cfg.model.pretrained_kind)
        self.model.to(self.device).train()
        num_classes = cfg.model.num_classes
        self.discriminators = nn.ModuleDict({
            kind: build_discriminator(num_classes, in_channels=input_channels(kind, num_classes),
                                      ndf=cfg.method.ndf)
            for kind in cfg.method.adversarial}).to(self.device).train()
        train = cfg.train
        self.optimizer = torch.optim.SGD(self.model.param_groups(train.lr), lr=train.lr,
                                         momentum=train.momentum, weight_decay=train.weight_decay)
        self._lr_multipliers = [group["lr"] / train.lr for group in self.optimizer.param_groups]
        self.optimizer_d = (torch.optim.Adam(self.discriminators.parameters(), lr=train.lr_d,
                                             betas=tuple(train.betas_d)) if self.discriminators else None)
        self.adapts_target = bool(cfg.method.adversarial) or cfg.method.entropy_minimization
        self.iteration = 0
        self.consumed = {"source": 0, "target": 0}
        self.selection: dict[str, Any] = {"policy": cfg.eval.selection, "iteration": None, "miou": None}
        self.keep_outputs = False
        self.last_outputs: dict[str, torch.Tensor] = {}

    @property
    def discriminator(self) -> nn.Module | None:
        """The discriminator (the ModuleDict of them when a method has two, None for S1/MinEnt)."""
        if len(self.discriminators) == 1:
            return next(iter(self.discriminators.values()))
        return self.discriminators if len(self.discriminators) else None

    # --------------------------------------------------------------------------------------- the step
    def learning_rates(self) -> dict[str, float]:
        rates = {f"seg_group{k}": g["lr"] for k, g in enumerate(self.optimizer.param_groups)}
        if self.optimizer_d is not None:
            rates["discriminator"] = self.optimizer_d.param_groups[0]["lr"]
        return rates

    def _set_poly_lr(self, iteration: int) -> None:
        train = self.cfg.train
        decay = (1.0 - iteration / train.max_iters) ** train.poly_power
        for group, multiplier in zip(self.optimizer.param_groups, self._lr_multipliers, strict=True):
            group["lr"] = train.lr * multiplier * decay
        if self.optimizer_d is not None:
            self.optimizer_d.param_groups[0]["lr"] = train.lr_d * decay

    def _forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Segmentation logits and inverse depth, upsampled to the input size (official: align_corners)."""
        out = self.model(image)
        size = image.shape[-2:]
        return upsample(out.seg, size), None if out.depth is None else upsample(out.depth, size)

    def train_step(self, source_batch: dict, target_batch: dict) -> dict[str, float]:
        """One iteration at ``self.iteration`` (both optimizers step once); returns the losses."""
        train, method = self.cfg.train, self.cfg.method
        source = {k: v.to(self.device, non_blocking=True) for k, v in source_batch.items()
                  if isinstance(v, torch.Tensor)}
        target = {k: v.to(self.device, non_blocking=True) for k, v in target_batch.items()
                  if isinstance(v, torch.Tensor)}
        loss: dict[str, torch.Tensor] = {}

        # 1. zero gradients, poly LR, discriminators frozen
        self.optimizer.zero_grad()
        if self.optimizer_d is not None:
            self.optimizer_d.zero_grad()
        self._set_poly_lr(self.iteration)
        self.discriminators.requires_grad_(False)

        # 2. source: supervised segmentation (eq. 1) and depth regression (eq. 2)
        seg_src, depth_src = self._forward(source["image"])
        loss["seg_src"] = losses.seg_ce(seg_src, source["label"])
        source_objective = train.lambda_seg * loss["seg_src"]
        if method.depth_supervision:
            loss["depth_src"] = losses.berhu(depth_src, source["depth"])
            source_objective = source_objective + train.lambda_depth * loss["depth_src"]
        source_objective.backward()

        # 3. target: fool each discriminator (target maps labelled as source), or minimise entropy
        seg_trg = depth_trg = None
        if self.adapts_target:
            seg_trg, depth_trg = self._forward(target["image"])
            target_objective = 0.0
            for kind, discriminator in self.discriminators.items():
                d_out = discriminator(discriminator_input(kind, seg_trg, depth_trg))
                loss[f"adv_trg_{kind}"] = losses.adversarial_bce(d_out, train.source_label)
                target_objective = target_objective + train.lambda_adv * loss[f"adv_trg_{kind}"]
            if method.entropy_minimization:
                loss["ent_trg"] = losses.entropy(torch.softmax(seg_trg, dim=1))
                target_objective = target_objective + train.lambda_ent * loss["ent_trg"]
            target_objective.backward()

        # 4. discriminators on detached maps: source labelled source, target labelled target
        self.discriminators.requires_grad_(True)
        scale = 0.5 if method.halve_d_loss else 1.0
        for kind, discriminator in self.discriminators.items():
            for domain, seg, depth, label in (("src", seg_src, depth_src, train.source_label),
                                              ("trg", seg_trg, depth_trg, train.target_label)):
                d_in = discriminator_input(kind, seg.detach(), None if depth is None else depth.detach())
                loss[f"d_{kind}_{domain}"] = losses.adversarial_bce(discriminator(d_in), label)
                (scale * loss[f"d_{kind}_{domain}"]).backward()

        # the NaN guard runs before any weight changes, so the last checkpoint stays good
        values = torch.stack([value.detach().float() for value in loss.values()]).cpu()
        if not torch.isfinite(values).all():
            bad = {name: v for name, v in zip(loss, values.tolist(), strict=True) if not math.isfinite(v)}
            raise DadaError(f"iteration {self.iteration}: non-finite loss {bad}; stopped before updating "
                            f"the weights (the last checkpoint is intact). Try a lower train.lr or check "
                            f"the data")

        # 5. one SGD step, then one Adam step
        self.optimizer.step()
        if self.optimizer_d is not None:
            self.optimizer_d.step()
        if self.keep_outputs:
            self.last_outputs = {"image_source": source["image"], "seg_source": seg_src.detach(),
                                 "depth_source": None if depth_src is None else depth_src.detach()}
            if seg_trg is not None:
                self.last_outputs.update(image_target=target["image"], seg_target=seg_trg.detach(),
                                         depth_target=None if depth_trg is None else depth_trg.detach())
        self.iteration += 1
        return dict(zip(loss, values.tolist(), strict=True))

    # ------------------------------------------------------------------------------------- the state
    def state(self) -> dict[str, Any]:
        optimizers = {"segmenter": self.optimizer.state_dict()}
        if self.optimizer_d is not None:
            optimizers["discriminators"] = self.optimizer_d.state_dict()
        return {"iteration": self.iteration, "config": to_dict(self.cfg), "model_spec": dict(self.model_spec),
                "model": self.model.state_dict(),
                "discriminators": {k: d.state_dict() for k, d in self.discriminators.items()},
                "optimizers": optimizers, "rng": ckpt.rng_state(), "data": dict(self.consumed),
                "selection": dict(self.selection)}

    def load_state(self, checkpoint: dict[str, Any]) -> None:
        saved, current = checkpoint["config"], to_dict(self.cfg)
        differences = [key for key in _diff(saved, current) if tuple(key.split(".")[:2]) not in RUNTIME_KEYS]
        if differences:
            raise DadaError(f"the run folder was trained with a different config ({', '.join(differences)}): "
                            f"resume with the same preset and overrides, or choose another output.name")
        self.model.load_state_dict(checkpoint["model"])
        for kind, discriminator in self.discriminators.items():
            discriminator.load_state_dict(checkpoint["discriminators"][kind])
        self.optimizer.load_state_dict(checkpoint["optimizers"]["segmenter"])
        if self.optimizer_d is not None:
            self.optimizer_d.load_state_dict(checkpoint["optimizers"]["discriminators"])
        self.iteration = int(checkpoint["iteration"])
        self.consumed = {k: int(v) for k, v in checkpoint["data"].items()}
        self.selection = dict(checkpoint["selection"])
        ckpt.set_rng_state(checkpoint["rng"])

    # --------------------------------------------------------------------------------------- the run
    def fit(self, run_dir: str | os.PathLike | None = None, *, datasets: dict | None = None) -> Path:
        """Train to ``train.max_iters`` in ``run_dir`` (default ``output.root/output.name``), resuming from
        its newest checkpoint if it has one; returns the run folder. ``datasets`` may replace the
        ``source`` / ``target`` / ``val`` datasets of the config."""
        from dada.engine.logging import TrainLogger

        cfg, train = self.cfg, self.cfg.train
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
        checkpoints = run_dir / "checkpoints"
        ckpt.remove_partial_files(checkpoints)
        found = ckpt.iteration_checkpoints(checkpoints)
        if found:
            self.load_state(ckpt.load_checkpoint(found[-1][1]))
        save_config(cfg, run_dir / "config.yaml")
        datasets = dict(datasets or {})
        if self.iteration < train.max_iters:
            for part in ("source", "target") + (("val",) if cfg.eval.every > 0 else ()):
                if datasets.get(part) is None:
                    datasets[part] = build_part(cfg, part)
            sources = infinite_loader(datasets["source"], cfg, "source", self.consumed["source"], self.device)
            targets = infinite_loader(datasets["target"], cfg, "target", self.consumed["target"], self.device)
        logger = TrainLogger(run_dir, cfg, self.iteration)
        try:
            while self.iteration < train.max_iters:
                started = time.perf_counter()
                source_batch, target_batch = next(sources), next(targets)
                self.keep_outputs = logger.wants_images(self.iteration)
                step_losses = self.train_step(source_batch, target_batch)
                self.consumed["source"] += cfg.data.source.batch_size
                self.consumed["target"] += cfg.data.target.batch_size
                seconds = time.perf_counter() - started
                logger.step(self.iteration - 1, step_losses, self.learning_rates(), seconds)
                if self.keep_outputs:
                    logger.images(self.iteration - 1, self.last_outputs, cfg.model.num_classes,
                                  cfg.data.preprocess)
                    self.last_outputs = {}
                done = self.iteration
                if cfg.eval.every > 0 and (done % cfg.eval.every == 0 or done == train.max_iters):
                    self._evaluate(datasets["val"], checkpoints, logger)
                every = train.checkpoint_every
                if (every > 0 and done % every == 0) or done == train.max_iters:
                    ckpt.save_checkpoint(ckpt.iteration_path(checkpoints, done), self.state())
                    ckpt.prune(checkpoints, train.keep_last)
            self._finalize(run_dir, logger)
        finally:
            logger.close()
        return run_dir

    def evaluate(self, dataset) -> float:
        """mIoU of the current model on ``dataset`` (official protocol); leaves the training state as it
        was (train mode, random generators)."""
        from dada.evaluation import evaluate_segmenter

        with torch.random.fork_rng(devices=[]):
            try:
                result = evaluate_segmenter(self.model, dataset, num_classes=self.cfg.model.num_classes,
                                            device=self.device, max_images=self.cfg.eval.max_images,
                                            depth_bins=None, num_workers=self.cfg.data.num_workers,
                                            progress=False)
            finally:
                self.model.train()
        return float(result.miou)

    def _evaluate(self, dataset, checkpoints: Path, logger) -> float:
        miou = self.evaluate(dataset)
        logger.evaluation(self.iteration - 1, miou, {"selection": self.cfg.eval.selection})
        best = self.selection.get("best_miou")
        if best is None or miou > best:
            self.selection.update(best_miou=miou, best_iteration=self.iteration)
            if self.cfg.eval.selection == "best-on-val":
                ckpt.save_checkpoint(checkpoints / "best.pt", self.state())
        return miou

    def _finalize(self, run_dir: Path, logger) -> None:
        """``checkpoints/final.pt``: the last iteration (``last``) or the best on val (``best-on-val``)."""
        checkpoints = run_dir / "checkpoints"
        policy = self.cfg.eval.selection
        chosen = checkpoints / "best.pt" if policy == "best-on-val" else ckpt.iteration_path(checkpoints,
                                                                                              self.iteration)
        final = ckpt.load_checkpoint(chosen)
        final["selection"] = {**final["selection"], "policy": policy, "iteration": final["iteration"],
                              "label": "best on the validation set (the official protocol; selects on "
                                       "the evaluation set)" if policy == "best-on-val" else "last iteration"}
        ckpt.save_checkpoint(checkpoints / "final.pt", {k: v for k, v in final.items() if k != "format"})
        ckpt.prune(checkpoints, self.cfg.train.keep_last, protect={chosen})
        summary = {"preset": self.cfg.preset, "seed": self.cfg.seed, "iterations": self.iteration,
                   "final": "checkpoints/final.pt", "selection": final["selection"]}
        write_json(run_dir / "train_summary.json", summary)
        logger.write({"kind": "final", "iteration": self.iteration - 1, "selection": final["selection"]})


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
