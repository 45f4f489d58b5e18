"""``dada predict``: segmentation and depth on one's own images.

For each input image: ``<name>_seg.png`` (official palette, at the image's resolution), ``<name>_overlay.png``
(the segmentation blended on the image) and, for models with a depth head, ``<name>_depth.png`` (predicted
inverse depth, bright = near). Images are read with OpenCV, resized (Pillow bicubic, as the official
loaders) to the model's input size and preprocessed as in training; logits and depth are upsampled
(bilinear, ``align_corners=True``) back to the image's size. An unreadable file is skipped with a warning
that names it; the others are processed.

Videos (``.mp4``, ``.avi``, ``.mkv``, read with OpenCV) give ``<name>_overlay.mp4`` (MPEG-4 Part 2, the
video's frame rate and size): the segmentation blended on every frame, with the depth map side by side
when asked. Frames that fail to decode are skipped and reported by index; a video that cannot be opened at
all is an error before anything is written. The model is a PyTorch segmenter or an exported ONNX file run
by onnxruntime (:class:`~dada.deploy.export.OnnxSegmenter`, preprocessing from its metadata).

``classes`` (``dada predict --classes camvid11``) draws the prediction in another class set: each pixel's
class (the argmax over the model's classes) is replaced by the class it belongs to in that set, as the
evaluation merges it (:mod:`dada.evaluation.classmap`), and drawn with that set's palette; a 16-class model
on CamVid frames is then drawn as CamVid's 11 classes.
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
from dada.evaluation.inputs import MAPILLARY_CANVAS, OFFICIAL_INPUT_SIZE, input_settings  # noqa: F401 (re-exported)
from dada.models.segmenter import upsample

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv")
#: Output video codec: MPEG-4 Part 2 in an .mp4 (encodes with opencv-python-headless's own FFmpeg).
VIDEO_FOURCC = "mp4v"
#: A video whose reads fail this many times in a row is treated as ended (the rest is reported).
MAX_CONSECUTIVE_BAD_FRAMES = 50


def painter(num_classes: int, classes: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """H×W class ids of a ``num_classes``-class model → H×W×3 RGB: in the model's own palette, or (with
    ``classes``, a class-set name such as ``camvid11``) merged into that set and drawn in its palette."""
    from dada.data.classes import CLASS_SETS
    from dada.evaluation.classmap import class_map

    if classes is None:
        return lambda pred: colorize(pred, num_classes)
    by_name = {c.name: c for c in CLASS_SETS.values()}
    if classes not in by_name:
        raise DadaError(f"--classes {classes}: unknown class set; choose one of {', '.join(sorted(by_name))}")
    target = by_name[classes]
    try:
        merge = class_map(num_classes, target)
    except DadaError as error:
        raise DadaError(f"--classes {classes}: {error}") from None
    if merge is None:
        return lambda pred: colorize(pred, target)
    return lambda pred: colorize(merge.apply(torch.from_numpy(np.asarray(pred))).numpy(), target)



def gather_inputs(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """``(path, output name)`` of every image or video named by ``inputs``: files, folders (recursively,
    sorted, image and video extensions) or glob patterns. Output names are unique: a folder's files keep
    their relative path (``/`` → ``__``), duplicates get ``_2``, ``_3``, …"""
    found: list[tuple[Path, str]] = []
    for entry in inputs:
        text = str(entry)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
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
                        f"{', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)})")
    return unique_names(found)


def unique_names(found: Sequence[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Give every input its own output name: a name already taken (compared case-insensitively, as on
    macOS and Windows file systems) gets ``_2``, ``_3``, … — the first of those not taken either (a file
    may itself be called ``a_2``)."""
    used: set[str] = set()
    unique = []
    for path, name in found:
        candidate, count = name, 1
        while candidate.casefold() in used:
            count += 1
            candidate = f"{name}_{count}"
        used.add(candidate.casefold())
        unique.append((path, candidate))
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


