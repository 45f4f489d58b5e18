"""Image preprocessing (``caffe`` | ``imagenet`` | ``lite``), its inverse, resizing as the official
loaders, and optional augmentations.

Resizing uses the libraries the official DADA/ADVENT loaders use, so that the arrays are identical to
theirs: Pillow bicubic for images, Pillow nearest for labels, OpenCV nearest for depth. Sizes are (H, W).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from dada.data.classes import IGNORE_INDEX
from dada.errors import DadaError

#: Caffe ImageNet mean in **BGR** order (the official ``IMG_MEAN``); pixels stay in [0, 255].
CAFFE_MEAN_BGR = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)
IMAGENET_MEAN_RGB = np.array((0.485, 0.456, 0.406), dtype=np.float32)
IMAGENET_STD_RGB = np.array((0.229, 0.224, 0.225), dtype=np.float32)
#: EfficientNet-Lite (TF-Lite reference): RGB, (x − 127) / 128.
LITE_MEAN, LITE_SCALE = np.float32(127.0), np.float32(128.0)
PREPROCESS_MODES = ("caffe", "imagenet", "lite")


def check_mode(mode: str) -> str:
    if mode not in PREPROCESS_MODES:
        raise DadaError(f"unknown preprocess mode {mode!r} (data.preprocess / --preprocess): use 'caffe' "
                        f"(official checkpoints, the paper, ResNet and VGG), 'imagenet' (torchvision) or "
                        f"'lite' (EfficientNet-Lite)")
    return mode


def preprocess_image(rgb_uint8: np.ndarray, mode: str = "caffe") -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×H×W float32 tensor.

    ``caffe``: RGB→BGR, minus the Caffe mean (BGR), no /255, no std: the official pipeline.
    ``imagenet``: RGB, /255, minus mean, divided by std (torchvision convention).
    ``lite``: RGB, (x − 127) / 128 (what the EfficientNet-Lite ImageNet weights expect).
    """
    check_mode(mode)
    rgb = np.asarray(rgb_uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DadaError(f"preprocess_image expects an H×W×3 RGB array, got shape {rgb.shape}")
    # in place on one CHW float32 array: the same float32 operations, without large temporaries
    if mode == "caffe":
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[::-1]).astype(np.float32)
        image -= CAFFE_MEAN_BGR[:, None, None]
    elif mode == "lite":
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32)
        image -= LITE_MEAN
        image /= LITE_SCALE
    else:
        image = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32)
        image /= np.float32(255.0)
        image -= IMAGENET_MEAN_RGB[:, None, None]
        image /= IMAGENET_STD_RGB[:, None, None]
    return torch.from_numpy(image)


def denormalize(image_tensor: torch.Tensor | np.ndarray, mode: str = "caffe") -> np.ndarray:
    """Inverse of :func:`preprocess_image`: 3×H×W (or N×3×H×W) → H×W×3 (or N×H×W×3) uint8 RGB."""
    check_mode(mode)
    if isinstance(image_tensor, torch.Tensor):
        image = image_tensor.detach().to("cpu", torch.float32).numpy()
    else:
        image = np.asarray(image_tensor, dtype=np.float32)
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise DadaError(f"denormalize expects 3×H×W or N×3×H×W, got shape {image.shape}")
    image = np.moveaxis(image, -3, -1)  # ...×H×W×3
    if mode == "caffe":
        image = (image + CAFFE_MEAN_BGR)[..., ::-1]
    elif mode == "lite":
        image = image * LITE_SCALE + LITE_MEAN
    else:
        image = (image * IMAGENET_STD_RGB + IMAGENET_MEAN_RGB) * np.float32(255.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- resizing
def resize_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Pillow bicubic resize to (H, W), as the official ``_load_img`` (a no-op at the same size)."""
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.BICUBIC)


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow nearest resize of an H×W integer label array to (H, W)."""
    height, width = size
    if label.shape == (height, width):
        return label
    return np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """OpenCV nearest resize (``INTER_NEAREST``, as the official ``get_depth``) to (H, W)."""
    height, width = size
    if depth.shape[:2] == (height, width):
        return depth
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)


