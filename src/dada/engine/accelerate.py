"""The fast settings, applied by the engine to any method's modules and optimizers (no method code changes).

* ``train.precision=bf16|fp16``: each trained module (the segmenter, the method's extra modules) runs its
  forward under ``torch.autocast`` and returns fp32 outputs, so everything the method computes on them —
  upsampling, the losses, the self-information map with its 1e-30 epsilon, softmax, entropy — stays in
  fp32 outside autocast. fp16 adds dynamic loss scaling (``torch.amp.GradScaler``'s schedule: 2^16,
  halved on a non-finite gradient, doubled after 2,000 finite iterations): gradients inside each module
  are scaled by S (the factor enters at its outputs and leaves at its inputs, so gradients crossing from a
  discriminator into the segmenter are not scaled twice), and every optimizer's ``step`` first unscales
  its gradients and skips the update when one is not finite.
* ``train.channels_last``: NHWC weights and 4-D inputs.
* ``train.compile``: ``Module.compile()`` in place (state-dict keys unchanged).
* several processes: every optimizer's ``step`` first averages its parameters' gradients over the ranks
  (:func:`dada.engine.distributed.all_reduce_gradients`), i.e. after all of the iteration's backward
  passes and after the method's NaN guard.

With the defaults (fp32, no channels_last, no compile, one process) nothing is touched: the step is the
official one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils._pytree import tree_map

from dada.engine import distributed
from dada.errors import DadaError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``factor`` (a 0-d tensor) on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(factor)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return grad * factor.to(grad.dtype), None


class LossScale:
    """Dynamic loss scale for fp16 (``torch.amp.GradScaler``'s defaults)."""

    def __init__(self, device: torch.device, init: float = 2.0 ** 16, growth_interval: int = 2000):
        self.scale = torch.full((), init, dtype=torch.float32, device=device)
        self.inverse = torch.full((), 1.0 / init, dtype=torch.float32, device=device)
        self.growth_interval = growth_interval
        self.good_steps = 0
        self.found_inf = False
        self.skipped = 0  # optimizer steps skipped so far (logged by the engine)

    def unscale(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide the optimizer's gradients by the scale; True when all are finite."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return True
        found = torch.zeros(1, dtype=torch.float32, device=grads[0].device)
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, self.inverse.to(grads[0].device))
        return not bool(found.item())

    def update(self) -> None:
        """After the iteration: halve on overflow, double after ``growth_interval`` clean iterations."""
        if self.found_inf:
            self.scale.mul_(0.5)
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale.mul_(2.0)
                self.good_steps = 0
        self.inverse.copy_(1.0 / self.scale)
        self.found_inf = False

    def state_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale.fill_(float(state["scale"]))
        self.inverse.fill_(1.0 / float(state["scale"]))
        self.good_steps, self.skipped = int(state["good_steps"]), int(state["skipped"])


class Accelerator:
    """Applies ``train.precision``, ``train.channels_last``, ``train.compile`` and the gradient all-reduce
    to modules and optimizers; :meth:`end_iteration` after each step; its state goes into checkpoints."""

    def __init__(self, cfg: DictConfig, device: torch.device, dist: distributed.Dist = distributed.SINGLE):
        train = cfg.train
        if train.precision not in DTYPES:
            raise DadaError(f"train.precision must be one of {', '.join(DTYPES)}, got {train.precision!r}")
        self.device, self.dist = device, dist
        self.precision = train.precision
        self.dtype = DTYPES[train.precision]
        self.autocast = train.precision != "fp32"
        self.channels_last = bool(train.channels_last)
        self.compile = bool(train.compile)
        self.loss_scale = LossScale(device) if train.precision == "fp16" else None
        if self.autocast and device.type == "cuda" and self.dtype == torch.bfloat16 \
                and not torch.cuda.is_bf16_supported():
            raise DadaError(f"train.precision=bf16: {torch.cuda.get_device_name(device)} has no bf16 "
                            f"support; use train.precision=fp16")

    @property
    def active(self) -> bool:
        return self.autocast or self.channels_last or self.compile or self.dist.enabled

    # ------------------------------------------------------------------------------------- modules
    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Wrap ``module.forward`` in place (autocast, fp32 outputs, loss scaling, NHWC), then compile."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.autocast or self.channels_last:
            module.forward = self._wrapped_forward(module.forward)
        if self.compile:
            module.compile()
        return module

    def _wrapped_forward(self, forward):
        device_type, dtype, autocast = self.device.type, self.dtype, self.autocast
        channels_last, scale = self.channels_last, self.loss_scale

        def inputs(value):
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                return value
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
            if scale is not None and value.requires_grad:  # gradient leaves the module unscaled
                value = _ScaleGrad.apply(value, scale.inverse)
            return value

        def outputs(value):
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                return value
            if autocast:
                value = value.float()
            if scale is not None and value.requires_grad:  # gradient enters the module scaled by S
                value = _ScaleGrad.apply(value, scale.scale)
            return value

        @functools.wraps(forward)
        def wrapped(*args, **kwargs):
            args, kwargs = tree_map(inputs, args), tree_map(inputs, kwargs)
            with torch.autocast(device_type, dtype=dtype, enabled=autocast):
                out = forward(*args, **kwargs)
            return tree_map(outputs, out)

        return wrapped

    # ---------------------------------------------------------------------------------- optimizers
    def prepare_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Patch ``optimizer.step``: all-reduce its gradients over the ranks, unscale (fp16) and skip the
        update on a non-finite gradient."""
        if not (self.dist.enabled or self.loss_scale is not None):
            return optimizer
        original, dist, scale = optimizer.step, self.dist, self.loss_scale

        @functools.wraps(original)
        def step(*args, **kwargs):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            distributed.all_reduce_gradients(params, dist)
            if scale is not None and not scale.unscale(optimizer):
                scale.found_inf = True
                scale.skipped += 1
                return None
            return original(*args, **kwargs)

        optimizer.step = step
        return optimizer

    def prepare(self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> None:
        for module in modules:
            self.prepare_module(module)
        for optimizer in optimizers:
            self.prepare_optimizer(optimizer)

    def end_iteration(self) -> None:
        if self.loss_scale is not None:
            self.loss_scale.update()

    def state_dict(self) -> dict[str, Any]:
        return {"loss_scale": self.loss_scale.state_dict()} if self.loss_scale is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.loss_scale is not None and state and "loss_scale" in state:
            self.loss_scale.load_state_dict(state["loss_scale"])



def trained_modules(*modules: nn.Module) -> list[nn.Module]:
    """The modules that run forwards (containers such as a ModuleDict of discriminators opened up)."""
    found: list[nn.Module] = []
    for module in modules:
        if isinstance(module, (nn.ModuleDict, nn.ModuleList)):
            found.extend(trained_modules(*module.children()))
        else:
            found.append(module)
    return found
