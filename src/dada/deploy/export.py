"""``dada export``: a trained segmenter as one ONNX file that runs without this package.

The graph takes ``image`` (N×3×H×W float32, preprocessed as stated in the file's metadata; N, H and W are
dynamic) and returns ``logits`` (N×C×h×w at the model's output stride), ``inverse_depth`` (N×1×h×w, models
with a depth head only) and, with ``class_map=True``, ``class_map`` (N×H×W int64: the logits upsampled
bilinearly with ``align_corners=True`` to the input size, then argmax: the official evaluation protocol).

The file's ``metadata_props`` say how to prepare an image and read the outputs (all values are strings,
JSON where structured): ``preprocess`` (``caffe`` | ``imagenet`` | ``lite``), ``channel_order``, ``scale``,
``mean``, ``std`` (``input = (pixel · scale − mean) / std`` per channel, in ``channel_order``), ``input_size``
(H, W the model was evaluated at), ``letterbox``, ``resize``, ``class_names``, ``palette`` (RGB),
``ignore_index``, ``num_classes``, ``arch``, ``outputs`` and ``parity`` (the check below).

Parity is checked at export with onnxruntime on two inputs (batch 1 at the input size, batch 2 at a
smaller, odd size, which exercises the dynamic axes): the largest logit difference relative to the largest
logit magnitude must be ≤ 1e-4 and the argmax must agree on ≥ 99.99 % of the pixels; otherwise nothing is
written. The file is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dada.errors import DadaError
from dada.evaluation.evaluator import model_outputs
from dada.evaluation.inputs import input_settings

EXPORT_FORMATS = ("onnx",)
METADATA_FORMAT = "dada-seg-onnx/1"
#: Parity thresholds of the export check (max |onnx − torch| / max |torch| on the logits; argmax agreement).
MAX_RELATIVE_ERROR = 1e-4
MIN_ARGMAX_AGREEMENT = 0.9999


def preprocess_spec(mode: str) -> dict:
    """A preprocessing mode (:func:`dada.data.transforms.preprocess_image`) as numbers:
    ``input = (pixel · scale − mean) / std`` per channel, in ``channel_order``."""
    from dada.data import transforms as t

    t.check_mode(mode)
    if mode == "caffe":
        return {"channel_order": "BGR", "scale": 1.0, "mean": t.CAFFE_MEAN_BGR.tolist(), "std": [1.0] * 3}
    if mode == "lite":
        return {"channel_order": "RGB", "scale": 1.0, "mean": [float(t.LITE_MEAN)] * 3,
                "std": [float(t.LITE_SCALE)] * 3}
    return {"channel_order": "RGB", "scale": 1.0 / 255.0, "mean": t.IMAGENET_MEAN_RGB.tolist(),
            "std": t.IMAGENET_STD_RGB.tolist()}


class ExportGraph(nn.Module):
    """What the ONNX graph computes: the segmenter's outputs as a tuple (logits, [inverse_depth],
    [class_map])."""

    def __init__(self, model: nn.Module, class_map: bool = False):
        super().__init__()
        self.model = model
        self.class_map = class_map

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, inverse_depth = model_outputs(self.model, image)
        outputs = [logits]
        if inverse_depth is not None:
            outputs.append(inverse_depth)
        if self.class_map:
            # F.interpolate itself: the size stays symbolic (dynamic height and width in the graph)
            upsampled = F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)
            outputs.append(upsampled.argmax(1))
        return tuple(outputs)


def output_names(has_depth: bool, class_map: bool) -> list[str]:
    return ["logits"] + (["inverse_depth"] if has_depth else []) + (["class_map"] if class_map else [])


# ---------------------------------------------------------------------------------------- metadata
def onnx_metadata(info: Mapping, settings: Mapping, names: Sequence[str], parity: Mapping | None = None
                  ) -> dict[str, str]:
    """The ``metadata_props`` of an exported model (see the module docstring)."""
    from dada import __version__
    from dada.data.classes import IGNORE_INDEX, class_set

    spec = info["model_spec"]
    classes = class_set(int(spec["num_classes"]))
    preprocess = preprocess_spec(settings["preprocess"])
    outputs = {"logits": "N×C×h×w float32 class scores at the model's output stride; upsample bilinearly "
                         "(align_corners=True) to the image size, then argmax",
               "inverse_depth": "N×1×h×w float32 predicted inverse depth (bright = near; may be negative)",
               "class_map": "N×H×W int64 train ids at the input size (upsampled logits, argmax)"}
    values = {
        "format": METADATA_FORMAT, "dada_version": __version__, "input_name": "image", "layout": "NCHW",
        "preprocess": settings["preprocess"], **preprocess,
        "input_size": list(settings["size"]) if settings["size"] is not None else None,
        "letterbox": bool(settings["letterbox"]), "resize": "bicubic (Pillow), as in training",
        "num_classes": classes.num_classes, "class_names": list(classes.names),
        "palette": [list(c) for c in classes.palette], "ignore_index": IGNORE_INDEX,
        "arch": spec.get("arch"), "depth_head": bool(spec.get("depth_head")),
        "outputs": {name: outputs[name] for name in names},
        "source_checkpoint": str(info.get("source")), "iteration": info.get("iteration"),
        "snapshot": info.get("snapshot"),
    }
    if parity is not None:
        values["parity"] = dict(parity)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a model written by :func:`export_onnx`, JSON values decoded."""
    require_deploy()
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DadaError(f"{path}: no such file; give an ONNX model written by `dada export`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and others: not an ONNX file
        raise DadaError(f"{path}: cannot be read as an ONNX model ({type(err).__name__}); give a file "
                        "written by `dada export`") from err
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("format") != METADATA_FORMAT:
        raise DadaError(f"{path}: an ONNX model without dada-seg metadata (format {METADATA_FORMAT}); export "
                        "it with `dada export` so that its preprocessing and classes are known")
    decoded = {}
    for key, value in props.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


def preprocess_with_metadata(rgb_uint8: np.ndarray, metadata: Mapping) -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×H×W float32 as the metadata says (``(pixel · scale − mean) / std``)."""
    rgb = np.asarray(rgb_uint8)
    order = metadata["channel_order"]
    if order not in ("RGB", "BGR"):
        raise DadaError(f"unknown channel_order {order!r} in the model's metadata (RGB or BGR)")
    image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[::-1] if order == "BGR" else rgb.transpose(2, 0, 1))
    image = image.astype(np.float32)
    if float(metadata["scale"]) != 1.0:
        image *= np.float32(metadata["scale"])
    image -= np.asarray(metadata["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(metadata["std"], dtype=np.float32)
    if np.any(std != 1):
        image /= std[:, None, None]
    return torch.from_numpy(image)


# ---------------------------------------------------------------------------------------- runtime
def onnx_session(path: str | os.PathLike, threads: int | None = None, device: str | torch.device = "cpu"):
    """An onnxruntime session (``threads``: intra-op threads, default torch's thread count, which follows
    ``OMP_NUM_THREADS``); CUDA when ``device`` is CUDA and onnxruntime has its provider."""
    require_deploy()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DadaError("onnxruntime here has no CUDA provider (pip install onnxruntime-gpu), or use "
                            "--device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise DadaError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0][:200]})") from err


class OnnxSegmenter(nn.Module):
    """An exported model behind the segmenter interface (``forward(image) -> SegmenterOutput``), so that
    prediction code runs it like the PyTorch model. ``metadata``: :func:`read_metadata`."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.path = Path(path)
        self.metadata = read_metadata(path)
        self.session = onnx_session(path, threads, device)
        self.output_names = [o.name for o in self.session.get_outputs()]
        if "logits" not in self.output_names:
            raise DadaError(f"{path}: the model has no 'logits' output (outputs: {self.output_names})")

    def forward(self, image: torch.Tensor):
        from dada.models import SegmenterOutput

        array = image.detach().to("cpu", torch.float32).numpy()
        values = dict(zip(self.output_names, self.session.run(self.output_names, {"image": array}),
                          strict=True))
        depth = values.get("inverse_depth")
        return SegmenterOutput(torch.from_numpy(values["logits"]).to(image.device),
                               None if depth is None else torch.from_numpy(depth).to(image.device))


# ---------------------------------------------------------------------------------------- parity
def parity_inputs(settings: Mapping, seed: int = 0) -> list[torch.Tensor]:
    """Two preprocessed, image-like inputs: batch 1 at the model's input size (default 512×1024) and
    batch 2 at about ¾ of it with odd sides (smooth random colours with noise, not white noise, so that
    the logits look like a real image's)."""
    import cv2

    from dada.data.transforms import preprocess_image

    height, width = settings["size"] or (512, 1024)
    sizes = [(1, (height, width)), (2, (max(33, (3 * height // 4) | 1), max(33, (3 * width // 4) | 1)))]
    rng = np.random.default_rng(seed)
    inputs = []
    for batch, (h, w) in sizes:
        images = []
        for _ in range(batch):
            coarse = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
            smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
            noisy = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
            images.append(preprocess_image(noisy, settings["preprocess"]))
        inputs.append(torch.stack(images))
    return inputs


def compare_outputs(reference: Sequence[torch.Tensor], onnx_outputs: Sequence[np.ndarray],
                    names: Sequence[str]) -> dict:
    """Parity figures of one input: per float output the max abs error and that error relative to the
    largest reference magnitude; the argmax agreement of the logits (and of the class map)."""
    figures: dict = {}
    for name, ref, got in zip(names, reference, onnx_outputs, strict=True):
        ref = ref.detach().cpu().numpy()
        if ref.shape != got.shape:
            raise DadaError(f"parity: output {name} has shape {got.shape} in onnxruntime but {ref.shape} in "
                            "PyTorch")
        if name == "class_map":
            figures["class_map_agreement"] = float((ref == got).mean())
            continue
        error = float(np.abs(got.astype(np.float64) - ref).max())
        scale = float(np.abs(ref).max())
        figures[name] = {"max_abs_error": error, "max_relative_error": error / scale if scale > 0 else error}
        if name == "logits":
            figures["argmax_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
    return figures


def check_parity(graph: ExportGraph, onnx_path: Path, inputs: Sequence[torch.Tensor],
                 names: Sequence[str]) -> dict:
    """Run ``graph`` (PyTorch, eval mode) and the ONNX file on ``inputs``; return the worst figures over
    the inputs, each input's figures and whether the thresholds hold."""
    session = onnx_session(onnx_path)
    checks = []
    for image in inputs:
        with torch.inference_mode():
            reference = graph(image)
        outputs = session.run(list(names), {"image": image.numpy()})
        checks.append({"shape": list(image.shape), **compare_outputs(reference, outputs, names)})
    worst = {"max_relative_error": max(c["logits"]["max_relative_error"] for c in checks),
             "max_abs_error": max(c["logits"]["max_abs_error"] for c in checks),
             "argmax_agreement": min(c["argmax_agreement"] for c in checks)}
    if "inverse_depth" in names:
        worst["inverse_depth_max_relative_error"] = max(c["inverse_depth"]["max_relative_error"]
                                                        for c in checks)
    if "class_map" in names:
        worst["class_map_agreement"] = min(c["class_map_agreement"] for c in checks)
    worst["passed"] = bool(worst["max_relative_error"] <= MAX_RELATIVE_ERROR
                           and worst["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT
                           and worst.get("class_map_agreement", 1.0) >= MIN_ARGMAX_AGREEMENT)
    worst["thresholds"] = {"max_relative_error": MAX_RELATIVE_ERROR, "argmax_agreement": MIN_ARGMAX_AGREEMENT}
    return {**worst, "checks": checks}


# ---------------------------------------------------------------------------------------- export
def check_output_path(out: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out)
    if out.is_dir():
        raise DadaError(f"--out {out} is a folder: give the path of the file to write, e.g. "
                        f"{out / 'model.onnx'}")
    if out.exists() and not overwrite:
        raise DadaError(f"{out} exists: choose another --out or pass --overwrite")
    if out.suffix.lower() != ".onnx":
        raise DadaError(f"--out {out}: an ONNX model's file name ends in .onnx")
    return out


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns about optional torchvision ops and deprecations; none concern this graph."""
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._export")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_graph(graph: ExportGraph, example: torch.Tensor, path: Path, names: Sequence[str],
                 opset: int | None = None) -> None:
    """``torch.onnx.export`` with the dynamo exporter, dynamic batch, height and width."""
    graph.eval()
    kwargs = {} if opset is None else {"opset_version": int(opset)}
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["image"],
                                        output_names=list(names), verbose=False, external_data=False,
                                        dynamic_shapes={"image": {0: "batch", 2: "height", 3: "width"}},
                                        **kwargs)
        except Exception as err:  # the exporter raises many types; all mean "this graph did not export"
            raise DadaError(f"the ONNX exporter failed on this model ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:300]})") from err
        program.save(str(path), external_data=False)
    graph.eval()


def require_deploy() -> None:
    """``dada export`` and the onnxruntime backend need the ``deploy`` extra: say which, not a traceback."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise DadaError(f"ONNX export and inference need {', '.join(missing)}, which are not installed: "
                        f"pip install 'dada-seg[deploy]'")


def check_opset(opset: int | None) -> None:
    """``--opset``: within the range the exporter knows (checked before anything is loaded)."""
    from torch.onnx import _constants

    low, high = _constants.ONNX_MIN_OPSET, _constants.ONNX_MAX_OPSET
    if opset is not None and not low <= int(opset) <= high:
        raise DadaError(f"--opset must lie in {low}..{high} (this PyTorch's ONNX exporter), got {opset}")


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, class_map: bool = False,
                overwrite: bool = False, opset: int | None = None,
                size: Sequence[int] | str | None = "config", check: bool = True) -> dict:
    """Export a run folder / checkpoint / official state dict to ``out`` (see the module docstring).

    ``size`` (H, W): the input size stated in the metadata and used for the parity check (default: the
    checkpoint's evaluation size, 512×1024 for official state dicts). Returns ``{"path", "outputs",
    "metadata", "parity"}``; raises :class:`DadaError` (nothing written) when parity fails.
    """
    require_deploy()
    check_opset(opset)
    import onnx

    from dada.evaluation.reports import snapshot_record, warn_snapshot
    from dada.io import atomic_path
    from dada.models import load_segmenter

    if size not in ("config", None) and (len(size) != 2 or min(int(s) for s in size) < 1):
        raise DadaError(f"--size must be two positive integers H,W, got {list(size)}")
    out = check_output_path(out, overwrite)
    model, info = load_segmenter(checkpoint, map_location="cpu")
    snapshot = snapshot_record(info)
    warn_snapshot(snapshot, f"dada export {checkpoint}")
    settings = input_settings(info)
    if size != "config":
        settings["size"] = tuple(int(s) for s in size) if size is not None else None
        settings["letterbox"] = settings["letterbox"] and size is not None
    graph = ExportGraph(model.eval(), class_map=class_map).eval()
    inputs = parity_inputs(settings)
    names = output_names(bool(info["model_spec"].get("depth_head")), class_map)
    with tempfile.TemporaryDirectory(prefix="dada-export-") as tmp:
        raw = Path(tmp) / "model.onnx"
        export_graph(graph, inputs[1][:1], raw, names, opset)
        parity = check_parity(graph, raw, inputs, names) if check else None
        if parity is not None and not parity["passed"]:
            raise DadaError(f"{checkpoint}: the exported model differs from PyTorch beyond the thresholds "
                            f"(max relative logit error {parity['max_relative_error']:.2e}, limit "
                            f"{MAX_RELATIVE_ERROR:g}; argmax agreement "
                            f"{100 * parity['argmax_agreement']:.4f} %, limit "
                            f"{100 * MIN_ARGMAX_AGREEMENT:g} %); nothing written")
        proto = onnx.load(str(raw))
    written_opset = int(proto.opset_import[0].version)
    if opset is not None and written_opset != int(opset):
        raise DadaError(f"--opset {opset}: the exporter wrote opset {written_opset} instead "
                        f"(it cannot target opset {opset} for this model); nothing written. "
                        f"Use --opset {written_opset} or omit it")
    summary = None if parity is None else {k: v for k, v in parity.items() if k != "checks"} | {
        "shapes": [c["shape"] for c in parity["checks"]]}
    metadata = onnx_metadata({**info, "snapshot": snapshot}, settings, names, summary)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "dada-seg"
    with atomic_path(out) as tmp_out:
        onnx.save(proto, str(tmp_out))
    return {"path": str(out), "outputs": names, "metadata": metadata,
            "parity": None if parity is None else {**summary, "checks": parity["checks"]},
            "opset": written_opset, "snapshot": snapshot, "bytes": out.stat().st_size}
