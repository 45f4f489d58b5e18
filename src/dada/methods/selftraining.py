"""The pieces that self-training methods (DACS, ``dast``) share, as pure tensor functions.

Every piece re-states the official code (``vikolss/DACS`` at cc6a87f, ``lhoyer/DAFormer`` at e6f6e04,
the DepthMix ``ssda`` branch of ``lhoyer/improving_segmentation_with_selfsupervised_depth``) and is
checked against it in ``tests/test_methods_dacs.py`` with the same tensors in and out. The official code
draws its random numbers from Python's ``random``, NumPy and kornia's global torch stream; here every
draw comes from an explicit :class:`torch.Generator` (:class:`Streams`), so a run's mixing is saved in
its checkpoints and a resumed run draws the same numbers.

The colour jitter and Gaussian blur re-state kornia 0.5.8 (DAFormer's ``requirements.txt``; DACS pins
no version), Apache-2.0: ``kornia.augmentation.ColorJitter`` (additive brightness, multiplicative
contrast, HSV saturation and hue, a random order of the four) and ``kornia.filters.GaussianBlur2d``
(reflect padding, a 2-D kernel from two normalised 1-D Gaussians).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dada.data.classes import IGNORE_INDEX
from dada.data.transforms import CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, LITE_MEAN, LITE_SCALE


# ------------------------------------------------------------------------------------- random streams
class Streams:
    """Named CPU :class:`torch.Generator` streams, one per kind of draw, seeded from the run's seed.

    One stream per kind keeps the draws of one piece independent of whether another piece is switched
    on (e.g. the blur's σ does not shift when the jitter is off)."""

    NAMES = ("classes", "jitter", "blur", "margin")

    def __init__(self, seed: int):
        self.generators = {}
        for k, name in enumerate(self.NAMES):
            generator = torch.Generator()
            generator.manual_seed(int(seed) * 7919 + 104729 * (k + 1))
            self.generators[name] = generator

    def __getitem__(self, name: str) -> torch.Generator:
        return self.generators[name]

    def uniform(self, name: str, low: float = 0.0, high: float = 1.0) -> float:
        """One draw of U(low, high) (``random.uniform`` / ``np.random.uniform`` in the official code)."""
        return low + (high - low) * float(torch.rand((), generator=self.generators[name],
                                                     dtype=torch.float64))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: g.get_state() for name, g in self.generators.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, generator in self.generators.items():
            generator.set_state(state[name])


# ---------------------------------------------------------------------------------------- EMA teacher
def make_teacher(student: nn.Module) -> nn.Module:
    """The teacher at iteration 0: a copy of the student (DACS ``create_ema_model``, trainUDA.py L89-99;
    DAFormer ``_init_ema_weights``), frozen (``requires_grad`` off, in no optimizer). The copy includes
    the BatchNorm buffers; DACS copies only ``parameters()`` into a fresh network (its running
    statistics start at 0/1), which matters only to an eval-mode teacher, something DACS never runs."""
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    return teacher


def ema_alpha(iteration: int, alpha: float) -> float:
    """a_i = min(1 − 1/(i + 1), α): the "true" average until the exponential one is more correct
    (DACS trainUDA.py L113, DAFormer dacs.py L105)."""
    return min(1 - 1 / (iteration + 1), alpha)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, iteration: int, alpha: float) -> float:
    """θ_t ← a_i·θ_t + (1 − a_i)·θ_s over ``parameters()`` only (BatchNorm buffers are not averaged), in
    the official arithmetic order (DACS trainUDA.py L119-121). Returns a_i."""
    a = ema_alpha(iteration, alpha)
    for ema_param, param in zip(teacher.parameters(), student.parameters(), strict=True):
        ema_param.copy_(a * ema_param + (1 - a) * param)
    return a


def teacher_mode_(teacher: nn.Module) -> nn.Module:
    """The official teacher's mode: ``train()`` (DACS trainUDA.py L265; BatchNorm in train mode uses the
    batch statistics and updates the teacher's own running statistics) with Dropout switched off
    (DAFormer dacs.py L264-267). A backbone built with ``bn_mode="frozen"`` keeps its BatchNorm in eval
    mode as in the student."""
    teacher.train()
    for module in teacher.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.training = False
    return teacher


