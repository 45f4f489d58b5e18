"""CLAN: category-level adversaries (Luo et al., CVPR 2019), as the official code does it.

"Taking a Closer Look at Domain Shift: Category-level Adversaries for Semantics Consistent Domain
Adaptation"; official code github.com/RoyalVane/CLAN (``CLAN_train.py``, ``model/CLAN_G.py``,
``utils/loss.py``, ``CLAN_evaluate.py``). One iteration:

1. source: two classifiers on the shared features, segmentation loss of each (the official
   ``CrossEntropy2d``, a focal cross-entropy with γ = 2), summed;
2. target: the discriminator sees softmax(pred1 + pred2); the segmenter fools it with a BCE weighted per
   pixel by ε + λ_local·(1 − cos(p1, p2)) (the "adaptive adversarial loss", only after the pre-heat
   iterations; a plain BCE before), times λ_adv·damping;
3. weight discrepancy: (cos(W1, W2) + 1)·λ_weight·damping·2 between the two classifiers' flattened
   weights and biases;
4. discriminator: BCE on detached source (source label), adaptive BCE on detached target (target label);
5. SGD step, Adam step. Learning rates: linear warm-up from 0 over the pre-heat iterations (5 % of the
   run, ``PREHEAT_STEPS = NUM_STEPS_STOP / 20``), then poly; damping = 1 − i / max_iters.

How the two classifiers live in the toolkit: the segmenter's own ASPP classifier holds the **sum** of
the two classifiers' weights (S = W1 + W2; the ASPP is linear in its weights, so C_S(f) = C_W1(f) +
C_W2(f)), and :attr:`extra_modules` ``["classifier2"]`` holds W2. The segmenter's output is therefore
CLAN's prediction pred1 + pred2 (what ``CLAN_evaluate.py`` evaluates) for evaluation, prediction and
export, with no change to them; pred1 = C_S(f) − C_W2(f). The gradients are mapped back before the step
(:func:`fold_gradients`) so that SGD with momentum and weight decay (linear in the parameters) moves W1
and W2 exactly as two separate classifiers would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from dada import losses
from dada.data.classes import IGNORE_INDEX
from dada.methods.base import Method, MethodSettings
from dada.models import Segmenter, build_discriminator, upsample

# ------------------------------------------------------------------------------------------ the maths


def focal_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0,
                        ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """CLAN's segmentation loss (official ``utils/loss.py::CrossEntropy2d``, default ``gamma=2``):
    mean over valid pixels of −(1 − p_y)^γ·log p_y, with p = softmax clamped to [1e-9, 1 − 1e-9].
    ``gamma=0`` is the plain cross-entropy of the paper's eq. (1). No valid pixel: 0 (official: NaN)."""
    labels = labels.long()
    valid = (labels >= 0) & (labels != ignore_index)
    probabilities = torch.softmax(logits.float(), dim=1).clamp(1e-9, 1.0 - 1e-9)
    p_true = probabilities.gather(1, labels.clamp(min=0).masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
    per_pixel = -(1.0 - p_true).pow(gamma) * p_true.log()
    count = valid.sum()
    return (per_pixel * valid).sum() / count.clamp(min=1)


def prediction_discrepancy(prob1: torch.Tensor, prob2: torch.Tensor) -> torch.Tensor:
    """The local alignment weight map (official ``weightmap``): 1 − cos(p1, p2) over the class axis,
    N×1×H×W, from two N×C×H×W probability maps."""
    dot = (prob1 * prob2).sum(dim=1, keepdim=True)
    norms = prob1.norm(dim=1, keepdim=True) * prob2.norm(dim=1, keepdim=True)
    return 1.0 - dot / norms


def weight_discrepancy(weights1: Sequence[torch.Tensor], weights2: Sequence[torch.Tensor]) -> torch.Tensor:
    """cos(W1, W2) + 1 between the flattened, concatenated parameters of the two classifiers (official
    ``loss_weight`` before its factors; the +1 keeps it positive)."""
    w1 = torch.cat([w.reshape(-1) for w in weights1])
    w2 = torch.cat([w.reshape(-1) for w in weights2])
    return torch.dot(w1, w2) / (w1.norm() * w2.norm()) + 1.0


def adaptive_bce(logits: torch.Tensor, domain_label: int | float, weight_map: torch.Tensor,
                 epsilon: float, lambda_local: float) -> torch.Tensor:
    """Official ``WeightedBCEWithLogitsLoss``: mean of (ε + λ_local·w)·BCE(logits, label) per pixel;
    ``weight_map`` N×1×H×W broadcasts over ``logits`` N×1×H×W."""
    logits = logits.float()
    per_pixel = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(domain_label)),
                                                   reduction="none")
    return (epsilon * per_pixel + lambda_local * per_pixel * weight_map).mean()


