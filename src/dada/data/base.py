"""What every dataset shares: the reading pipeline (:class:`SegmentationDataset`), records, label
lookup tables, list files, PNG format checks, the sample writer and the survey a ``dada doctor`` reads.

One module per dataset (``synthia.py``, ``cityscapes.py``, ``mapillary.py``, ``folder.py``) holds that
dataset's on-disk layout, its reader and its writer; :mod:`dada.data.datasets` maps names to them.

Items are dicts of tensors (``image`` 3×H×W float32, ``label`` H'×W' int64 with 255 = ignore, ``depth``
1×H'×W' float32, ``name`` str), read exactly as the official DADA/ADVENT loaders read them
(``../shared/reference/official-implementation.md`` §3–4). Layout problems (missing folders, unpaired
files) raise :class:`DadaError` when the dataset is built; file problems (truncated file, size mismatch,
wrong bit depth, unknown label value) when the item is read. Sizes are (H, W).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dada.data import classes
from dada.data.classes import IGNORE_INDEX
from dada.data.readers import list_files, png_header, read_rgb, require_dir
from dada.data.transforms import (
    apply_augment,
    check_augment,
    check_mode,
    preprocess_image,
    resize_depth,
    resize_image,
    resize_label,
)
from dada.errors import DadaError
from dada.io import write_bytes

#: SYNTHIA depth (centimetres, 16 bit) → inverse depth, as the official ``get_depth``: 65536 / (raw + 1).
#: The folder dataset converts any depth encoding to this convention.
INVERSE_DEPTH_SCALE = 65536.0
#: Largest raw SYNTHIA depth value (16 bit): the far plane, inverse depth 65536/65536 = 1.
MAX_RAW_DEPTH = 65535
UNKNOWN = -1


@dataclass(frozen=True)
class Record:
    """One sample's files. ``name`` is unique within the split (a relative path)."""

    name: str
    image: Path
    label: Path | None = None
    depth: Path | None = None


def inverse_depth_from_raw(raw: np.ndarray) -> np.ndarray:
    """SYNTHIA convention: float32 ``65536 / (raw + 1)`` (raw in the PNG's units, centimetres)."""
    return (np.float32(INVERSE_DEPTH_SCALE) / (raw.astype(np.float32) + np.float32(1.0))).astype(np.float32)


# ------------------------------------------------------------------------------------- file formats
@dataclass(frozen=True)
class PngFormat:
    """What a dataset's PNG of one kind must be: bit depth and channel counts (as in the PNG header).

    Checked from the header (33 bytes) by the reader before decoding and by ``dada doctor`` on every
    file, so a depth map converted to 8 bits is refused, naming the file, instead of training with a
    target ~250× off."""

    what: str  # e.g. "SYNTHIA depth"
    bits: tuple[int, ...]  # allowed bit depths (8, 16)
    channels: tuple[int, ...]  # allowed channel counts (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; palette = 1)
    meaning: str  # what the values are, for the message

    def problem(self, path: Path) -> str | None:
        """None when ``path`` has this format, else a sentence naming the file and what to do."""
        height, width, bits, channels = png_header(path, self.what)
        if bits not in self.bits or channels not in self.channels:
            depths = " or ".join(f"{b}-bit" for b in self.bits)
            shown = " or ".join(str(c) for c in self.channels)
            return (f"{self.what} file {path} is a {bits}-bit PNG with {channels} channel(s), expected "
                    f"{depths} with {shown} channel(s) ({self.meaning}): it was converted or is not this "
                    f"dataset's file; re-extract it from the dataset archive")
        return None

    def check(self, path: Path) -> None:
        problem = self.problem(path)
        if problem:
            raise DadaError(problem)


# ---------------------------------------------------------------------------------------- label ids
def label_lut(table: Mapping[int, int], known: Sequence[int], size: int = 65536) -> np.ndarray:
    """int16 lookup: listed raw ids → train id, other known ids → 255, everything else → −1 (unknown)."""
    lut = np.full(size, UNKNOWN, dtype=np.int16)
    lut[np.asarray(list(known), dtype=np.int64)] = IGNORE_INDEX
    for raw, train in table.items():
        lut[int(raw)] = int(train)
    return lut