Preprocess = str | Callable[[np.ndarray], torch.Tensor]


def prepare_input(rgb: np.ndarray, preprocess: Preprocess, size: Sequence[int] | None,
                  letterbox: bool) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """An H×W×3 uint8 RGB image → (the model's 3×h×w input, the fitted (h, w) when letterboxed).

    ``size`` (H, W): resized with Pillow bicubic (None: its own size); ``letterbox``: fitted into ``size``
    keeping its aspect ratio, top-left, padded with 0. ``preprocess``: a mode name or a function."""
    from PIL import Image

    from dada.data.transforms import letterbox_shape, paste_top_left, preprocess_image, resize_image

    fitted = None
    if size is None:
        image = rgb
    elif letterbox:
        fitted = letterbox_shape(rgb.shape[:2], tuple(size))
        image = paste_top_left(np.asarray(resize_image(Image.fromarray(rgb), fitted)), tuple(size), 0)
    else:
        image = np.asarray(resize_image(Image.fromarray(rgb), tuple(size)))
    tensor = preprocess(image) if callable(preprocess) else preprocess_image(image, preprocess)
    return tensor, fitted


def predict_batch(model: torch.nn.Module, tensors: Sequence[torch.Tensor], shapes: Sequence[tuple[int, int]],
                  fitted: Sequence[tuple[int, int] | None], *, size: Sequence[int] | None, num_classes: int,
                  device: torch.device) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """``(class map, inverse depth or None)`` at each image's own size (``shapes``, (H, W)) for a batch of
    inputs of one size: logits (and depth) cropped to the image's part of a letterbox canvas, upsampled
    bilinearly with ``align_corners=True``, argmax."""
    with torch.inference_mode():
        seg, depth = model_outputs(model, torch.stack(list(tensors)).to(device))
    if seg.shape[1] != num_classes:
        raise DadaError(f"the model predicts {seg.shape[1]} classes, not {num_classes}")
    results = []
    for index, (hw, fit) in enumerate(zip(shapes, fitted, strict=True)):
        logits = seg[index:index + 1].float()
        inverse_depth = None if depth is None else depth[index:index + 1].float()
        if fit is not None:  # letterboxed: the image's part of the canvas, then its own size
            canvas = tuple(size)
            logits = upsample(logits, canvas)[..., : fit[0], : fit[1]]
            if inverse_depth is not None:
                inverse_depth = upsample(inverse_depth, canvas)[..., : fit[0], : fit[1]]
        pred = upsample(logits, hw).argmax(1)[0].cpu().numpy()
        inverse = None if inverse_depth is None else upsample(inverse_depth, hw)[0, 0].cpu().numpy()
        results.append((pred, inverse))
    return results


