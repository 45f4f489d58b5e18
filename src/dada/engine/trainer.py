"""The training engine: one method-agnostic loop (``Trainer``), resumable bit for bit.

The engine owns what every method shares: the device and seeds, the segmenter (built from
``cfg.model``, initialised from ``model.pretrained``), the data, the poly schedule's iteration counter,
checkpoints and resume (the model, ``method.state_dict()``, the random generators, the data position),
logging, periodic evaluation and the selection of the final checkpoint. What an iteration does is the
method's (``dada.methods``: ``METHODS[cfg.method.name]``).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from dada.config import SELECTION_POLICIES, from_dict, save_config, to_dict
from dada.devices import resolve_device
from dada.engine import checkpoint as ckpt
from dada.engine import distributed
from dada.engine.accelerate import Accelerator, trained_modules
from dada.engine.data import build_part, infinite_loader
from dada.errors import DadaError
from dada.io import write_json
from dada.methods import method_class
from dada.models import build_segmenter, load_pretrained
from dada.models.segmenter import spec_keys

#: Keys that may differ between a run and its resumption (they do not change the result).
RUNTIME_KEYS = {("train", "device"), ("train", "progress"), ("data", "num_workers"), ("data", "pin_memory"),
                ("data", "prefetch_factor"), ("data", "persistent_workers"), ("output", "root"),
                ("output", "name"), ("eval", "max_images")}
#: ``model.pretrained`` value that starts a paper preset from random weights on purpose
NO_PRETRAINED = "none"


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


def check_pretrained(cfg: DictConfig) -> str | None:
    """The initial weights to load, or None. A paper setting (``model.require_pretrained``, set by the
    ``synthia2*`` settings) needs them: the official training script refuses to start without its
    ImageNet weights, and a random init wastes a GPU week."""
    pretrained = cfg.model.pretrained
    if pretrained is not None and str(pretrained).lower() == NO_PRETRAINED:
        return None
    if pretrained is None and cfg.model.require_pretrained:
        raise DadaError(f"preset {cfg.preset}: model.pretrained is not set. The paper's runs start from the "
                        f"ImageNet weights DeepLab_resnet_pretrained_imagenet.pth: give "
                        f"model.pretrained=/path/to/DeepLab_resnet_pretrained_imagenet.pth, or "
                        f"model.pretrained={NO_PRETRAINED} to train from random weights on purpose")
    return pretrained


class Trainer:
    """Builds the segmenter and the method (its extra modules and optimizers) from ``cfg``; datasets are
    opened only by :meth:`fit`."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        # torchrun: join the process group, one device per rank (dada.engine.distributed)
        self.dist, self.device = distributed.setup(resolve_device(cfg.train.device, "train.device"))
        seed_everything(cfg.seed, cfg.train.deterministic)
        method_cls = method_class(cfg.method.name)
        self.model_spec = {key: cfg.model[key] for key in spec_keys()}
        try:
            self.model = build_segmenter(**self.model_spec)
        except ValueError as error:  # an unknown arch, bn_mode, depth_widths or output_stride
            raise DadaError(f"model: {error}") from None
        pretrained = check_pretrained(cfg)
        if pretrained:  # ImageNet backbone (or a whole segmenter); the heads stay random otherwise
            self.pretrained = load_pretrained(self.model, pretrained, cfg.model.pretrained_kind)
        if cfg.model.sync_bn and self.dist.enabled:
            if cfg.model.bn_mode != "train":
                raise DadaError("model.sync_bn=true needs model.bn_mode=train (frozen BN has no statistics "
                                "to synchronise)")
            self.model = distributed.convert_sync_batchnorm(self.model, self.device)
        self.model.to(self.device).train()
        try:
            self.method = method_cls(cfg, self.model, self.device)
        except ValueError as error:
            raise DadaError(f"method: {error}") from None
        for module in (self.model, self.method.extra_modules):  # every rank starts from rank 0's weights
            distributed.broadcast_module(module, self.dist)
        # train.precision / channels_last / compile and the ranks' gradient all-reduce, for any method
        self.accelerator = Accelerator(cfg, self.device, self.dist)
        self.accelerator.prepare(trained_modules(self.model, self.method.extra_modules),
                                 self.method.optimizers.values())
        self.iteration = 0
        self.consumed = {"source": 0, "target": 0}
        self.selection: dict[str, Any] = {"policy": cfg.eval.selection, "iteration": None, "miou": None}
        self.logger = None
        self.log_state: dict[str, list[float]] = {}  # the logger's running means at the checkpoint

    @property
    def discriminators(self) -> nn.ModuleDict:
        return self.method.discriminators

    @property
    def discriminator(self) -> nn.Module | None:
        """The discriminator (the ModuleDict of them when a method has two, None without any)."""
        if len(self.discriminators) == 1:
            return next(iter(self.discriminators.values()))
        return self.discriminators if len(self.discriminators) else None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The segmenter's SGD (``dada.optim``)."""
        return self.method.optimizers["segmenter"]

    def learning_rates(self) -> dict[str, float]:
        return self.method.learning_rates()

    def train_step(self, source_batch: dict, target_batch: dict) -> dict[str, float]:
        """One iteration at ``self.iteration`` (every optimizer steps once); returns the losses."""
        def on_device(batch: dict) -> dict:
            return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                    if isinstance(v, torch.Tensor)}

        losses = self.method.train_step(on_device(source_batch), on_device(target_batch), self.iteration)
        self.accelerator.end_iteration()
        self.iteration += 1
        return {name: float(value) for name, value in losses.items()}

    # ------------------------------------------------------------------------------------- the state
    def state(self, gather: bool = True) -> dict[str, Any]:
        """The checkpoint payload. With several ranks, ``gather`` (a collective: every rank calls it)
        collects each rank's random state for resuming; ``gather=False`` is rank 0's alone."""
        rng = distributed.all_gather_object(ckpt.rng_state(), self.dist) if gather else [ckpt.rng_state()]
        state = {"iteration": self.iteration, "config": to_dict(self.cfg),
                 "model_spec": dict(self.model_spec),
                 "model": self.model.state_dict(), "method": self.method.state_dict(),
                 "rng": rng[0], "data": dict(self.consumed), "selection": dict(self.selection),
                 "world_size": self.dist.world_size,
                 "method_info": {"source_depth": type(self.method).needs_source_depth(self.cfg.method),
                                 "target_trained": type(self.method).target_trained},
                 "log": self.logger.running_state() if self.logger is not None else {}}
        if self.dist.enabled and gather:
            state["rng_ranks"] = rng
        if self.accelerator.state_dict():
            state["accelerator"] = self.accelerator.state_dict()
        return state

    def load_state(self, checkpoint: dict[str, Any]) -> None:
        saved, current = to_dict(from_dict(checkpoint["config"])), to_dict(self.cfg)  # old union keys dropped
        differences = [key for key in _diff(saved, current) if tuple(key.split(".")[:2]) not in RUNTIME_KEYS]
        if differences:
            raise DadaError(f"the run folder was trained with a different config ({', '.join(differences)}): "
                            f"resume with the same preset and overrides, or choose another output.name")
        distributed.check_world_size(checkpoint.get("world_size"), self.dist, "the run folder")
        self.model.load_state_dict(checkpoint["model"])
        self.method.load_state_dict(checkpoint["method"])
        self.iteration = int(checkpoint["iteration"])
        self.consumed = {k: int(v) for k, v in checkpoint["data"].items()}
        self.selection = dict(checkpoint["selection"])
        self.log_state = dict(checkpoint.get("log") or {})
        self.accelerator.load_state_dict(checkpoint.get("accelerator"))
        ckpt.set_rng_state(checkpoint["rng_ranks"][self.dist.rank] if self.dist.enabled
                           else checkpoint["rng"])

    # --------------------------------------------------------------------------------------- the run
    def fit(self, run_dir: str | os.PathLike | None = None, *, datasets: dict | None = None) -> Path:
        """Train to ``train.max_iters`` in ``run_dir`` (default ``output.root/output.name``), resuming from
        its newest checkpoint if it has one; returns the run folder. ``datasets`` may replace the
        ``source`` / ``target`` / ``val`` datasets of the config."""
        import contextlib

        from dada.engine.lock import RunLock, StopSignals

        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(self.cfg)
        lock = RunLock(run_dir) if self.dist.is_main else contextlib.nullcontext()  # one process (group)
        with lock, StopSignals() as stop:  # per run folder; SIGTERM/SIGINT save a checkpoint
            return self._fit(run_dir, datasets, stop)

    def _fit(self, run_dir: Path, datasets: dict | None, stop) -> Path:
        from dada.engine.lock import Interrupted
        from dada.engine.logging import TrainLogger

        cfg, train = self.cfg, self.cfg.train
        checkpoints = run_dir / "checkpoints"
        main, rank, world = self.dist.is_main, self.dist.rank, self.dist.world_size  # only rank 0 writes
        finished, checkpoint, newest = False, None, None
        if main:  # a verified final.pt is a finished run; a corrupt newest iter_*.pt falls back, saying so
            ckpt.remove_partial_files(checkpoints)
            finished = ckpt.complete_run(run_dir) is not None
            checkpoint, newest = ckpt.load_latest(checkpoints)
            newest = newest or (checkpoints / "final.pt" if finished else None)
        finished, newest = distributed.broadcast_object((finished, newest), self.dist)  # rank 0's view
        if newest is not None:
            self.load_state(checkpoint if checkpoint is not None else ckpt.load_checkpoint(newest))
        if finished:  # report it, never retrain over it
            if main:
                print(f"run {run_dir} is already complete (checkpoints/final.pt): nothing to do; choose "
                      f"another output.name to train again", flush=True)
            return run_dir
        if main:
            save_config(cfg, run_dir / "config.yaml")
        datasets = dict(datasets or {})
        if self.iteration < train.max_iters:
            parts = ("source",) + (("target",) if self.method.needs_target else ()) \
                + (("val",) if cfg.eval.every > 0 else ())
            for part in parts:
                if datasets.get(part) is None:
                    datasets[part] = build_part(cfg, part)
            self.method.prepare(datasets, run_dir)
            sources = infinite_loader(datasets["source"], cfg, "source", self.consumed["source"], self.device,
                                      rank, world, order=self.method.source_order())
            targets = iter(dict, None)  # endless empty batches for a method that does not use the target
            if self.method.needs_target:
                targets = infinite_loader(datasets["target"], cfg, "target", self.consumed["target"],
                                          self.device, rank, world)
        logger = TrainLogger(run_dir, cfg, self.iteration, running=self.log_state) if main else SilentLogger()
        self.logger = logger if main else None
        try:
            while self.iteration < train.max_iters:
                started = time.perf_counter()
                source_batch, target_batch = next(sources), next(targets)
                self.method.keep_outputs = logger.wants_images(self.iteration)
                step_losses = self.train_step(source_batch, target_batch)
                self.consumed["source"] += cfg.data.source.batch_size * world  # items read by all ranks
                self.consumed["target"] += (cfg.data.target.batch_size * world
                                            if self.method.needs_target else 0)
                seconds = time.perf_counter() - started
                logger.step(self.iteration - 1, step_losses, self.learning_rates(), seconds,
                            stats=self.method.log_scalars())
                if self.method.keep_outputs:
                    logger.images(self.iteration - 1, self.method.last_outputs, cfg.model.num_classes,
                                  cfg.data.preprocess, extra=self.method.log_images())
                    self.method.last_outputs = {}
                done = self.iteration
                if cfg.eval.every > 0 and (done % cfg.eval.every == 0 or done == train.max_iters):
                    self._evaluate(datasets["val"], checkpoints, logger)  # rank 0 only
                stopping = distributed.broadcast_object(stop.requested, self.dist) if self.dist.enabled \
                    else stop.requested  # every rank stops at the same iteration
                every = train.checkpoint_every
                if (every > 0 and done % every == 0) or done == train.max_iters or stopping:
                    state = self.state()  # every rank: it gathers the ranks' random states
                    if main:
                        ckpt.save_checkpoint(ckpt.iteration_path(checkpoints, done), state)
                        ckpt.prune(checkpoints, train.keep_last)
                if stopping:
                    raise Interrupted(f"stopped by {stopping} after iteration {done}: saved "
                                      f"{ckpt.iteration_path(checkpoints, done)}; rerun the same command "
                                      f"to resume", stop.signum or 15)
            if main:
                self._finalize(run_dir, logger)
            distributed.barrier(self.dist)
        finally:
            logger.close()
            self.logger = None
        return run_dir

    def evaluate(self, dataset) -> float:
        """mIoU of the current model on ``dataset`` (official protocol); leaves the training state as it
        was (train mode, random generators)."""
        from dada.evaluation import evaluate_segmenter

        network = self.method.evaluation_network()  # the segmenter, or a method's other network (a teacher)
        was_training = network.training
        with torch.random.fork_rng(devices=[]):
            try:
                result = evaluate_segmenter(network, dataset, num_classes=self.cfg.model.num_classes,
                                            device=self.device, max_images=self.cfg.eval.max_images,
                                            depth_bins=None, num_workers=self.cfg.data.num_workers,
                                            progress=False)
            finally:
                network.train(was_training)
        return float(result.miou)

    def _evaluate(self, dataset, checkpoints: Path, logger) -> float | None:
        if not self.dist.is_main:  # the other ranks wait at the next collective
            return None
        miou = self.evaluate(dataset)
        logger.evaluation(self.iteration - 1, miou, {"selection": self.cfg.eval.selection})
        best = self.selection.get("best_miou")
        if best is None or miou > best:
            self.selection.update(best_miou=miou, best_iteration=self.iteration)
            if self.cfg.eval.selection == "best-on-val":
                ckpt.save_checkpoint(checkpoints / "best.pt", self.state(gather=False))
        return miou

    def _finalize(self, run_dir: Path, logger) -> None:
        """``checkpoints/final.pt``: the last iteration (``last``) or the best on val (``best-on-val``)."""
        checkpoints = run_dir / "checkpoints"
        policy = self.cfg.eval.selection
        chosen = checkpoints / "best.pt" if policy == "best-on-val" else ckpt.iteration_path(checkpoints,
                                                                                              self.iteration)
        final = ckpt.load_checkpoint(chosen)
        final["selection"] = {**final["selection"], "policy": policy, "iteration": final["iteration"],
                              "label": SELECTION_POLICIES[policy]}
        ckpt.save_checkpoint(checkpoints / "final.pt", {k: v for k, v in final.items() if k != "format"})
        ckpt.prune(checkpoints, self.cfg.train.keep_last, protect={chosen})
        summary = {"preset": self.cfg.preset, "seed": self.cfg.seed, "iterations": self.iteration,
                   "final": "checkpoints/final.pt", "selection": final["selection"]}
        write_json(run_dir / "train_summary.json", summary)
        logger.write({"kind": "final", "iteration": self.iteration - 1, "selection": final["selection"]})


class SilentLogger:
    """The logger of ranks other than 0: only rank 0 writes metrics, TensorBoard and images."""

    def wants_images(self, iteration: int) -> bool:
        return False

    def step(self, iteration: int, losses: dict, lrs: dict, seconds: float,
             stats: dict | None = None) -> None:
        return None

    def evaluation(self, iteration: int, miou: float, extra: dict) -> None:
        return None

    def write(self, record: dict) -> None:
        return None

    def close(self) -> None:
        return None


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