def apply_lut(raw: np.ndarray, lut: np.ndarray, path: Path, expected: str) -> np.ndarray:
    """Map raw ids to uint8 train ids; a value the dataset does not define raises DadaError."""
    raw = np.asarray(raw)
    if raw.dtype.kind not in "ui":
        raise DadaError(f"label file {path} holds {raw.dtype} values, expected integer class ids")
    if raw.size and (int(raw.max()) >= lut.size or int(raw.min()) < 0):
        bad = np.unique(raw[(raw < 0) | (raw >= lut.size)])[:8].tolist()
        raise DadaError(f"label file {path} has unknown label value(s) {bad}: expected {expected}")
    mapped = lut[raw]
    unknown = mapped < 0
    if unknown.any():
        values = np.unique(raw[unknown])
        listed = ", ".join(str(v) for v in values[:8].tolist()) + (" …" if values.size > 8 else "")
        raise DadaError(f"label file {path} has unknown label value(s) {listed} "
                        f"({int(unknown.sum())} pixels): expected {expected}")
    return mapped.astype(np.uint8)


_LUTS: dict[tuple, np.ndarray] = {}


def cached_lut(dataset: str, num_classes: int, known: Sequence[int]) -> np.ndarray:
    key = (dataset, num_classes)
    if key not in _LUTS:
        _LUTS[key] = label_lut(classes.mapping(dataset, num_classes), known)
    return _LUTS[key]


# ------------------------------------------------------------------------------------ splits, lists
def as_size(size: Sequence[int] | None, what: str = "size") -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DadaError(f"{what} must be (H, W), got {size!r}") from None
    if height <= 0 or width <= 0:
        raise DadaError(f"{what} must be positive (H, W), got {size!r}")
    return height, width


def read_list_file(path: Path) -> list[str]:
    """Names from a list file: one per line, blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DadaError(f"list file {path} does not exist") from None
    except IsADirectoryError:
        raise DadaError(f"list file {path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise DadaError(f"list file {path} is not UTF-8 text: write one file name per line") from None
    names = [line.strip() for line in lines]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DadaError(f"list file {path} names no files")
    return names


def check_paired(names: Sequence[str], folder: Path, available: set[str], what: str) -> None:
    """Every name must be in ``available`` (the files of ``folder``), else DadaError listing the missing."""
    missing = [n for n in names if n not in available]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DadaError(f"{len(missing)} {what} file(s) missing in {folder}: {shown}; every image needs "
                        f"one (or remove the image from the split)")


def subset(records: list[Record], fraction: float, seed: int) -> list[Record]:
    """A deterministic, seeded subset of ``round(fraction·N)`` records (at least one), in file order."""
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise DadaError(f"fraction must lie in (0, 1], got {fraction}")
    if fraction == 1.0:
        return records
    keep = max(1, int(round(fraction * len(records))))
    chosen = np.sort(np.random.default_rng(int(seed)).permutation(len(records))[:keep])
    return [records[i] for i in chosen]


# ------------------------------------------------------------------------------- survey (doctor)
class Findings(Protocol):
    """Where a survey reports (``dada.data.doctor.Report``)."""

    problems: list[str]
    warnings: list[str]

    def add(self, topic: str, text: str) -> None: ...


@dataclass
class SplitFiles:
    """One split's files as found on disk, keyed by what pairs them (a file name or stem), with the
    format each kind must have: what a dataset's ``survey`` returns to ``dada doctor``."""

    split: str
    images: dict[str, Path]
    labels: dict[str, Path] | None = None
    depth: dict[str, Path] | None = None
    label_folder: str = ""
    depth_folder: str = ""
    label_format: PngFormat | None = None
    depth_format: PngFormat | None = None
    list_file: Path | None = None  # the list file that defines the split (None: every file)
    shares_files_of: str | None = None  # a list-file split whose files are checked with this split
    notes: list[str] = field(default_factory=list)


