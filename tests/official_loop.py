"""The official DADA iteration re-stated for tests and benchmarks, on the official modules.

* :class:`OfficialDADA`: ADVENT's ``ResNetMulti`` (``advent/model/deeplabv2.py``) and DADA's
  ``ResNetMultiDepth`` (``dada/model/deeplabv2_depth.py``), single level, written independently of
  ``dada.models``. Its module tree is the official one (Bottlenecks with an in-place ReLU, ``downsample``
  as ``Sequential(conv, bn)``, an ASPP that sums in place), so its ``state_dict`` has the official keys
  (load ours through ``dada.models.official.export``) and ``get_1x_lr_params_no_scale`` walks the
  official nesting (the SGD repeats).
* :class:`SGD_1_2`: PyTorch 1.2.0's ``SGD.step``; :class:`OfficialLoop`: ``train_dada`` / ADVENT's
  ``train_advent``; :func:`compare_with_official`: both loops side by side, per-iteration differences.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn


class OfficialBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        for bn in (self.bn1, self.bn2, self.bn3):
            bn.requires_grad_(False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class OfficialASPP(nn.Module):
    def __init__(self, inplanes, num_classes, rates=(6, 12, 18, 24)):
        super().__init__()
        self.conv2d_list = nn.ModuleList(nn.Conv2d(inplanes, num_classes, 3, padding=r, dilation=r)
                                         for r in rates)

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out += conv(x)  # in place, as the official loop
        return out


class OfficialDADA(nn.Module):
    """``ResNetMultiDepth(Bottleneck, layers, num_classes, multi_level=False)``; forward returns
    ``(None, seg, depth)`` as the official one does. ``depth=False`` gives ADVENT's ``ResNetMulti``."""

    def __init__(self, num_classes=16, layers=(3, 4, 23, 3), depth=True):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.bn1.requires_grad_(False)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], dilation=2)
        self.layer4 = self._make_layer(512, layers[3], dilation=4)
        self.layer6 = OfficialASPP(2048, num_classes)
        self.depth = depth
        if depth:
            self.enc4_1 = nn.Conv2d(2048, 512, 1)
            self.enc4_2 = nn.Conv2d(512, 512, 3, padding=1)
            self.enc4_3 = nn.Conv2d(512, 128, 1)
            self.dec4 = nn.Conv2d(128, 2048, 1)

    def _make_layer(self, planes, blocks, stride=1, dilation=1):
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        downsample[1].requires_grad_(False)
        layers = [OfficialBottleneck(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = planes * 4
        layers += [OfficialBottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x4 = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if not self.depth:
            return None, self.layer6(x4), None
        enc = self.relu(self.enc4_1(x4))
        enc = self.relu(self.enc4_2(enc))
        enc = self.enc4_3(enc)
        depth = torch.mean(enc, dim=1, keepdim=True)
        dec = self.relu(self.dec4(enc))
        return None, self.layer6(x4 * dec), depth

    def get_1x_lr_params_no_scale(self):
        """ADVENT's generator: a tensor once per module enclosing it within its root (the repeats)."""
        for root in (self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4):
            for module in root.modules():
                for param in module.parameters():
                    if param.requires_grad:
                        yield param

    def get_10x_lr_params(self):
        names = ("layer6", "enc4_1", "enc4_2", "enc4_3", "dec4") if self.depth else ("layer6",)
        for name in names:
            yield from getattr(self, name).parameters()


# ----------------------------------------------------------------------------------- the official loop
def prob_2_entropy(prob):
    """ADVENT ``prob_2_entropy``: −p·log2(p + 1e-30) / log2(C), per class."""
    return -torch.mul(prob, torch.log2(prob + 1e-30)) / math.log2(prob.size(1))


def bce_loss(y_pred, y_label):
    """ADVENT ``bce_loss``: BCE with logits against a constant map."""
    return F.binary_cross_entropy_with_logits(y_pred, torch.full_like(y_pred, y_label))


def loss_calc_depth(pred, label):
    """DADA ``loss_calc_depth``: berHu, c = 0.2·max|r| read with ``.item()``, mean over all pixels."""
    adiff = torch.abs(pred.squeeze() - label.squeeze())
    batch_max = 0.2 * torch.max(adiff).item()
    t1 = adiff * adiff.le(batch_max).to(adiff.dtype)
    t2 = (adiff * adiff + batch_max * batch_max) / (2 * batch_max) * adiff.gt(batch_max).to(adiff.dtype)
    return (torch.sum(t1) + torch.sum(t2)) / torch.numel(pred.data)


class SGD_1_2:
    """``torch/optim/sgd.py`` of PyTorch 1.2.0 (``step``, ``zero_grad``): entry by entry, weight decay added
    in place to the gradient, one momentum buffer per tensor."""

    def __init__(self, groups, lr, momentum=0.9, weight_decay=5e-4):
        self.param_groups = [{"lr": lr, "momentum": momentum, "weight_decay": weight_decay, **g,
                              "params": list(g["params"])} for g in groups]
        self.state = defaultdict(dict)

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.detach_()
                    p.grad.zero_()

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                d_p.add_(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    buf = state["momentum_buffer"]
                    buf.mul_(group["momentum"]).add_(d_p)
                p.add_(buf, alpha=-group["lr"])


class OfficialLoop:
    """``DADA:train_UDA.py::train_dada`` (``dada=True``) or ADVENT's ``train_advent`` (``dada=False``:
    no depth, discriminator terms halved) on an :class:`OfficialDADA`, with ``optim.SGD(
    model.optim_parameters(lr), momentum 0.9, weight_decay 5e-4)`` as PyTorch 1.2 steps it and
    ``Adam(lr_d, betas=(0.9, 0.99))``. ``grads`` keeps each iteration's gradients before the step."""

    def __init__(self, model, d_main, *, dada=True, max_iters=10, lr=2.5e-4, lr_d=1e-4):
        self.model, self.d_main, self.dada = model, d_main, dada
        self.max_iters, self.lr, self.lr_d = max_iters, lr, lr_d
        self.optimizer = SGD_1_2([{"params": model.get_1x_lr_params_no_scale(), "lr": lr},
                                  {"params": model.get_10x_lr_params(), "lr": 10 * lr}], lr=lr)
        self.optimizer_d = torch.optim.Adam(d_main.parameters(), lr=lr_d, betas=(0.9, 0.99))
        self.grads: dict[str, torch.Tensor] = {}

    def iteration(self, i, images_source, labels, depth, images):
        model, d_main = self.model, self.d_main
        interp = lambda x: F.interpolate(x, size=images_source.shape[-2:], mode="bilinear",  # noqa: E731
                                         align_corners=True)
        interp_target = lambda x: F.interpolate(x, size=images.shape[-2:], mode="bilinear",  # noqa: E731
                                                align_corners=True)
        self.optimizer.zero_grad()
        self.optimizer_d.zero_grad()
        decay = (1 - float(i) / self.max_iters) ** 0.9  # adjust_learning_rate(_discriminator)
        self.optimizer.param_groups[0]["lr"] = self.lr * decay
        self.optimizer.param_groups[1]["lr"] = 10 * self.lr * decay
        self.optimizer_d.param_groups[0]["lr"] = self.lr_d * decay
        for param in d_main.parameters():
            param.requires_grad = False
        _, pred_src_main, pred_depth_src_main = model(images_source)
        pred_src_main = interp(pred_src_main)
        loss = F.cross_entropy(pred_src_main, labels, ignore_index=255)
        if self.dada:
            pred_depth_src_main = interp(pred_depth_src_main)
            loss = loss + 0.001 * loss_calc_depth(pred_depth_src_main, depth)
        loss.backward()
        _, pred_trg_main, pred_depth_trg_main = model(images)
        pred_trg_main = interp_target(pred_trg_main)
        d_in = prob_2_entropy(F.softmax(pred_trg_main, dim=1))
        if self.dada:
            pred_depth_trg_main = interp_target(pred_depth_trg_main)
            d_in = d_in * pred_depth_trg_main
        (0.001 * bce_loss(d_main(d_in), 0)).backward()
        for param in d_main.parameters():
            param.requires_grad = True
        half = 1 if self.dada else 2
        for pred, pred_depth, label in ((pred_src_main, pred_depth_src_main, 0),
                                        (pred_trg_main, pred_depth_trg_main, 1)):
            d_in = prob_2_entropy(F.softmax(pred.detach(), dim=1))
            if self.dada:
                d_in = d_in * pred_depth.detach()
            (bce_loss(d_main(d_in), label) / half).backward()
        self.grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        self.optimizer.step()
        self.optimizer_d.step()


def official_name(ours: str) -> str:
    """Our segmenter's parameter name → the official one (``dada.models.official``'s mapping)."""
    return ours.removeprefix("backbone.")


def compare_with_official(trainer, official, batches, log=None) -> list[dict]:
    """Run ``trainer.train_step`` and ``official.iteration`` on the same batches; per iteration, the
    largest relative difference (‖a − b‖ / ‖b‖) of the gradients before the step, of the updates
    (weights after − before) and of the discriminator's weights, with the tensors that reach them."""
    captured: dict[str, torch.Tensor] = {}
    optimizer, original = trainer.optimizer, trainer.optimizer.step
    names = [(official_name(n), p) for n, p in trainer.model.named_parameters()]

    def step(*args, **kwargs):
        captured.update({n: p.grad.clone() for n, p in names if p.grad is not None})
        return original(*args, **kwargs)

    optimizer.step = step
    rel = lambda a, b: float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-300))  # noqa: E731
    rows = []
    try:
        for i, (source, target) in enumerate(batches):
            before_ours = {n: p.detach().clone() for n, p in names}
            before_official = {n: p.detach().clone() for n, p in official.model.named_parameters()}
            official.iteration(i, source["image"], source["label"], source["depth"], target["image"])
            trainer.train_step(source, target)
            grads = {n: rel(captured[n], g) for n, g in official.grads.items()}
            theirs = dict(official.model.named_parameters())
            updates = {n: rel(p.detach() - before_ours[n], theirs[n].detach() - before_official[n])
                       for n, p in names
                       if p.requires_grad and not torch.equal(theirs[n], before_official[n])}
            d = max(rel(a, b) for a, b in zip(trainer.discriminator.parameters(),
                                               official.d_main.parameters(),
                                               strict=True))
            row = {"iteration": i, "grad": max(grads.values()), "grad_at": max(grads, key=grads.get),
                   "update": max(updates.values()), "update_at": max(updates, key=updates.get),
                   "discriminator": d, "tensors": len(grads)}
            rows.append(row)
            if log:
                log(row)
    finally:
        optimizer.step = original
    return rows
