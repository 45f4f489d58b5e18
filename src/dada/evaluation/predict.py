"""``dada predict``: segmentation and depth on one's own images.

For each input image: ``<name>_seg.png`` (official palette, at the image's resolution), ``<name>_overlay.png``
(the segmentation blended on the image) and, for models with a depth head, ``<name>_depth.png`` (predicted
inverse depth, bright = near). Images are read with OpenCV, resized (Pillow bicubic, as the official
loaders) to the model's input size and preprocessed as in training; logits and depth are upsampled
(bilinear, ``align_corners=True``) back to the image's size. An unreadable file is skipped with a warning
that names it; the others are processed.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from dada.devices import resolve_device
from dada.errors import DadaError
from dada.evaluation.evaluator import model_outputs
from dada.evaluation.figures import colorize, depth_to_rgb, overlay, save_rgb
from dada.models.segmenter import upsample

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
#: Official test input size (H, W) for Cityscapes, used for official state dicts (no config inside).
OFFICIAL_INPUT_SIZE = (512, 1024)
#: The official Mapillary canvas (H, W) into which images are letterboxed.
MAPILLARY_CANVAS = (768, 1024)


def gather_inputs(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """``(path, output name)`` of every image named by ``inputs``: files, folders (recursively, sorted,
    image extensions) or glob patterns. Output names are unique: a folder's images keep their relative
    path (``/`` → ``__``), duplicates get ``_2``, ``_3``, …"""
    found: list[tuple[Path, str]] = []
    for entry in inputs:
        text = str(entry)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            found += [(p, "__".join(p.relative_to(path).with_suffix("").parts)) for p in files]
        elif path.is_file():
            found.append((path, path.stem))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise DadaError(f"no file matches {text!r}")
            found += [(p, p.stem) for p in matches]
        else:
            raise DadaError(f"{text}: no such file or folder; give image files, folders or glob patterns")
    if not found:
        raise DadaError(f"no images found in {', '.join(map(str, inputs))} (extensions: "
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    names: dict[str, int] = {}
    unique = []
    for path, name in found:
        count = names.get(name, 0) + 1
        names[name] = count
        unique.append((path, name if count == 1 else f"{name}_{count}"))
    return unique


def read_image_rgb(path: Path) -> np.ndarray | None:
    """H×W×3 uint8 RGB, or None when the file cannot be decoded."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3:
        return None
    return np.ascontiguousarray(image[..., ::-1])


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Create ``out_dir``; an existing non-empty folder is an error unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DadaError(f"{out_dir} exists and is not a folder: choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DadaError(f"output folder {out_dir} exists and is not empty: choose another one or pass "
                        f"--overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def predict_images(model: torch.nn.Module, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
                   num_classes: int, preprocess: str = "caffe",
                   size: Sequence[int] | None = OFFICIAL_INPUT_SIZE, batch_size: int = 1,
                   device: str | torch.device = "cpu", overwrite: bool = False, alpha: float = 0.5,
                   letterbox: bool = False, progress: bool = True,
                   warn: Callable[[str], None] = _warn) -> dict:
    """Predict every image of ``inputs`` and write its PNGs into ``out_dir``.

    ``size`` (H, W): the model's input size (None: each image's own size); ``letterbox``: fit the image
    into ``size`` keeping its aspect ratio, top-left, padded with 0 (the official Mapillary input), and
    crop the prediction back. Images are batched by ``batch_size`` (consecutive images of one input
    size). Returns ``{"written": [paths],
    "skipped": [{"path", "reason"}], "images": n}``.
    """
    from PIL import Image

    from dada.data.transforms import letterbox_shape, paste_top_left, preprocess_image, resize_image

    device = torch.device(device)
    out_resolved = Path(out_dir).resolve()
    # never read back our own outputs (an output folder inside an input folder)
    files = [(p, n) for p, n in gather_inputs(inputs) if out_resolved not in p.resolve().parents]
    if not files:
        raise DadaError(f"no input images outside the output folder {out_dir}")
    out_dir = prepare_output_dir(out_dir, overwrite)
    model.eval().to(device)
    written: list[Path] = []
    skipped: list[dict] = []
    batch: list[tuple[str, np.ndarray, torch.Tensor, tuple[int, int] | None]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="predict", unit="img", dynamic_ncols=True)

    def flush() -> None:
        if not batch:
            return
        with torch.inference_mode():
            seg, depth = model_outputs(model, torch.stack([entry[2] for entry in batch]).to(device))
        if seg.shape[1] != num_classes:
            raise DadaError(f"the model predicts {seg.shape[1]} classes, not {num_classes}")
        for index, (name, rgb, _, fitted) in enumerate(batch):
            hw = rgb.shape[:2]
            logits, inverse_depth = seg[index:index + 1].float(), None
            if depth is not None:
                inverse_depth = depth[index:index + 1].float()
            if fitted is not None:  # letterboxed: the image's part of the canvas, then its own size
                canvas = tuple(size)
                logits = upsample(logits, canvas)[..., : fitted[0], : fitted[1]]
                if inverse_depth is not None:
                    inverse_depth = upsample(inverse_depth, canvas)[..., : fitted[0], : fitted[1]]
            pred = upsample(logits, hw).argmax(1)[0].cpu().numpy()
            seg_rgb = colorize(pred, num_classes)
            written.append(save_rgb(out_dir / f"{name}_seg.png", seg_rgb))
            written.append(save_rgb(out_dir / f"{name}_overlay.png", overlay(rgb, seg_rgb, alpha)))
            if inverse_depth is not None:
                inverse = upsample(inverse_depth, hw)[0, 0].cpu().numpy()
                written.append(save_rgb(out_dir / f"{name}_depth.png", depth_to_rgb(inverse)))
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    try:
        for path, name in files:
            rgb = read_image_rgb(path)
            if rgb is None:
                skipped.append({"path": str(path), "reason": "not a readable image"})
                message = f"skipping {path}: not a readable image"
                if bar is not None:
                    bar.write(f"warning: {message}", file=sys.stderr)
                    bar.update(1)
                else:
                    warn(message)
                continue
            fitted = None
            if size is None:
                image = rgb
            elif letterbox:
                fitted = letterbox_shape(rgb.shape[:2], tuple(size))
                image = paste_top_left(np.asarray(resize_image(Image.fromarray(rgb), fitted)), tuple(size), 0)
            else:
                image = np.asarray(resize_image(Image.fromarray(rgb), tuple(size)))
            tensor = preprocess_image(image, preprocess)
            if batch and tuple(batch[0][2].shape) != tuple(tensor.shape):
                flush()
            batch.append((name, rgb, tensor, fitted))
            if len(batch) >= max(1, int(batch_size)):
                flush()
        flush()
    finally:
        if bar is not None:
            bar.close()
    return {"written": written, "skipped": skipped, "images": len(files) - len(skipped)}