def missing_folder(folder: Path, root: Path, report: Findings, hint: str) -> bool:
    """True (and a problem in ``report``) when ``folder`` under ``root`` is not a folder."""
    if folder.is_dir():
        return False
    report.problems.append(f"{folder.relative_to(root)}/ is missing under {root}: {hint}")
    return True


def shown(names: Sequence[str], count: int = 5) -> str:
    """The first ``count`` of the sorted ``names`` and how many more."""
    names = sorted(names)
    return ", ".join(names[:count]) + (f" and {len(names) - count} more" if len(names) > count else "")


def files_by_key(folder: Path, suffixes: tuple[str, ...], key) -> dict[str, Path]:
    """The files of ``folder`` with ``suffixes``, keyed by ``key(name)`` (files whose key is None skipped)."""
    out = {}
    for name in list_files(folder, suffixes):
        k = key(name)
        if k is not None:
            out[k] = folder / name
    return out


# ------------------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class SampleWriter:
    """How the datasets' writers store files: atomically (tests, tools; the default) or straight into a
    folder that is renamed into place when complete (the benchmark), with an OpenCV PNG compression
    level. The bytes of a PNG depend only on the array and the level."""

    atomic: bool = True
    png_compression: int | None = None

    def png(self, path: Path, array: np.ndarray) -> None:
        """An 8- or 16-bit PNG of ``array`` (H×W, or H×W×3 in OpenCV's BGR order)."""
        params = [] if self.png_compression is None else [cv2.IMWRITE_PNG_COMPRESSION, self.png_compression]
        ok, data = cv2.imencode(".png", array, params)
        if not ok:
            raise DadaError(f"could not encode {path} as PNG")
        self.write(Path(path), data.tobytes())

    def rgb(self, path: Path, rgb: np.ndarray, quality: int = 95) -> None:
        """An 8-bit RGB image: PNG, or JPEG (Pillow, ``quality``) by the file's extension."""
        rgb = np.asarray(rgb, dtype=np.uint8)
        if Path(path).suffix.lower() in (".jpg", ".jpeg"):
            self.pil(path, Image.fromarray(rgb, "RGB"), "JPEG", quality=quality)
        else:
            self.png(path, rgb[..., ::-1])

    def pil(self, path: Path, image: Image.Image, fmt: str, **params) -> None:
        import io

        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **params)
        self.write(Path(path), buffer.getvalue())

    def write(self, path: Path, data: bytes) -> None:
        if self.atomic:
            write_bytes(path, data)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


#: atomic writes, OpenCV's default compression
WRITER = SampleWriter()