def clan_schedule(iteration: int, max_iters: int, preheat_iters: int, power: float) -> tuple[float, float]:
    """(learning-rate factor, damping) at ``iteration`` (official ``adjust_learning_rate``: linear
    warm-up i / preheat below ``preheat_iters``, then poly (1 − i/max)^power; ``damping = 1 − i/max``)."""
    if iteration < preheat_iters:
        factor = iteration / preheat_iters
    else:
        factor = (1.0 - iteration / max_iters) ** power
    return factor, 1.0 - iteration / max_iters


def fold_gradients(sum_params: Sequence[torch.Tensor], second_params: Sequence[torch.Tensor]) -> None:
    """Turn the gradients of the parametrisation (S = W1 + W2, W2) into those of (W1 + W2, W2) under
    separate classifiers: autograd gives a = ∂L/∂S = g1 and b = ∂L/∂W2 = g2 − g1; set W2.grad = a + b
    (= g2) and S.grad = 2a + b (= g1 + g2). With SGD (momentum, weight decay: both linear) S then moves
    by the sum of W1's and W2's official moves."""
    for s, w2 in zip(sum_params, second_params, strict=True):
        a = s.grad if s.grad is not None else torch.zeros_like(s)
        b = w2.grad if w2.grad is not None else torch.zeros_like(w2)
        w2.grad = a + b
        s.grad = 2.0 * a + b


@contextmanager
def captured_input(module: nn.Module) -> Iterator[dict]:
    """Within the block, ``box["x"]`` is the input of ``module``'s latest call (the classifier's features)."""
    box: dict = {}

    def hook(_module, args):
        box["x"] = args[0]

    handle = module.register_forward_pre_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


# ----------------------------------------------------------------------------------------- the method


@dataclass
class CLANSettings(MethodSettings):
    """RoyalVane/CLAN ``CLAN_train.py`` (SYNTHIA branch): λ_weight, λ_local (40 for GTA5), ε,
    PREHEAT_STEPS = NUM_STEPS_STOP/20, and ``utils/loss.py`` CrossEntropy2d's focal gamma (0: plain CE)."""

    name: str = "clan"
    ndf: int = 64  # discriminator width
    clan_lambda_weight: float = 0.01
    clan_lambda_local: float = 10.0
    clan_epsilon: float = 0.4
    clan_preheat: float = 0.05
    clan_focal_gamma: float = 2.0


