"""``folder``: bring your own renders or camera images (CARLA, an in-house simulator, ...).

Layout: ``ROOT/images/`` (any image format), optional ``ROOT/labels/`` and ``ROOT/depth/`` with the same
file stems, and a YAML spec (default ``ROOT/dataset.yaml``) that says how labels map to a class set and
how depth is encoded. Depth of any encoding is converted to the SYNTHIA convention used by the source
depth loss: centimetres ``cm`` (clipped to 0..65535), then inverse depth ``65536 / (cm + 1)``; invalid
pixels (non-finite, ≤ 0, or the spec's ``invalid`` raw value) become the far plane, 65535 cm (inverse
depth 1.0, as SYNTHIA's sky). See docs/datasets.md for the spec.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dada.data import classes
from dada.data.base import (
    INVERSE_DEPTH_SCALE,
    MAX_RAW_DEPTH,
    WRITER,
    Findings,
    Record,
    SampleWriter,
    SegmentationDataset,
    SplitFiles,
    check_paired,
    files_by_key,
    missing_folder,
)
from dada.data.classes import IGNORE_INDEX
from dada.data.readers import IMAGE_SUFFIXES, list_files, open_pil, read_png16, require_dir
from dada.errors import DadaError

SPEC_NAME = "dataset.yaml"
LABEL_FORMATS = ("ids", "rgb")
DEPTH_FORMATS = ("png16", "rgb24", "npy")
DEPTH_KINDS = ("depth", "inverse_depth")
DEPTH_SUFFIXES = {"png16": (".png",), "rgb24": (".png",), "npy": (".npy",)}


# ------------------------------------------------------------------------------------------------ spec
def load_spec(spec: str | os.PathLike | Mapping | None, root: Path) -> tuple[dict, str]:
    """The spec as a dict and where it came from (a path, or 'inline')."""
    if isinstance(spec, Mapping):
        return dict(spec), "inline spec"
    path = Path(spec) if spec is not None else root / SPEC_NAME
    if not path.is_file():
        raise DadaError(f"folder dataset spec {path} does not exist: write one (see docs/datasets.md, "
                        f"'folder') or pass spec=PATH")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise DadaError(f"folder dataset spec {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise DadaError(f"folder dataset spec {path} must be a mapping (keys num_classes, labels, depth)")
    return data, str(path)


def _check_keys(section: Mapping, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise DadaError(f"unknown key(s) {unknown} in {where}: allowed {list(allowed)}")


def _choice(section: Mapping, key: str, allowed: tuple[str, ...], where: str) -> str:
    """``section[key]`` (default: the first allowed value), checked against ``allowed``."""
    value = section.get(key, allowed[0])
    if value not in allowed:
        raise DadaError(f"{where}.{key} must be one of {list(allowed)}, got {value!r}")
    return value


def _train_id(value: Any, class_set: classes.ClassSet, where: str) -> int:
    if isinstance(value, str):
        names = {n.lower(): i for i, n in enumerate(class_set.names)}
        if value.lower() in ("ignore", "void"):
            return IGNORE_INDEX
        if value.lower() not in names:
            raise DadaError(f"{where}: class {value!r} is not in the {class_set.num_classes}-class set "
                            f"{list(class_set.names)} (or 'ignore')")
        return names[value.lower()]
    train = int(value)
    if not (0 <= train < class_set.num_classes or train == IGNORE_INDEX):
        raise DadaError(f"{where}: train id {train} out of range 0..{class_set.num_classes - 1} (or 255)")
    return train


def _raw_key(key: Any, fmt: str, where: str) -> int:
    """A raw label value (ids) or an ``"R,G,B"`` colour (rgb) as one integer."""
    if fmt == "ids":
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise DadaError(f"{where}: raw label value {key!r} is not an integer") from None
        if not 0 <= value <= 65535:
            raise DadaError(f"{where}: raw label value {value} outside 0..65535")
        return value
    parts = key if isinstance(key, (list, tuple)) else str(key).replace(" ", "").split(",")
    try:
        red, green, blue = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise DadaError(f"{where}: colour {key!r} must be 'R,G,B'") from None
    if not all(0 <= c <= 255 for c in (red, green, blue)):
        raise DadaError(f"{where}: colour {key!r} has components outside 0..255")
    return (red << 16) | (green << 8) | blue


class FolderSpec:
    """Parsed spec: label mapping (ids or colours → train ids) and depth decoding."""

    def __init__(self, data: Mapping, source: str, num_classes: int):
        self.source = source
        _check_keys(data, ("num_classes", "labels", "depth", "name"), source)
        spec_classes = int(data.get("num_classes", num_classes))
        if spec_classes != int(num_classes):
            raise DadaError(f"{source} maps labels to {spec_classes} classes but num_classes={num_classes}")
        self.class_set = classes.class_set(num_classes)
        labels = data.get("labels") or {}
        _check_keys(labels, ("format", "channel", "map", "ignore", "unknown"), f"{source}: labels")
        self.label_format = _choice(labels, "format", LABEL_FORMATS, f"{source}: labels")
        self.label_channel = labels.get("channel")
        if self.label_channel is not None and int(self.label_channel) not in (0, 1, 2):
            raise DadaError(f"{source}: labels.channel must be 0 (R), 1 (G) or 2 (B)")
        self.unknown = _choice(labels, "unknown", ("error", "ignore"), f"{source}: labels")
        where = f"{source}: labels.map"
        self.table: dict[int, int] = {}
        for key, value in (labels.get("map") or {}).items():
            self.table[_raw_key(key, self.label_format, where)] = _train_id(value, self.class_set, where)
        for key in labels.get("ignore") or []:
            self.table[_raw_key(key, self.label_format, f"{source}: labels.ignore")] = IGNORE_INDEX
        if not self.table and data.get("labels") is not None:
            raise DadaError(f"{source}: labels.map is empty: map each raw label value (or colour) to a class")
        keys = np.array(sorted(self.table), dtype=np.int64)
        self._keys, self._values = keys, np.array([self.table[k] for k in keys], dtype=np.uint8)

        depth = data.get("depth") or {}
        _check_keys(depth, ("format", "kind", "scale", "invalid", "channel"), f"{source}: depth")
        self.depth_format = _choice(depth, "format", DEPTH_FORMATS, f"{source}: depth")
        self.depth_kind = _choice(depth, "kind", DEPTH_KINDS, f"{source}: depth")
        default_scale = {"png16": 0.01, "rgb24": 1000.0 / (256**3 - 1), "npy": 1.0}[self.depth_format]
        self.depth_scale = float(depth.get("scale", default_scale))
        if not self.depth_scale > 0:
            raise DadaError(f"{source}: depth.scale must be positive (metres per raw unit)")
        self.depth_invalid = depth.get("invalid")
        self.depth_channel = depth.get("channel")
        self.has_depth_spec = data.get("depth") is not None

    # labels ----------------------------------------------------------------------------------------
    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw codes → uint8 train ids; unlisted codes raise DadaError (or are ignored on request)."""
        codes = raw.astype(np.int64).ravel()
        position = np.searchsorted(self._keys, codes)
        position_clipped = np.minimum(position, max(len(self._keys) - 1, 0))
        found = (len(self._keys) > 0) & (self._keys[position_clipped] == codes) if len(self._keys) \
            else np.zeros(codes.shape, bool)
        if not found.all() and self.unknown == "error":
            values = np.unique(codes[~found])
            shown = ", ".join(self._describe(v) for v in values[:8]) + (" …" if values.size > 8 else "")
            raise DadaError(f"label file {path} has unknown label value(s) {shown} "
                            f"({int((~found).sum())} pixels): add them to labels.map or labels.ignore in "
                            f"{self.source}, or set labels.unknown: ignore")
        out = np.full(codes.shape, IGNORE_INDEX, dtype=np.uint8)
        out[found] = self._values[position_clipped[found]]
        return out.reshape(raw.shape)

    def _describe(self, code: int) -> str:
        if self.label_format == "rgb":
            return f"({code >> 16},{(code >> 8) & 255},{code & 255})"
        return str(int(code))

    def read_label(self, path: Path) -> np.ndarray:
        if self.label_format == "rgb":
            rgb = np.asarray(open_pil(path, "label").convert("RGB")).astype(np.int64)
            codes = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
            return self.map_labels(codes, path)
        if path.suffix.lower() == ".png":
            raw = read_png16(path, "label")  # 16-bit ids survive; channels in BGR order
            if raw.ndim == 3:
                if self.label_channel is None:
                    raise DadaError(f"label file {path} has {raw.shape[2]} channels: set labels.channel "
                                    f"(0 = R, 1 = G, 2 = B) in {self.source}, or labels.format: rgb")
                raw = raw[:, :, 2 - int(self.label_channel)]
        else:
            raw = np.asarray(open_pil(path, "label"))
            if raw.ndim == 3:
                if self.label_channel is None:
                    raise DadaError(f"label file {path} has several channels: set labels.channel in "
                                    f"{self.source}")
                raw = raw[:, :, int(self.label_channel)]
        return self.map_labels(raw, path)

    # depth -----------------------------------------------------------------------------------------
    def read_metres(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """(depth in metres as float64, validity mask) from a depth file."""
        if self.depth_format == "npy":
            try:
                raw = np.load(path, allow_pickle=False)
            except FileNotFoundError:
                raise DadaError(f"depth file {path} is missing") from None
            except (OSError, ValueError) as error:
                raise DadaError(f"depth file {path} is not a readable .npy array ({error})") from None
            raw = np.squeeze(raw)
            if raw.ndim != 2 or raw.dtype.kind not in "fiu":
                raise DadaError(f"depth file {path} holds a {raw.dtype} array of shape {raw.shape}, "
                                f"expected H×W numbers")
            raw = raw.astype(np.float64)
        else:
            array = read_png16(path, "depth")
            if self.depth_format == "rgb24":
                if array.ndim != 3 or array.dtype != np.uint8:
                    raise DadaError(f"depth file {path}: rgb24 depth needs an 8-bit RGB PNG "
                                    f"(CARLA's encoding), got {array.dtype} with shape {array.shape}")
                blue, green, red = (array[:, :, i].astype(np.float64) for i in range(3))
                raw = red + 256.0 * green + 65536.0 * blue
            else:
                if array.ndim == 3:
                    channel = 0 if self.depth_channel is None else int(self.depth_channel)
                    array = array[:, :, 2 - channel]
                raw = array.astype(np.float64)
        valid = np.isfinite(raw)
        if self.depth_invalid is not None:
            valid &= raw != float(self.depth_invalid)
        value = np.where(valid, raw, 0.0) * self.depth_scale
        if self.depth_kind == "inverse_depth":
            valid &= value > 0
            metres = np.where(valid, 1.0 / np.where(value > 0, value, 1.0), 0.0)
        else:
            valid &= value > 0
            metres = value
        return metres, valid

    def read_inverse_depth(self, path: Path) -> np.ndarray:
        metres, valid = self.read_metres(path)
        centimetres = np.where(valid, np.clip(metres * 100.0, 0.0, MAX_RAW_DEPTH), MAX_RAW_DEPTH)
        return (INVERSE_DEPTH_SCALE / (centimetres + 1.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------- dataset
class FolderDataset(SegmentationDataset):
    """Your own data: ``images/``, optional ``labels/`` and ``depth/`` (same stems), and a YAML spec."""

    dataset_name = "folder"

    def __init__(self, root, split, num_classes, size=None, depth=False, *, spec=None, **kwargs):
        root_path = Path(root)
        require_dir(root_path, "give the folder dataset root (images/, labels/, depth/, dataset.yaml)")
        data, source = load_spec(spec, root_path)
        self.spec = FolderSpec(data, source, num_classes)
        super().__init__(root, split, num_classes, size, depth, **kwargs)

    def _list_records(self) -> list[Record]:
        image_dir = require_dir(self.root / "images", "a folder dataset holds images/ (and optionally "
                                                      "labels/, depth/)")
        image_files = list_files(image_dir)
        names = self._split_names(image_dir, image_files)
        stems = [os.path.splitext(n)[0] for n in names]
        label_files: dict[str, str] = {}
        if self.use_labels and (self.root / "labels").is_dir():
            label_files = {os.path.splitext(n)[0]: n for n in list_files(self.root / "labels")}
            check_paired(stems, self.root / "labels", set(label_files), "label")
        depth_files: dict[str, str] = {}
        if self.use_depth:
            depth_dir = require_dir(self.root / "depth",
                                    "depth=True needs ROOT/depth/ with one file per image")
            if not self.spec.has_depth_spec:
                raise DadaError(f"{self.spec.source} has no 'depth' section: say how depth is encoded "
                                f"(format, kind, scale)")
            suffixes = DEPTH_SUFFIXES[self.spec.depth_format]
            depth_files = {os.path.splitext(n)[0]: n for n in list_files(depth_dir, suffixes)}
            check_paired(stems, depth_dir, set(depth_files), "depth")
        return [Record(n, self.root / "images" / n,
                       self.root / "labels" / label_files[s] if label_files else None,
                       self.root / "depth" / depth_files[s] if depth_files else None)
                for n, s in zip(names, stems, strict=True)]

    def _read_label(self, record: Record) -> np.ndarray:
        return self.spec.read_label(record.label)

    def _read_depth(self, record: Record) -> np.ndarray:
        return self.spec.read_inverse_depth(record.depth)

    @classmethod
    def survey(cls, root: Path, report: Findings, spec: Any = None) -> list[SplitFiles]:
        try:
            data, source = load_spec(spec, root)
            parsed = FolderSpec(data, source, int(data.get("num_classes", 16)))
        except DadaError as error:
            report.problems.append(str(error))
            return []
        report.add("spec", f"{source}: {parsed.class_set.num_classes} classes, labels as "
                   f"{parsed.label_format}" + (f", depth {parsed.depth_format} ({parsed.depth_kind})"
                                               if parsed.has_depth_spec else ""))
        if missing_folder(root / "images", root, report, "a folder dataset holds images/, optional labels/ "
                                                         "and depth/"):
            return []
        files = SplitFiles("all", files_by_key(root / "images", IMAGE_SUFFIXES, _stem))
        if (root / "labels").is_dir():
            files.labels, files.label_folder = files_by_key(root / "labels", IMAGE_SUFFIXES, _stem), "labels/"
        if (root / "depth").is_dir():
            files.depth = files_by_key(root / "depth", DEPTH_SUFFIXES[parsed.depth_format], _stem)
            files.depth_folder = "depth/"
            if not parsed.has_depth_spec:
                report.problems.append(f"depth/ exists but {source} has no 'depth' section saying how it "
                                       f"is encoded")
        return [files]


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


# ---------------------------------------------------------------------------------------------- writer
def write_folder(root: str | os.PathLike, name: str, rgb: np.ndarray, label: np.ndarray | None = None,
                 depth: np.ndarray | None = None, *, spec: Mapping | None = None,
                 writer: SampleWriter = WRITER) -> None:
    """One sample of a folder dataset: ``images/<name>`` (8-bit RGB), ``labels/<stem>.png`` (an H×W
    id array, 8 or 16 bit, or an H×W×3 RGB colour array) and ``depth/<stem>.npy`` (depth as the spec's
    ``npy`` format reads it); ``spec`` (a mapping) is written to ``ROOT/dataset.yaml``."""
    root = Path(root)
    stem = _stem(name)
    writer.rgb(root / "images" / name, rgb)
    if label is not None:
        label = np.asarray(label)
        writer.png(root / "labels" / f"{stem}.png", label[..., ::-1] if label.ndim == 3 else label)
    if depth is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(depth), allow_pickle=False)
        writer.write(root / "depth" / f"{stem}.npy", buffer.getvalue())
    if spec is not None:
        writer.write(root / SPEC_NAME, yaml.safe_dump(dict(spec)).encode())