# --------------------------------------------------------------------------------------------- base
class SegmentationDataset(Dataset):
    """Common reading pipeline; subclasses list the records and say how labels and depth are decoded."""

    dataset_name = "dataset"

    def __init__(self, root: str | os.PathLike, split: str, num_classes: int, size=None, depth=False, *,
                 preprocess: str = "caffe", labels: bool = True, label_size: str = "input",
                 fraction: float = 1.0, seed: int = 0, augment: Mapping[str, Any] | None = None,
                 list_file: str | os.PathLike | None = None):
        self.root = Path(root)
        require_dir(self.root, f"give the {self.dataset_name} root folder (see docs/datasets.md)")
        self.split = str(split)
        self.num_classes = classes.class_set(num_classes).num_classes
        self.size = as_size(size)
        self.use_depth = bool(depth)
        self.preprocess = check_mode(preprocess)
        self.use_labels = bool(labels)
        if label_size not in ("input", "native"):
            raise DadaError(f"label_size must be 'input' (training) or 'native' (evaluation), "
                            f"got {label_size!r}")
        self.label_size = label_size
        self.augment = check_augment(augment)
        if self.augment and label_size != "input":
            raise DadaError("augmentations need label_size='input' (they are for training)")
        self.seed = int(seed)
        self.list_file = Path(list_file) if list_file is not None else None
        self._calls = 0
        known = getattr(self, "KNOWN_IDS", None)
        if known is not None and self.use_labels:  # built-in datasets: fail early on a wrong class count
            self._lut = cached_lut(self.dataset_name, self.num_classes, known)
        records = self._list_records()
        if not records:
            raise DadaError(f"no images found for {self.dataset_name} split {self.split!r} under {self.root}")
        self.all_count = len(records)
        self.records = subset(records, fraction, seed)

    # subclasses ----------------------------------------------------------------------------------
    def _list_records(self) -> list[Record]:
        raise NotImplementedError

    def _read_label(self, record: Record) -> np.ndarray:
        """H×W uint8 train ids at the file's resolution."""
        raise NotImplementedError

    def _read_depth(self, record: Record) -> np.ndarray:
        """H×W float32 depth target at the file's resolution (before any resize)."""
        raise NotImplementedError

    @classmethod
    def survey(cls, root: Path, report: Findings, spec: Any = None) -> list[SplitFiles]:
        """The splits and files found under ``root`` (for ``dada doctor``); layout problems go to
        ``report``."""
        raise NotImplementedError

    def _split_names(self, image_dir: Path, image_files: list[str]) -> list[str]:
        """Split ``all``: every image file (sorted); split ``X``: the names in ``list_file`` or
        ``ROOT/X.txt``, each of which must exist in ``image_dir``."""
        if self.list_file is None and self.split == "all":
            return sorted(image_files)
        list_path = self.list_file or self.root / f"{self.split}.txt"
        if not list_path.is_file():
            raise DadaError(f"{self.dataset_name} split {self.split!r} needs the list file {list_path} "
                            f"(one file name per line); split 'all' uses every file in {image_dir}")
        names = read_list_file(list_path)
        check_paired(names, image_dir, set(image_files), "image")
        return names

    @property
    def has_labels(self) -> bool:
        return self.use_labels and all(r.label is not None for r in self.records[:1])

    # geometry (official: image → size, labels → image size for training or native for evaluation) --
    def _image_geometry(self, image: Image.Image) -> np.ndarray:
        if self.size is not None:
            image = resize_image(image, self.size)
        return np.asarray(image)

    def _label_geometry(self, label: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        return resize_label(label, input_hw) if self.label_size == "input" else label

    def _depth_geometry(self, depth: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        return resize_depth(depth, input_hw) if self.label_size == "input" else depth

    # ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        pil_image = read_rgb(record.image)
        native_hw = (pil_image.height, pil_image.width)
        label = depth = None
        if self.has_labels and record.label is not None:
            label = self._read_label(record)
            self._check_size(record.label, label.shape, record.image, native_hw, "label")
        if self.use_depth:
            depth = self._read_depth(record)
            self._check_size(record.depth, depth.shape, record.image, native_hw, "depth")
        image = self._image_geometry(pil_image)
        input_hw = image.shape[:2]
        if label is not None:
            label = self._label_geometry(label, input_hw)
        if depth is not None:
            depth = self._depth_geometry(depth, input_hw)
        if self.augment:
            rng = np.random.default_rng([self.seed, index, torch.initial_seed() % (2**63), self._calls])
            self._calls += 1
            image, label, depth = apply_augment(rng, self.augment, image, label, depth)
        item: dict[str, Any] = {"image": preprocess_image(image, self.preprocess), "name": record.name}
        if label is not None:
            item["label"] = torch.from_numpy(label.astype(np.int64))
        if depth is not None:
            item["depth"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]
        return item

    @staticmethod
    def _check_size(path, shape, image_path, image_hw, what) -> None:
        if tuple(shape[:2]) != tuple(image_hw):
            raise DadaError(f"{what} file {path} is {shape[1]}×{shape[0]} (W×H) but its image {image_path} "
                            f"is {image_hw[1]}×{image_hw[0]}: they must have the same size")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"num_classes={self.num_classes}, items={len(self)}, size={self.size}, "
                f"depth={self.use_depth}, labels={self.has_labels})")