def input_settings(info: dict) -> dict:
    """Preprocessing and input size of a loaded checkpoint: from its config (``data.preprocess``,
    ``data.val.size``, else ``data.target.size``; letterboxed when that dataset is Mapillary, default
    768×1024), or the official defaults (caffe, 512×1024)."""
    config = info.get("config") or {}
    data = config.get("data") or {}
    size, letterbox = OFFICIAL_INPUT_SIZE, False
    for part in ("val", "target"):
        part_cfg = data.get(part) or {}
        if "size" in part_cfg:
            size = part_cfg["size"]
            letterbox = part_cfg.get("name") == "mapillary"
            if letterbox and size is None:
                size = MAPILLARY_CANVAS
            break
    return {"preprocess": data.get("preprocess", "caffe"),
            "size": tuple(int(s) for s in size) if size is not None else None,
            "letterbox": letterbox, "num_classes": int(info["model_spec"]["num_classes"])}


def predict_checkpoint(checkpoint: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                       out_dir: str | os.PathLike, *, batch_size: int = 1, device: str = "auto",
                       size: Sequence[int] | None | str = "config", preprocess: str | None = None,
                       overwrite: bool = False, progress: bool = True) -> dict:
    """Load a run folder / our checkpoint / an official DADA state dict and run :func:`predict_images`.
    ``size`` (H, W; None: each image's own size) and ``preprocess`` override the checkpoint's settings."""
    from dada.models import load_segmenter

    device = resolve_device(device)
    gather_inputs(inputs)  # fail on bad inputs before loading weights
    model, info = load_segmenter(checkpoint, map_location=device)
    settings = input_settings(info)
    if size != "config":
        settings["size"] = tuple(size) if size is not None else None
    if preprocess is not None:
        settings["preprocess"] = preprocess
    result = predict_images(model, inputs, out_dir, num_classes=settings["num_classes"],
                            preprocess=settings["preprocess"], size=settings["size"], batch_size=batch_size,
                            letterbox=settings["letterbox"] and settings["size"] is not None, device=device,
                            overwrite=overwrite, progress=progress)
    return {**result, "settings": settings, "checkpoint": info.get("source")}
