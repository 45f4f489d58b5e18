"""Writers of single samples in the datasets' real on-disk formats (used by tests and benchmarks).

Each writer takes arrays and writes the files where and how the real dataset has them, atomically:

* SYNTHIA-RAND-CITYSCAPES: ``RGB/<name>`` 8-bit RGB PNG; ``GT/LABELS/<name>`` 16-bit 3-channel PNG with
  the class id in the first channel (RGB order) and the instance id in the second; or
  ``parsed_LABELS/<name>`` 8-bit single-channel raw ids; ``Depth/<name>`` (or ``Depth/Depth/<name>``)
  16-bit 3-channel PNG.
* Cityscapes: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``, ``gtFine/.../<stem>_gtFine_labelIds.png``
  (8-bit labelIds), ``disparity/.../<stem>_disparity.png`` (16-bit, p = 256·d + 1, 0 invalid).
* Mapillary Vistas: ``<split>/images/<key>.jpg`` and ``<split>/labels/<key>.png`` (palette PNG of ids).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dada.errors import DadaError
from dada.io import atomic_path, write_image


def _save_pil(path: Path, image: Image.Image, **params) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format=params.pop("format", None) or _pil_format(path), **params)


def _pil_format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower(), "PNG")


def write_rgb(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """An 8-bit RGB image (PNG, or JPEG by extension)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    params = {"quality": quality} if _pil_format(Path(path)) == "JPEG" else {}
    _save_pil(Path(path), Image.fromarray(rgb, "RGB"), **params)


def synthia_label_png(class_ids: np.ndarray, instance_ids: np.ndarray | None = None) -> np.ndarray:
    """The raw ``GT/LABELS`` array in OpenCV's BGR order: R = class id, G = instance id, B = 0 (16 bit)."""
    class_ids = np.asarray(class_ids, dtype=np.uint16)
    out = np.zeros(class_ids.shape + (3,), dtype=np.uint16)
    out[:, :, 2] = class_ids
    if instance_ids is not None:
        out[:, :, 1] = np.asarray(instance_ids, dtype=np.uint16)
    return out


def depth_png(depth: np.ndarray) -> np.ndarray:
    """A 16-bit 3-channel depth PNG array: an H×W array is copied to the three channels (so OpenCV's
    ANYDEPTH grayscale returns it exactly); an H×W×3 array (BGR) is written as given."""
    depth = np.asarray(depth)
    if depth.ndim == 2:
        depth = np.repeat(depth[:, :, None], 3, axis=2)
    if depth.min() < 0 or depth.max() > 65535:
        raise DadaError("SYNTHIA depth values must lie in 0..65535")
    return depth.astype(np.uint16)


def write_synthia(root: str | os.PathLike, name: str, rgb: np.ndarray, class_ids: np.ndarray,
                  depth: np.ndarray | None = None, *, instance_ids: np.ndarray | None = None,
                  labels: str = "raw", depth_folder: str = "Depth") -> None:
    """One SYNTHIA-RAND-CITYSCAPES sample. ``labels``: 'raw' (``GT/LABELS``) or 'parsed'
    (``parsed_LABELS``); ``depth_folder``: 'Depth' or 'Depth/Depth'."""
    root = Path(root)
    write_rgb(root / "RGB" / name, rgb)
    if labels == "raw":
        write_image(root / "GT" / "LABELS" / name, synthia_label_png(class_ids, instance_ids))
    elif labels == "parsed":
        write_image(root / "parsed_LABELS" / name, np.asarray(class_ids, dtype=np.uint8))
    else:
        raise DadaError(f"labels must be 'raw' or 'parsed', got {labels!r}")
    if depth is not None:
        write_image(root / depth_folder / name, depth_png(depth))


def write_cityscapes(root: str | os.PathLike, split: str, city: str, stem: str, rgb: np.ndarray,
                     label_ids: np.ndarray | None = None, disparity_png: np.ndarray | None = None) -> str:
    """One Cityscapes sample (``stem`` such as ``aachen_000000_000019``); returns the image's name
    relative to ``leftImg8bit/<split>/``."""
    root = Path(root)
    name = f"{city}/{stem}_leftImg8bit.png"
    write_rgb(root / "leftImg8bit" / split / name, rgb)
    if label_ids is not None:
        write_image(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                    np.asarray(label_ids, dtype=np.uint8))
    if disparity_png is not None:
        write_image(root / "disparity" / split / city / f"{stem}_disparity.png",
                    np.asarray(disparity_png, dtype=np.uint16))
    return name


def mapillary_palette() -> list[int]:
    """A 256-entry palette for Mapillary label PNGs (the colours do not matter to readers: ids do)."""
    rng = np.random.default_rng(65)
    return rng.integers(0, 256, size=256 * 3).astype(np.uint8).tolist()


def write_mapillary(root: str | os.PathLike, split: str, key: str, rgb: np.ndarray,
                    label_ids: np.ndarray | None = None, quality: int = 95) -> None:
    """One Mapillary Vistas sample: ``<split>/images/<key>.jpg`` and a palette ``labels/<key>.png``."""
    root = Path(root)
    write_rgb(root / split / "images" / f"{key}.jpg", rgb, quality=quality)
    if label_ids is not None:
        label = Image.fromarray(np.asarray(label_ids, dtype=np.uint8), "P")
        label.putpalette(mapillary_palette())
        _save_pil(root / split / "labels" / f"{key}.png", label)


def write_png16(path: str | os.PathLike, array: np.ndarray) -> None:
    """A 16-bit PNG (1 or 3 channels, BGR order for 3) through OpenCV, atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint16:
        raise DadaError(f"write_png16 needs uint16 data, got {array.dtype}")
    write_image(path, array)