# ------------------------------------------------------------------------------------- pseudo-labels
def pseudo_labels(teacher_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Argmax of the teacher's softmax, its max probability, and the pseudo-label weight
    q = #(max-prob ≥ threshold) / #pixels: ONE scalar for the whole batch, as the code computes it
    (DACS trainUDA.py L421-422 and L467: ``np.size`` of the batch's targets; DAFormer dacs.py
    L272-276)."""
    probs = torch.softmax(teacher_logits.detach(), dim=1)
    max_probs, labels = torch.max(probs, dim=1)
    weight = torch.sum(max_probs.ge(threshold).long() == 1).item() / max_probs.numel()
    return labels, max_probs, weight


def pseudo_weight_map(weight: float, shape: tuple[int, ...], device: torch.device, ignore_top: int = 0,
                      ignore_bottom: int = 0) -> torch.Tensor:
    """N×H×W of ``weight``; DAFormer's pseudo-label crop sets the top and bottom rows to 0 (dacs.py
    L280-286; its DAFormer recipe: 15 and 120 rows at 512×1024)."""
    out = weight * torch.ones(shape, device=device)
    if ignore_top > 0:
        out[:, :ignore_top, :] = 0
    if ignore_bottom > 0:
        out[:, -ignore_bottom:, :] = 0
    return out


# ------------------------------------------------------------------------------------------ ClassMix
def choose_classes(classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """⌈n/2⌉ of the n ``classes`` without replacement (DACS trainUDA.py L430:
    ``np.random.choice(n, int((n + n % 2) / 2), replace=False)``), drawn from ``generator``."""
    n = classes.shape[0]
    chosen = torch.randperm(n, generator=generator)[: (n + n % 2) // 2]
    return classes[chosen.to(classes.device)]


def class_mask(label: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """H×W bool: the pixels of ``label`` (H×W) whose class is one of ``classes``
    (``transformmasks.generate_class_mask``: ``label.eq(classes).sum(0)``)."""
    return label.unsqueeze(0).eq(classes.view(-1, 1, 1)).any(0)


def class_mix_masks(labels: torch.Tensor, generator: torch.Generator, *, batch_classes: bool = False,
                    include_ignore: bool = True) -> torch.Tensor:
    """N×H×W bool ClassMix masks from the source labels (N×H×W).

    DACS (trainUDA.py L425-435) draws each image's classes from ``torch.unique`` of that image's label,
    255 included (the line that would drop it is commented out, L427). ``batch_classes`` is DAFormer's
    ``get_class_masks`` (dacs_transforms.py L93): the classes of the whole batch, kept by its authors
    (DAFormer#19). ``include_ignore=False`` draws only real classes (the paper's description)."""
    masks = []
    for label in labels:
        classes = torch.unique(labels if batch_classes else label)
        if not include_ignore:
            classes = classes[classes != IGNORE_INDEX]
        masks.append(class_mask(label, choose_classes(classes, generator)))
    return torch.stack(masks)


def one_mix(mask: torch.Tensor, pasted: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """M·pasted + (1 − M)·base for a 0/1 mask (``transformsgpu.oneMix``); the mask broadcasts over
    channels. With M ∈ {0, 1} this is exactly ``torch.where``."""
    if pasted.dim() == mask.dim() + 1:
        mask = mask.unsqueeze(-3)
    return torch.where(mask, pasted, base)


# ------------------------------------------------------------------------- colour jitter, Gaussian blur
def to_unit(image: torch.Tensor, mode: str) -> torch.Tensor:
    """A preprocessed image (``dada.data.transforms.preprocess_image``) in [0, 1], channels kept in the
    network's order (BGR for caffe, as DACS: trainUDA.py L127 passes ``IMG_MEAN`` and kornia sees BGR)."""
    if mode == "caffe":
        return (image + torch.as_tensor(CAFFE_MEAN_BGR, device=image.device).view(-1, 1, 1)) / 255
    if mode == "lite":
        return (image * float(LITE_SCALE) + float(LITE_MEAN)) / 255
    mean = torch.as_tensor(IMAGENET_MEAN_RGB, device=image.device).view(-1, 1, 1)
    std = torch.as_tensor(IMAGENET_STD_RGB, device=image.device).view(-1, 1, 1)
    return image * std + mean


def from_unit(image: torch.Tensor, mode: str) -> torch.Tensor:
    """The inverse of :func:`to_unit`."""
    if mode == "caffe":
        return (image * 255 - torch.as_tensor(CAFFE_MEAN_BGR, device=image.device).view(-1, 1, 1)).float()
    if mode == "lite":
        return (image * 255 - float(LITE_MEAN)) / float(LITE_SCALE)
    mean = torch.as_tensor(IMAGENET_MEAN_RGB, device=image.device).view(-1, 1, 1)
    std = torch.as_tensor(IMAGENET_STD_RGB, device=image.device).view(-1, 1, 1)
    return (image - mean) / std


@dataclass
class JitterParams:
    """One image's colour-jitter draw (kornia 0.5.8 ``random_color_jitter_generator``)."""

    brightness: float  # factor in [max(0, 1 − s), 1 + s]; applied additively as factor − 1
    contrast: float  # factor in [max(0, 1 − s), 1 + s]
    saturation: float  # factor in [max(0, 1 − s), 1 + s]
    hue: float  # in [−s, s] turns; applied as hue · 2π radians
    order: tuple[int, ...]  # a permutation of (brightness, contrast, saturation, hue) = (0, 1, 2, 3)


def sample_jitter(strength: float, generator: torch.Generator) -> JitterParams:
    """kornia's ``ColorJitter(brightness=s, contrast=s, saturation=s, hue=s)`` ranges (``_range_bound``:
    centre 1 clamped to [0, 2] for brightness, centre 0 clamped to [−0.5, 0.5] for hue)."""
    low = max(0.0, 1.0 - strength)
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    return JitterParams(brightness=low + (min(2.0, 1.0 + strength) - low) * u[0],
                        contrast=low + (1.0 + strength - low) * u[1],
                        saturation=low + (1.0 + strength - low) * u[2],
                        hue=-min(strength, 0.5) + 2 * min(strength, 0.5) * u[3],
                        order=tuple(torch.randperm(4, generator=generator).tolist()))


def rgb_to_hsv(image: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """kornia 0.5.8 ``color.rgb_to_hsv``: H in [0, 2π), S and V in [0, 1]."""
    maxc, _ = image.max(-3)
    maxc_mask = image == maxc.unsqueeze(-3)
    _, max_indices = ((maxc_mask.cumsum(-3) == 1) & maxc_mask).max(-3)
    minc = image.min(-3)[0]
    v = maxc
    deltac = maxc - minc
    s = deltac / (v + eps)
    deltac = torch.where(deltac == 0, torch.ones_like(deltac), deltac)
    maxc_tmp = maxc.unsqueeze(-3) - image
    rc, gc, bc = maxc_tmp[..., 0, :, :], maxc_tmp[..., 1, :, :], maxc_tmp[..., 2, :, :]
    h = torch.stack([bc - gc, 2.0 * deltac + rc - bc, 4.0 * deltac + gc - rc], dim=-3)
    h = torch.gather(h, dim=-3, index=max_indices[..., None, :, :]).squeeze(-3)
    h = h / deltac
    h = (h / 6.0) % 1.0
    h = 2 * math.pi * h
    return torch.stack([h, s, v], dim=-3)


def hsv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """kornia 0.5.8 ``color.hsv_to_rgb``."""
    h = image[..., 0, :, :] / (2 * math.pi)
    s, v = image[..., 1, :, :], image[..., 2, :, :]
    hi = torch.floor(h * 6) % 6
    f = ((h * 6) % 6) - hi
    one = torch.tensor(1.0, device=image.device)
    p, q, t = v * (one - s), v * (one - f * s), v * (one - (one - f) * s)
    hi = hi.long()
    indices = torch.stack([hi, hi + 6, hi + 12], dim=-3)
    out = torch.stack((v, q, p, p, t, v, t, v, v, q, p, p, p, p, t, v, v, q), dim=-3)
    return torch.gather(out, -3, indices)


def color_jitter(image: torch.Tensor, params: JitterParams) -> torch.Tensor:
    """kornia 0.5.8 ``ColorJitter.apply_transform`` on one C×H×W (or 1×C×H×W) image in [0, 1]."""
    def brightness(x):
        return torch.clamp(x + (params.brightness - 1), 0.0, 1.0)

    def contrast(x):
        return torch.clamp(x * params.contrast, 0.0, 1.0)

    def saturation(x):
        h, s, v = torch.chunk(rgb_to_hsv(x), chunks=3, dim=-3)
        return hsv_to_rgb(torch.cat([h, torch.clamp(s * params.saturation, min=0, max=1), v], dim=-3))

    def hue(x):
        h, s, v = torch.chunk(rgb_to_hsv(x), chunks=3, dim=-3)
        return hsv_to_rgb(torch.cat([torch.fmod(h + params.hue * 2 * math.pi, 2 * math.pi), s, v], dim=-3))

    transforms = (brightness, contrast, saturation, hue)
    for index in params.order:
        image = transforms[index](image)
    return image


def blur_kernel_size(n: int) -> int:
    """≈ 10 % of the side, made odd: ``floor(ceil(0.1·n) − 0.5 + ceil(0.1·n) % 2)``
    (DACS transformsgpu.py L23-24)."""
    c = math.ceil(0.1 * n)
    return int(math.floor(c - 0.5 + c % 2))


def gaussian_kernel1d(size: int, sigma: float) -> torch.Tensor:
    """kornia 0.5.8 ``filters.kernels.gaussian``."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    if size % 2 == 0:
        x = x + 0.5
    gauss = torch.exp(-x.pow(2.0) / (2 * sigma ** 2))
    return gauss / gauss.sum()


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """kornia 0.5.8 ``GaussianBlur2d((ky, kx), (σ, σ))`` (reflect border) on N×C×H×W, with the DACS
    kernel size per side (:func:`blur_kernel_size`)."""
    ky, kx = blur_kernel_size(image.shape[-2]), blur_kernel_size(image.shape[-1])
    kernel = torch.matmul(gaussian_kernel1d(ky, sigma).unsqueeze(-1),
                          gaussian_kernel1d(kx, sigma).unsqueeze(-1).t())
    kernel = kernel.to(image)
    n, c, h, w = image.shape
    padded = F.pad(image, [(kx - 1) // 2, kx // 2, (ky - 1) // 2, ky // 2], mode="reflect")
    weight = kernel.expand(c, 1, ky, kx)
    return F.conv2d(padded, weight, groups=c)


# ------------------------------------------------------------------------------ depth-ordered mixing
def normalise_depth(depth: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation of N×1×H×W inverse depth to [0, 1] (DepthMix ``ssda``
    train.py L913-917, ``depthmix_online_depth``); a constant image maps to 0."""
    flat = depth.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (depth - low) / (high - low).clamp_min(torch.finfo(depth.dtype).tiny)


def depth_discrepancy_weight(pred: torch.Tensor, reference: torch.Tensor,
                             floor: float = 1e-3) -> torch.Tensor:
    """CorDA's depth weight (``trainUDA_synthia.py``: ``relu(1 − diff/depth_u) + 1e-3``, clipped to
    [0, 1], 1 where the reference depth is invalid): ``relu(1 − |pred − ref| / ref) + floor`` per pixel,
    clipped to [0, 1]; 1 where ``ref`` is not a valid depth (non-finite or ≤ 0). No gradient."""
    pred, reference = pred.detach(), reference.detach()
    valid = torch.isfinite(reference) & (reference > 0)
    safe = torch.where(valid, reference, torch.ones_like(reference))
    score = torch.relu(1.0 - (pred - safe).abs() / safe) + floor
    return torch.where(valid, score.clamp(0.0, 1.0), torch.ones_like(score))


def depth_order_mask(source_depth: torch.Tensor, target_depth: torch.Tensor, margin: float,
                     foreground: float = 0.0) -> torch.Tensor:
    """DepthMix's occlusion test (``ssda`` train.py L758-767): a source pixel is in front where its
    normalised inverse depth (larger = nearer) is ≥ the target's minus the margin, and ≥ the foreground
    threshold f (0 in DepthMix). Inputs N×1×H×W, normalised; returns N×H×W bool."""
    front = torch.ge(source_depth, target_depth - margin) & torch.ge(source_depth, foreground)
    return front.squeeze(1)


# ---------------------------------------------------------------------- DAFormer's feature distance
@contextmanager
def captured_output(module: torch.nn.Module) -> Iterator[dict]:
    """``with captured_output(m) as box:`` keeps ``m``'s forward output in ``box["out"]``."""
    box: dict = {}
    handle = module.register_forward_hook(lambda _m, _i, out: box.__setitem__("out", out))
    try:
        yield box
    finally:
        handle.remove()


def downscale_label_ratio(label: torch.Tensor, scale: int, min_ratio: float, num_classes: int,
                          ignore_index: int = 255) -> torch.Tensor:
    """DAFormer's ``downscale_label_ratio`` (mmseg/utils/utils.py): N×H×W labels → N×(H/s)×(W/s), each cell
    its majority class when that class covers at least ``min_ratio`` of it, else ``ignore_index``."""
    if label.dim() == 4:
        label = label[:, 0]
    out = label.clone().long()
    out[out == ignore_index] = num_classes
    one_hot = F.one_hot(out, num_classes + 1).permute(0, 3, 1, 2).float()
    pooled = F.avg_pool2d(one_hot, kernel_size=scale)
    ratio, cells = pooled.max(dim=1)
    cells[cells == num_classes] = ignore_index
    cells[ratio < min_ratio] = ignore_index
    return cells