def open_video(path: Path):
    """An opened ``cv2.VideoCapture``; a file OpenCV cannot open is a :class:`DadaError`."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DadaError(f"{path}: OpenCV cannot open this video (not a video, a codec it lacks, or a damaged "
                        f"header); convert it to mp4 (H.264 or MPEG-4) and try again")
    return capture


def predict_video(model: torch.nn.Module, path: Path, out_file: Path, *, num_classes: int,
                  preprocess: Preprocess = "caffe", size: Sequence[int] | None = OFFICIAL_INPUT_SIZE,
                  letterbox: bool = False, batch_size: int = 1, device: str | torch.device = "cpu",
                  alpha: float = 0.5, depth: bool = False, progress: bool = True,
                  paint: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Write ``out_file`` (mp4): every decodable frame of the video ``path`` with its segmentation blended
    on it (and, with ``depth``, the predicted depth map to its right), at the video's frame rate.

    Frames that fail to decode are skipped and listed; reads are retried until the container's frame count
    (or :data:`MAX_CONSECUTIVE_BAD_FRAMES` failures in a row). Returns ``{"path", "output", "frames",
    "undecodable", "fps"}`` (``fps``: frames processed per second of wall time). ``paint``: class ids →
    RGB (:func:`painter`; default the model's palette)."""
    import time

    import cv2

    from dada.io import atomic_path

    device = torch.device(device)
    paint = paint or painter(num_classes)
    capture = open_video(path)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    rate = capture.get(cv2.CAP_PROP_FPS)
    rate = rate if rate and np.isfinite(rate) and rate > 0 else 25.0
    bar = None
    if progress:
        from dada.io import progress_bar

        bar = progress_bar(total=total if total > 0 else None, desc=path.name, unit="frame",
                           dynamic_ncols=True)
    frames: list[tuple[np.ndarray, torch.Tensor, tuple[int, int] | None]] = []
    undecodable: list[int] = []
    written = 0
    start = time.perf_counter()
    try:
        with atomic_path(out_file) as tmp:
            writer = None

            def flush() -> None:
                nonlocal writer, written
                if not frames:
                    return
                outputs = predict_batch(model, [f[1] for f in frames], [f[0].shape[:2] for f in frames],
                                        [f[2] for f in frames], size=size, num_classes=num_classes,
                                        device=device)
                for (rgb, _, _), (pred, inverse) in zip(frames, outputs, strict=True):
                    panel = overlay(rgb, paint(pred), alpha)
                    if depth:
                        if inverse is None:
                            raise DadaError("--depth: this model has no depth head; drop --depth")
                        panel = np.concatenate([panel, depth_to_rgb(inverse)], axis=1)
                    if writer is None:
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), rate,
                                                 (panel.shape[1], panel.shape[0]))
                        if not writer.isOpened():
                            raise DadaError(f"{out_file}: OpenCV cannot write an {VIDEO_FOURCC} video here")
                    writer.write(np.ascontiguousarray(panel[..., ::-1]))
                    written += 1
                if bar is not None:
                    bar.update(len(frames))
                    bar.set_postfix(fps=f"{written / (time.perf_counter() - start):.1f}")
                frames.clear()

            index = consecutive = 0
            while True:
                ok, frame = capture.read()
                if not ok or frame is None or frame.ndim != 3:
                    if 0 < total and index < total and consecutive < MAX_CONSECUTIVE_BAD_FRAMES:
                        undecodable.append(index)
                        index += 1
                        consecutive += 1
                        if bar is not None:
                            bar.update(1)
                        continue
                    break
                consecutive = 0
                rgb = np.ascontiguousarray(frame[..., ::-1])
                tensor, fitted = prepare_input(rgb, preprocess, size, letterbox)
                if frames and (frames[0][1].shape != tensor.shape or frames[0][0].shape != rgb.shape):
                    flush()
                frames.append((rgb, tensor, fitted))
                index += 1
                if len(frames) >= max(1, int(batch_size)):
                    flush()
            flush()
            if writer is None:
                raise DadaError(f"{path}: no frame of this video could be decoded")
            writer.release()
    finally:
        capture.release()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    return {"path": str(path), "output": str(out_file), "frames": written, "undecodable": undecodable,
            "fps": written / seconds if seconds > 0 else float("nan")}


