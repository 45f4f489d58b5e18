"""The losses of DADA, one function per equation of the paper (Vu et al., ICCV 2019, §3).

All functions are pure: they take tensors already upsampled to the input size (use
:func:`dada.models.upsample`, bilinear with ``align_corners=True``, as the official code) and return a
scalar tensor (or a map). Sizes are (H, W). Probabilities are softmax outputs over dim 1.

==========================  =========================  ===============================================
function                    paper                      official code (reference §2)
==========================  =========================  ===============================================
:func:`seg_ce`              eq. (1)                    ``cross_entropy_2d``
:func:`berhu`               eq. (2)–(3)                ``loss_calc_depth``
:func:`self_information`    eq. (5)                    ``prob_2_entropy``
:func:`depth_aware_map`     eq. (5)–(7), DADA fusion   ``prob_2_entropy(...) * depth``
:func:`adversarial_bce`     eq. (6)–(7)                ``bce_loss``
:func:`entropy`             MinEnt baseline (ADVENT)   ``entropy_loss``
==========================  =========================  ===============================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dada.data.classes import IGNORE_INDEX

#: Domain labels of the official code (the paper uses the opposite convention; equivalent up to sign).
SOURCE_LABEL = 0
TARGET_LABEL = 1
_LOG_EPS = 1e-30  # the official epsilon inside log2(p + eps)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (autocast) are computed in fp32; fp32 and fp64 keep their precision (fp64
    is how tests compare a loop with the official one free of rounding, tests/official_loop.py)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def seg_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Eq. (1): pixel-wise cross-entropy, mean over pixels whose label is neither ``ignore_index`` nor
    negative.

    ``logits`` N×C×H×W, ``labels`` N×H×W (integer or float train ids). An image (or batch) without a
    valid pixel gives a zero loss with a zero gradient instead of the official NaN.
    """
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if logits.dim() != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"seg_ce expects logits N×C×H×W and labels N×H×W of the same N, H, W; got "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    labels = labels.long()
    labels = labels.masked_fill(labels < 0, ignore_index)
    valid = (labels != ignore_index).sum()
    total = F.cross_entropy(_at_least_fp32(logits), labels, ignore_index=ignore_index, reduction="sum")
    return total / valid.clamp(min=1)


def berhu(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (2)–(3): reverse Huber loss on (inverse) depth, mean over pixels.

    r = |pred − target|, c = 0.2·max(r) over the whole batch, held constant (detached, as the official
    ``.item()``); loss(r) = r if r ≤ c else (r² + c²)/(2c). Without ``mask`` (the official behaviour)
    every pixel counts; with a boolean ``mask`` of the same shape only its pixels count (non-finite
    targets outside the mask are harmless). When c = 0 every residual is 0 and so is the loss.
    """
    if pred.shape != target.shape:
        raise ValueError(f"berhu expects pred and target of the same shape; got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    pred = _at_least_fp32(pred)
    target = _at_least_fp32(target)
    if mask is None:
        residual = (pred - target).abs()
        count = residual.new_tensor(float(residual.numel()))
    else:
        if mask.shape != pred.shape:
            raise ValueError(f"berhu mask must have the prediction's shape {tuple(pred.shape)}, "
                             f"got {tuple(mask.shape)}")
        mask = mask.bool()
        safe_target = torch.where(mask, target, torch.zeros_like(target))
        residual = torch.where(mask, (pred - safe_target).abs(), torch.zeros_like(pred))
        count = mask.sum().clamp(min=1).to(residual.dtype)
    c = 0.2 * residual.detach().max()
    quadratic = (residual.square() + c.square()) / (2.0 * c.clamp(min=torch.finfo(c.dtype).tiny))
    per_pixel = torch.where(residual <= c, residual, quadratic)
    return per_pixel.sum() / count


def self_information(probabilities: torch.Tensor) -> torch.Tensor:
    """Eq. (5): per-class weighted self-information I = −p·log2(p)/log2(C), N×C×H×W.

    Takes **probabilities** (softmax over dim 1), not logits. Normalised by log2(C) so that Σ_c I ∈
    [0, 1]; computed in float32 (the 1e-30 epsilon would vanish in half precision).
    """
    if probabilities.dim() != 4:
        raise ValueError(f"self_information expects N×C×H×W probabilities, got {tuple(probabilities.shape)}")
    p = _at_least_fp32(probabilities)
    return -p * torch.log2(p + _LOG_EPS) / math.log2(p.shape[1])


def depth_aware_map(self_info: torch.Tensor, inverse_depth: torch.Tensor) -> torch.Tensor:
    """DADA fusion (the discriminator input of eq. (6)–(7)): self-information ⊙ predicted inverse depth.

    ``self_info`` N×C×H×W, ``inverse_depth`` N×1×H×W broadcast over the classes; the raw prediction, not
    normalised. Detach both for the discriminator step; keep the graph in the segmenter step so that the
    adversarial gradient reaches the depth head.
    """
    if inverse_depth.dim() != 4 or inverse_depth.shape[1] != 1 or \
            inverse_depth.shape[2:] != self_info.shape[2:] or inverse_depth.shape[0] != self_info.shape[0]:
        raise ValueError(f"depth_aware_map expects self-information N×C×H×W and inverse depth N×1×H×W; "
                         f"got {tuple(self_info.shape)} and {tuple(inverse_depth.shape)}")
    return self_info * _at_least_fp32(inverse_depth)


def adversarial_bce(logits: torch.Tensor, domain_label: int | float) -> torch.Tensor:
    """Eq. (6)–(7): binary cross-entropy with logits against a constant map of ``domain_label``
    (:data:`SOURCE_LABEL` = 0, :data:`TARGET_LABEL` = 1), mean over all elements."""
    logits = _at_least_fp32(logits)
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(domain_label)))


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """MinEnt (ADVENT): −Σ p·log2(p) / (N·H·W·log2 C), from **probabilities** N×C×H×W."""
    if probabilities.dim() != 4:
        raise ValueError(f"entropy expects N×C×H×W probabilities, got {tuple(probabilities.shape)}")
    n, c, h, w = probabilities.shape
    p = _at_least_fp32(probabilities)
    return -(p * torch.log2(p + _LOG_EPS)).sum() / (n * h * w * math.log2(c))
