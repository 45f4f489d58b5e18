"""The segmenter's SGD, as the paper's runs stepped it (the official optimizer with its repeats).

Why this module exists: the official code builds the backbone's parameter group with ADVENT's
``get_1x_lr_params_no_scale``::

    for root in (conv1, bn1, layer1, layer2, layer3, layer4):
        for module in root.modules():
            for param in module.parameters():   # recursive: yields a tensor once per enclosing module
                if param.requires_grad:
                    yield param

so a tensor appears in the group once per module that encloses it within its root: ``conv1`` once, a
bottleneck conv 3 times (``layerN``, the block, the conv), a downsample conv 4 times (ResNet-101: 314
entries for 104 tensors). The paper ran PyTorch 1.2.0, whose ``SGD.step`` walks the group entry by
entry; for each entry it adds the weight decay *in place to the gradient*, updates the one momentum
buffer of the tensor (a clone of the gradient the first time) and moves the weight by ``-lr · buffer``.
A tensor listed k times is therefore stepped k times per iteration, with the weight decay piling up in
its gradient: the backbone learns about 3–4× faster than the nominal learning rate says (more in the
first iterations). Current PyTorch only warns about the duplicates and updates differently, so running
the official code today does not reproduce the paper either.

:class:`OfficialSGD` reproduces that update with the repeat counts derived from the module nesting
(:func:`official_repeats`), with ``torch._foreach`` ops over all tensors of a group at once.
``train.sgd=standard`` uses ``torch.optim.SGD`` with each tensor once instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

SGD_MODES = ("official", "standard")


def official_repeats(roots: Iterable[nn.Module]) -> dict[nn.Parameter, int]:
    """Trainable tensor → the number of entries ``get_1x_lr_params_no_scale`` yields for it, i.e. the
    number of modules within its root (the root included) that enclose it; in first-yield order."""
    counts: dict[nn.Parameter, int] = {}
    for root in roots:
        for module in root.modules():
            for param in module.parameters():
                if param.requires_grad:
                    counts[param] = counts.get(param, 0) + 1
    return counts


class OfficialSGD(torch.optim.Optimizer):
    """PyTorch 1.2.0's ``SGD.step`` (momentum, dampening 0, no Nesterov) over a parameter list with
    repeats: each group holds unique tensors and a ``repeats`` list (how many times the official list
    names each). One iteration applies, ``repeats`` times per tensor::

        grad += weight_decay · p        # in place: the decay accumulates over the repeats
        buf = grad.clone() if new else momentum · buf + grad
        p -= lr · buf

    The state is the per-tensor ``momentum_buffer``, as in ``torch.optim.SGD`` (checkpoints round-trip
    through ``state_dict``)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD settings lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        for group in self.param_groups:
            repeats = group.setdefault("repeats", [1] * len(group["params"]))
            if len(repeats) != len(group["params"]) or any(int(r) < 1 for r in repeats):
                raise ValueError("each group needs one repeat count >= 1 per tensor")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            entries = [(p, r) for p, r in zip(group["params"], group["repeats"], strict=True)
                       if p.grad is not None]
            for sweep in range(max((r for _, r in entries), default=0)):
                params = [p for p, r in entries if r > sweep]
                self._step_once(params, group["lr"], group["momentum"], group["weight_decay"])
        return loss

    def _step_once(self, params: list[torch.Tensor], lr: float, momentum: float, weight_decay: float) -> None:
        """One entry of PyTorch 1.2's loop, for every tensor in ``params`` at once."""
        grads = [p.grad for p in params]
        if weight_decay != 0:
            torch._foreach_add_(grads, params, alpha=weight_decay)
        if momentum == 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        old = [p for p in params if "momentum_buffer" in self.state[p]]
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.clone(p.grad).detach()
        if old:
            buffers = [self.state[p]["momentum_buffer"] for p in old]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, [p.grad for p in old])
        torch._foreach_add_(params, [self.state[p]["momentum_buffer"] for p in params], alpha=-lr)


def build_segmenter_sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                        mode: str = "official") -> torch.optim.Optimizer:
    """The segmenter's SGD: group 0 the backbone at ``lr``, group 1 the heads at ``10·lr`` (both with
    ``lr_mult`` and ``name``, from ``model.param_groups``).

    ``official``: :class:`OfficialSGD` with the backbone's repeats from ``backbone.official_sgd_roots()``
    (each tensor once where the backbone defines none; the heads once, as ``get_10x_lr_params``);
    ``standard``: ``torch.optim.SGD``, each tensor once.
    """
    groups = model.param_groups(lr)
    if mode == "standard":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if mode != "official":
        raise ValueError(f"unknown SGD mode {mode!r}; choose one of {SGD_MODES}")
    roots = model.backbone.official_sgd_roots()
    if roots is not None:
        counts = official_repeats(roots)
        listed = {id(p) for p in counts}
        unlisted = [n for n, p in model.backbone.named_parameters()
                    if p.requires_grad and id(p) not in listed]
        if unlisted:
            raise ValueError(f"official_sgd_roots() of {type(model.backbone).__name__} misses trainable "
                             f"tensors {unlisted[:5]}")
        groups[0]["params"] = list(counts)
        groups[0]["repeats"] = list(counts.values())
    return OfficialSGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