def predict_images(model: torch.nn.Module, inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
                   num_classes: int, preprocess: Preprocess = "caffe",
                   size: Sequence[int] | None = OFFICIAL_INPUT_SIZE, batch_size: int = 1,
                   device: str | torch.device = "cpu", overwrite: bool = False, alpha: float = 0.5,
                   letterbox: bool = False, progress: bool = True, depth_video: bool = False,
                   classes: str | None = None, warn: Callable[[str], None] = _warn) -> dict:
    """Predict every image and video of ``inputs`` and write the outputs into ``out_dir``.

    ``size`` (H, W): the model's input size (None: each image's own size); ``letterbox``: fit the image
    into ``size`` keeping its aspect ratio, top-left, padded with 0 (the official Mapillary input), and
    crop the prediction back. Images are batched by ``batch_size`` (consecutive images of one input
    size); videos go through :func:`predict_video` (``depth_video``: depth side by side). ``classes``: draw
    the prediction merged into that class set (:func:`painter`). ``preprocess``: a
    mode name or a function (uint8 RGB → input tensor). Every video is opened before anything is written.
    Returns ``{"written": [paths], "skipped": [{"path", "reason"}], "images": n, "videos": [...]}``.
    """
    device = torch.device(device)
    paint = painter(num_classes, classes)  # an unknown or unmappable class set fails before any output
    out_resolved = Path(out_dir).resolve()
    # never read back our own outputs (an output folder inside an input folder)
    files = [(p, n) for p, n in gather_inputs(inputs) if out_resolved not in p.resolve().parents]
    if not files:
        raise DadaError(f"no input images outside the output folder {out_dir}")
    videos = [(p, n) for p, n in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    images = [(p, n) for p, n in files if p.suffix.lower() not in VIDEO_EXTENSIONS]
    for path, _ in videos:  # fail before writing anything
        open_video(path).release()
    out_dir = prepare_output_dir(out_dir, overwrite)
    model.eval().to(device)
    written: list[Path] = []
    skipped: list[dict] = []
    batch: list[tuple[str, np.ndarray, torch.Tensor, tuple[int, int] | None]] = []
    bar = None
    if progress and images:
        from dada.io import progress_bar

        bar = progress_bar(total=len(images), desc="predict", unit="img", dynamic_ncols=True)

    def flush() -> None:
        if not batch:
            return
        outputs = predict_batch(model, [e[2] for e in batch], [e[1].shape[:2] for e in batch],
                                [e[3] for e in batch], size=size, num_classes=num_classes, device=device)
        for (name, rgb, _, _), (pred, inverse) in zip(batch, outputs, strict=True):
            seg_rgb = paint(pred)
            written.append(save_rgb(out_dir / f"{name}_seg.png", seg_rgb))
            written.append(save_rgb(out_dir / f"{name}_overlay.png", overlay(rgb, seg_rgb, alpha)))
            if inverse is not None:
                written.append(save_rgb(out_dir / f"{name}_depth.png", depth_to_rgb(inverse)))
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    try:
        for path, name in images:
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
            tensor, fitted = prepare_input(rgb, preprocess, size, letterbox)
            if batch and tuple(batch[0][2].shape) != tuple(tensor.shape):
                flush()
            batch.append((name, rgb, tensor, fitted))
            if len(batch) >= max(1, int(batch_size)):
                flush()
        flush()
    finally:
        if bar is not None:
            bar.close()
    video_results = []
    for path, name in videos:
        result = predict_video(model, path, out_dir / f"{name}_overlay.mp4", num_classes=num_classes,
                               preprocess=preprocess, size=size, letterbox=letterbox, batch_size=batch_size,
                               device=device, alpha=alpha, depth=depth_video, progress=progress,
                               paint=paint)
        if result["undecodable"]:
            warn(f"{path}: {len(result['undecodable'])} frames could not be decoded and were skipped "
                 f"(frame indices {_ranges(result['undecodable'])})")
        written.append(Path(result["output"]))
        video_results.append(result)
    if len({p.resolve() for p in written}) != len(written):  # never: unique_names gives each input its own
        raise DadaError(f"two inputs were written to the same output in {out_dir}; please report this")
    return {"written": written, "skipped": skipped, "images": len(images) - len(skipped),
            "videos": video_results, "names": [(str(p), n) for p, n in files]}


def _ranges(indices: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` → ``"1-3, 7"``."""
    parts, start = [], None
    for k, value in enumerate(indices):
        if start is None:
            start = value
        if k + 1 == len(indices) or indices[k + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)


BACKENDS = ("auto", "torch", "onnxruntime")


def predict_checkpoint(checkpoint: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                       out_dir: str | os.PathLike, *, batch_size: int = 1, device: str = "auto",
                       size: Sequence[int] | None | str = "config", preprocess: str | None = None,
                       overwrite: bool = False, progress: bool = True, backend: str = "auto",
                       depth_video: bool = False, classes: str | None = None) -> dict:
    """Load a model and run :func:`predict_images`: with the ``torch`` backend a run folder / our
    checkpoint / an official DADA state dict; with ``onnxruntime`` a file written by ``dada export``
    (preprocessing, input size and classes from its metadata); ``auto``: onnxruntime for ``.onnx`` files.
    ``size`` (H, W; None: each image's own size) and ``preprocess`` override the model's settings;
    ``classes`` draws the prediction merged into another class set (:func:`painter`)."""
    from functools import partial

    if backend not in BACKENDS:
        raise DadaError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    device = resolve_device(device)
    gather_inputs(inputs)  # fail on bad inputs before loading weights
    if backend == "onnxruntime" or (backend == "auto" and str(checkpoint).lower().endswith(".onnx")):
        from dada.deploy.export import OnnxSegmenter, preprocess_with_metadata

        model = OnnxSegmenter(checkpoint, device=device)
        meta = model.metadata
        snapshot = meta.get("snapshot")
        settings = {"preprocess": meta["preprocess"],
                    "size": tuple(meta["input_size"]) if meta.get("input_size") else None,
                    "letterbox": bool(meta.get("letterbox")), "num_classes": int(meta["num_classes"])}
        has_depth = "inverse_depth" in model.output_names
        transform: Preprocess = partial(preprocess_with_metadata, metadata=meta)
        source = str(checkpoint)
    else:
        from dada.models import load_segmenter

        model, info = load_segmenter(checkpoint, map_location=device)
        settings = input_settings(info)
        has_depth = bool(info["model_spec"].get("depth_head"))
        transform = settings["preprocess"]
        source = info.get("source")
        from dada.evaluation.reports import snapshot_record

        snapshot = snapshot_record(info)
    from dada.evaluation.reports import warn_snapshot

    warn_snapshot(snapshot, f"dada predict {checkpoint}")
    if depth_video and not has_depth:
        raise DadaError(f"{checkpoint}: --depth needs a model with a depth head; this one has none")
    painter(settings["num_classes"], classes)  # an unknown or unmappable class set: before any output
    if size != "config":
        settings["size"] = tuple(size) if size is not None else None
    if preprocess is not None:
        settings["preprocess"] = transform = preprocess
    previous = _previous_outputs(Path(out_dir))
    result = predict_images(model, inputs, out_dir, num_classes=settings["num_classes"],
                            preprocess=transform, size=settings["size"], batch_size=batch_size,
                            letterbox=settings["letterbox"] and settings["size"] is not None, device=device,
                            overwrite=overwrite, progress=progress, depth_video=depth_video, classes=classes)
    for old in previous - {p.name for p in result["written"]}:  # a replaced prediction's other outputs
        (Path(out_dir) / old).unlink(missing_ok=True)
    manifest = {"format": "dada-seg-predict/1", "checkpoint": source, "snapshot": snapshot,
                "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()
                             if not callable(v)} | ({"classes": classes} if classes else {}),
                "inputs": [{"path": p, "name": n} for p, n in result["names"]],
                "outputs": sorted(p.name for p in result["written"]), "skipped": result["skipped"]}
    from dada.io import write_json

    write_json(Path(out_dir) / PREDICT_MANIFEST, manifest)
    return {**result, "settings": settings, "checkpoint": source, "snapshot": snapshot}


#: What a ``dada predict`` output folder holds: the checkpoint (and snapshot), each input's output name.
PREDICT_MANIFEST = "predict.json"


def _previous_outputs(out_dir: Path) -> set[str]:
    """The outputs a previous ``dada predict`` into ``out_dir`` listed (plain file names)."""
    import json

    try:
        listed = json.loads((out_dir / PREDICT_MANIFEST).read_text(encoding="utf-8")).get("outputs") or []
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in listed if isinstance(name, str) and name == Path(name).name}