def letterbox_shape(image_hw: tuple[int, int], canvas: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of an image fitted inside ``canvas`` (H, W) keeping its aspect ratio, as the official
    Mapillary ``resize_with_pad``: the side that limits is set exactly, the other truncated with int()."""
    height, width = image_hw
    canvas_h, canvas_w = canvas
    if width / height > canvas_w / canvas_h:
        return int(height * (canvas_w / width)), canvas_w
    return canvas_h, int(width * (canvas_h / height))


def paste_top_left(array: np.ndarray, canvas: tuple[int, int], fill: int) -> np.ndarray:
    """Paste ``array`` (H×W or H×W×C) at the top-left of a ``canvas`` (H, W) filled with ``fill``."""
    out = np.full(tuple(canvas) + array.shape[2:], fill, dtype=array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out


def pad_to_aspect(label: np.ndarray, aspect_w_over_h: float, fill: int) -> np.ndarray:
    """Pad bottom/right to the aspect ratio W/H, at the same resolution (official ``pad_with_fixed_AS``)."""
    height, width = float(label.shape[0]), float(label.shape[1])
    ratio = width / height
    if aspect_w_over_h > ratio:
        width = aspect_w_over_h * height
    elif aspect_w_over_h < ratio:
        height = width / aspect_w_over_h
    else:
        return label
    return paste_top_left(label, (int(height), int(width)), fill)


# ---------------------------------------------------------------------------------------- augmentation
AUGMENT_KEYS = ("scale", "crop", "flip")


def check_augment(augment: Mapping[str, Any] | None, where: str = "augment") -> dict[str, Any] | None:
    """Validate an augmentation spec: ``{"scale": [lo, hi], "crop": [H, W], "flip": bool}`` (each optional);
    ``where`` names it in messages (e.g. ``data.source.augment``).

    Off (None or empty) in the paper presets: the official code uses no augmentation.
    """
    if not augment:
        return None
    augment = dict(augment)
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise DadaError(f"unknown augmentation key(s) {unknown} in {where}: use {list(AUGMENT_KEYS)}")
    scale = augment.get("scale")
    if scale is not None:
        if len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
            raise DadaError(f"{where}.scale must be [low, high] with 0 < low <= high, got {list(scale)}")
        augment["scale"] = (float(scale[0]), float(scale[1]))
    crop = augment.get("crop")
    if crop is not None:
        if len(crop) != 2 or min(int(c) for c in crop) <= 0:
            raise DadaError(f"{where}.crop must be [H, W] with positive sizes, got {list(crop)}")
        augment["crop"] = (int(crop[0]), int(crop[1]))
    augment["flip"] = bool(augment.get("flip", False))
    return augment


def apply_augment(rng: np.random.Generator, augment: dict[str, Any], image: np.ndarray,
                  label: np.ndarray | None, depth: np.ndarray | None):
    """Random scale, crop and horizontal flip applied alike to the image (H×W×3 uint8), label and depth
    (same size as the image). Crops larger than the image are padded: image 0 (before preprocessing, as
    the official Mapillary letterbox), label ``IGNORE_INDEX``, depth its farthest value (smallest inverse
    depth) so that no NaN enters a depth loss."""
    if augment.get("scale"):
        low, high = augment["scale"]
        factor = float(rng.uniform(low, high))
        height = max(1, int(round(image.shape[0] * factor)))
        width = max(1, int(round(image.shape[1] * factor)))
        image = np.asarray(resize_image(Image.fromarray(image), (height, width)))
        if label is not None:
            label = resize_label(label, (height, width))
        if depth is not None:
            depth = resize_depth(depth, (height, width))
    if augment.get("crop"):
        crop_h, crop_w = augment["crop"]
        pad_h, pad_w = max(0, crop_h - image.shape[0]), max(0, crop_w - image.shape[1])
        if pad_h or pad_w:
            canvas = (image.shape[0] + pad_h, image.shape[1] + pad_w)
            image = paste_top_left(image, canvas, 0)
            if label is not None:
                label = paste_top_left(label, canvas, IGNORE_INDEX)
            if depth is not None:
                far = np.nanmin(depth) if np.isfinite(depth).any() else np.nan
                depth = paste_top_left(depth, canvas, far)
        top = int(rng.integers(0, image.shape[0] - crop_h + 1))
        left = int(rng.integers(0, image.shape[1] - crop_w + 1))
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        image = image[window]
        label = None if label is None else label[window]
        depth = None if depth is None else depth[window]
    if augment.get("flip") and rng.random() < 0.5:
        image = image[:, ::-1]
        label = None if label is None else label[:, ::-1]
        depth = None if depth is None else depth[:, ::-1]
    contiguous = [None if a is None else np.ascontiguousarray(a) for a in (image, label, depth)]
    return tuple(contiguous)