class CLAN(Method):
    """CLAN's step (official ``CLAN_train.py``), with the constants under ``method.clan_*``: λ_weight
    0.01, λ_local 10 (SYNTHIA; 40 for GTA5), ε 0.4, pre-heat 5 % of the run, focal γ 2; λ_adv is
    ``train.lambda_adv`` (0.001), the discriminator AdaptSegNet's (Adam ``train.lr_d``, ``betas_d``)."""

    Settings: ClassVar[type] = CLANSettings

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        super().__init__(cfg, model, device)
        train, method = cfg.train, cfg.method
        classifier = model.layer6
        # the second classifier, drawn like the first (official: N(0, 0.01) weights, default biases);
        # the segmenter's classifier becomes the sum S = W1 + W2 (see the module docstring)
        second = type(classifier)(classifier.conv2d_list[0].in_channels, cfg.model.num_classes).to(device)
        with torch.no_grad():
            for s, w2 in zip(classifier.parameters(), second.parameters(), strict=True):
                s.add_(w2)
        self.extra_modules["classifier2"] = second
        self.discriminators["softmax"] = build_discriminator(cfg.model.num_classes, ndf=method.ndf).to(device)
        self.extra_modules["discriminator"] = self.discriminators["softmax"]
        # W2 steps with the classifier: the 10x group of the segmenter's SGD (official get_10x_lr_params)
        sgd = self.optimizers["segmenter"]
        params = list(second.parameters())
        sgd.add_param_group({"params": params, "lr": 10.0 * train.lr, "lr_mult": 10.0, "name": "classifier2",
                             "repeats": [1] * len(params)})
        self.optimizers["discriminator"] = torch.optim.Adam(self.discriminators.parameters(), lr=train.lr_d,
                                                            betas=tuple(train.betas_d))
        self.base_lrs["discriminator"] = train.lr_d
        self.preheat_iters = int(train.max_iters * method.clan_preheat)

    def start_step(self, iteration: int) -> None:
        """Zero the gradients; learning rates on CLAN's warm-up + poly schedule (both optimizers)."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()
        train = self.cfg.train
        factor, _ = clan_schedule(iteration, train.max_iters, self.preheat_iters, train.poly_power)
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lrs[name] * factor * group.get("lr_mult", 1.0)

    def _predictions(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pred1, pred2) upsampled to the input size: pred1 + pred2 is the segmenter's output."""
        with captured_input(self.model.layer6) as box:
            total = self.model(image).seg
        second = self.extra_modules["classifier2"](box["x"])
        size = image.shape[-2:]
        return upsample(total - second, size), upsample(second, size)

    def _d_logits(self, pred1: torch.Tensor, pred2: torch.Tensor) -> torch.Tensor:
        """D on softmax(pred1 + pred2), upsampled to the input size (official
        ``interp_target(model_D(...))``)."""
        d_out = self.discriminators["softmax"](torch.softmax(pred1 + pred2, dim=1))
        return upsample(d_out, pred1.shape[-2:])

    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        train, method = self.cfg.train, self.cfg.method
        loss: dict[str, torch.Tensor] = {}
        self.start_step(iteration)
        _, damping = clan_schedule(iteration, train.max_iters, self.preheat_iters, train.poly_power)
        adaptive = iteration > self.preheat_iters  # official: ``if(i_iter > PREHEAT_STEPS)``

        def adversarial(logits: torch.Tensor, label: int, weight_map: torch.Tensor) -> torch.Tensor:
            if adaptive:
                return adaptive_bce(logits, label, weight_map, method.clan_epsilon, method.clan_lambda_local)
            return losses.adversarial_bce(logits, label)

        self.discriminators.requires_grad_(False)
        # source: both classifiers' segmentation losses, summed
        pred1_src, pred2_src = self._predictions(source["image"])
        loss["seg_src_1"] = focal_cross_entropy(pred1_src, source["label"], method.clan_focal_gamma)
        loss["seg_src_2"] = focal_cross_entropy(pred2_src, source["label"], method.clan_focal_gamma)
        (train.lambda_seg * (loss["seg_src_1"] + loss["seg_src_2"])).backward()
        # target: the adaptive adversarial loss, weighted per pixel by the classifiers' discrepancy
        pred1_trg, pred2_trg = self._predictions(target["image"])
        weight_map = prediction_discrepancy(torch.softmax(pred1_trg, dim=1), torch.softmax(pred2_trg, dim=1))
        loss["adv_trg"] = adversarial(self._d_logits(pred1_trg, pred2_trg), train.source_label, weight_map)
        (loss["adv_trg"] * train.lambda_adv * damping).backward()
        # the weight discrepancy between the two classifiers (W1 = S − W2)
        sum_params = list(self.model.layer6.parameters())
        second_params = list(self.extra_modules["classifier2"].parameters())
        first_params = [s - w2 for s, w2 in zip(sum_params, second_params, strict=True)]
        loss["weight_discrepancy"] = weight_discrepancy(first_params, second_params)
        (loss["weight_discrepancy"] * method.clan_lambda_weight * damping * 2.0).backward()

        # discriminator on detached predictions: source plain BCE, target adaptive
        self.discriminators.requires_grad_(True)
        loss["d_src"] = losses.adversarial_bce(self._d_logits(pred1_src.detach(), pred2_src.detach()),
                                               train.source_label)
        loss["d_src"].backward()
        loss["d_trg"] = adversarial(self._d_logits(pred1_trg.detach(), pred2_trg.detach()),
                                    train.target_label, weight_map.detach())
        loss["d_trg"].backward()

        fold_gradients(sum_params, second_params)
        self.remember(image_source=source["image"], seg_source=pred1_src + pred2_src,
                      image_target=target["image"], seg_target=pred1_trg + pred2_trg)
        return self.finish_step(loss, iteration)
