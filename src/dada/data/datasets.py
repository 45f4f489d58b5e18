"""Datasets in their real on-disk formats: SYNTHIA-RAND-CITYSCAPES, Cityscapes, Mapillary Vistas and a
user folder described by a small YAML spec.

Items are dicts of tensors (``image`` 3×H×W float32, ``label`` H'×W' int64 with 255 = ignore, ``depth``
1×H'×W' float32, ``name`` str), read exactly as the official DADA/ADVENT loaders read them
(``../shared/reference/official-implementation.md`` §3–4). Layout problems (missing folders, unpaired
files) raise :class:`DadaError` when the dataset is built; file problems (truncated file, size mismatch,
unknown label value) when the item is read. Sizes are (H, W).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dada.data import classes
from dada.data.classes import IGNORE_INDEX
from dada.data.readers import (
    list_files,
    read_anydepth,
    read_label_pil,
    read_png16,
    read_rgb,
    require_dir,
)
from dada.data.transforms import (
    apply_augment,
    check_augment,
    check_mode,
    letterbox_shape,
    pad_to_aspect,
    paste_top_left,
    preprocess_image,
    resize_depth,
    resize_image,
    resize_label,
)
from dada.errors import DadaError

#: SYNTHIA depth (centimetres, 16 bit) → inverse depth, as the official ``get_depth``: 65536 / (raw + 1).
INVERSE_DEPTH_SCALE = 65536.0
#: Largest raw SYNTHIA depth value (16 bit): the far plane, inverse depth 65536/65536 = 1.
MAX_RAW_DEPTH = 65535
#: Official Mapillary letterbox canvas (H, W) and the padding fill of images (before preprocessing).
MAPILLARY_CANVAS = (768, 1024)
MAPILLARY_ASPECT = 1024 / 768
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


def disparity_from_png(raw: np.ndarray) -> np.ndarray:
    """Cityscapes: disparity = (p − 1) / 256 for p > 0; p = 0 is invalid → NaN."""
    raw = raw.astype(np.float32)
    disparity = (raw - np.float32(1.0)) / np.float32(256.0)
    return np.where(raw > 0, disparity, np.float32(np.nan)).astype(np.float32)


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


def _as_size(size: Sequence[int] | None, what: str = "size") -> tuple[int, int] | None:
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
    except UnicodeDecodeError:
        raise DadaError(f"list file {path} is not UTF-8 text: write one file name per line") from None
    names = [line.strip() for line in lines]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DadaError(f"list file {path} names no files")
    return names


def _check_paired(names: Sequence[str], folder: Path, available: set[str], what: str) -> None:
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


# ------------------------------------------------------------------------------------------------ base
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
        self.size = _as_size(size)
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
            self._lut = _cached_lut(self.dataset_name, self.num_classes, known)
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
        _check_paired(names, image_dir, set(image_files), "image")
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


# --------------------------------------------------------------------------------------------- SYNTHIA
class SynthiaDataset(SegmentationDataset):
    """SYNTHIA-RAND-CITYSCAPES: ``RGB/``, ``parsed_LABELS/`` or raw ``GT/LABELS/``, ``Depth/`` or
    ``Depth/Depth/``. Split ``all`` = every file in ``RGB/`` sorted; any other name ``X`` reads
    ``ROOT/X.txt`` (or ``list_file``)."""

    dataset_name = "synthia"
    KNOWN_IDS = tuple(classes.SYNTHIA_IDS.values())

    def _list_records(self) -> list[Record]:
        rgb_dir = require_dir(self.root / "RGB", "a SYNTHIA-RAND-CITYSCAPES root holds RGB/, GT/LABELS/ "
                                                 "(or parsed_LABELS/) and Depth/")
        names = self._split_names(rgb_dir, list_files(rgb_dir))
        self.label_dir, self.label_format = None, None
        if self.use_labels:
            self.label_dir, self.label_format = synthia_label_dir(self.root)
            _check_paired(names, self.label_dir, set(list_files(self.label_dir)), "label")
        self.depth_dir = None
        if self.use_depth:
            self.depth_dir = synthia_depth_dir(self.root)
            _check_paired(names, self.depth_dir, set(list_files(self.depth_dir)), "depth")
        return [Record(n, rgb_dir / n, self.label_dir / n if self.label_dir else None,
                       self.depth_dir / n if self.depth_dir else None) for n in names]

    def _read_label(self, record: Record) -> np.ndarray:
        if self.label_format == "parsed":
            raw = read_label_pil(record.label)
        else:
            raw = synthia_raw_label(read_png16(record.label, "label"), record.label)
        return apply_lut(raw, self._lut, record.label, "SYNTHIA raw class ids 0..22")

    def _read_depth(self, record: Record) -> np.ndarray:
        raw = read_anydepth(record.depth, "depth")
        return inverse_depth_from_raw(raw)


#: SYNTHIA label folders in order of preference: (sub-folder, format, what it holds).
SYNTHIA_LABEL_DIRS = (("parsed_LABELS", "parsed", "single-channel raw ids"),
                      ("GT/LABELS", "raw", "raw 16-bit, class id in the first channel"))


def synthia_label_dir(root: Path) -> tuple[Path, str]:
    """The label folder and its format: ``parsed_LABELS/`` (the official side download) when present,
    else the raw ``GT/LABELS/``."""
    for sub, label_format, _ in SYNTHIA_LABEL_DIRS:
        if (root / sub).is_dir():
            return root / sub, label_format
    raise DadaError(f"no SYNTHIA labels under {root}: expected parsed_LABELS/ or GT/LABELS/ "
                    f"(or build the dataset with labels=False)")


def synthia_depth_dir(root: Path) -> Path:
    """``Depth/`` when it holds the PNGs, else ``Depth/Depth/`` (the raw archive's layout)."""
    for folder in (root / "Depth", root / "Depth" / "Depth"):
        if folder.is_dir() and list_files(folder):
            return folder
    raise DadaError(f"no SYNTHIA depth under {root}: expected PNGs in Depth/ or Depth/Depth/ "
                    f"(or build the dataset with depth=False)")


def synthia_raw_label(array: np.ndarray, path: Path) -> np.ndarray:
    """Class ids from a raw ``GT/LABELS`` PNG decoded by OpenCV (BGR): the first channel in RGB order,
    i.e. BGR index 2 (the second RGB channel holds the instance id). Single-channel files pass through."""
    if array.ndim == 2:
        return array
    if array.shape[2] < 3:
        raise DadaError(f"label file {path} has {array.shape[2]} channels, expected 1 or 3")
    return np.ascontiguousarray(array[:, :, 2])


_LUTS: dict[tuple, np.ndarray] = {}


def _cached_lut(dataset: str, num_classes: int, known: Sequence[int]) -> np.ndarray:
    key = (dataset, num_classes)
    if key not in _LUTS:
        _LUTS[key] = label_lut(classes.mapping(dataset, num_classes), known)
    return _LUTS[key]


# ------------------------------------------------------------------------------------------ Cityscapes
class CityscapesDataset(SegmentationDataset):
    """Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``, optional
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` and ``disparity/<split>/<city>/*_disparity.png``.

    The file list is discovered from disk (sorted) or read from ``list_file`` (lines such as
    ``aachen/aachen_000000_000019_leftImg8bit.png``, relative to ``leftImg8bit/<split>/``). Without a
    ``gtFine/<split>`` folder, or with ``labels=False``, items carry no label: training on the target
    needs none.
    """

    dataset_name = "cityscapes"
    IMAGE_SUFFIX = "_leftImg8bit.png"
    KNOWN_IDS = tuple(classes.CITYSCAPES_LABEL_IDS.values()) + (IGNORE_INDEX,)

    def _list_records(self) -> list[Record]:
        image_root = require_dir(self.root / "leftImg8bit" / self.split,
                                 f"a Cityscapes root holds leftImg8bit/{self.split}/<city>/ (and gtFine/ "
                                 f"for evaluation)")
        if self.list_file is not None:
            names = read_list_file(self.list_file)
            missing = [n for n in names if not (image_root / n).is_file()]
            if missing:
                raise DadaError(f"{len(missing)} image(s) of list file {self.list_file} missing under "
                                f"{image_root}: {', '.join(missing[:5])}")
        else:
            names = self.discover(image_root, self.IMAGE_SUFFIX)
        self.label_dir = None
        label_root = self.root / "gtFine" / self.split
        if self.use_labels and label_root.is_dir():
            self.label_dir = label_root
            self._check_companions(names, label_root, "_gtFine_labelIds.png", "label")
        self.depth_dir = None
        if self.use_depth:
            self.depth_dir = require_dir(self.root / "disparity" / self.split,
                                         "Cityscapes depth diagnostics read disparity/<split>/<city>/ "
                                         "*_disparity.png (or build the dataset with depth=False)")
            self._check_companions(names, self.depth_dir, "_disparity.png", "disparity")
        return [Record(n, image_root / n,
                       self.label_dir / companion(n, "_gtFine_labelIds.png") if self.label_dir else None,
                       self.depth_dir / companion(n, "_disparity.png") if self.depth_dir else None)
                for n in names]

    @staticmethod
    def discover(image_root: Path, suffix: str) -> list[str]:
        names = []
        for city in sorted(os.listdir(image_root)):
            city_dir = image_root / city
            if city_dir.is_dir():
                names += [f"{city}/{n}" for n in list_files(city_dir, (suffix,)) if n.endswith(suffix)]
        return names

    @staticmethod
    def _check_companions(names, folder: Path, suffix: str, what: str) -> None:
        missing = [n for n in names if not (folder / companion(n, suffix)).is_file()]
        if missing:
            shown = ", ".join(companion(n, suffix) for n in missing[:5])
            raise DadaError(f"{len(missing)} {what} file(s) missing in {folder}: {shown}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                            + (" (pass labels=False to train on the target without labels)"
                               if what == "label" else ""))

    def _read_label(self, record: Record) -> np.ndarray:
        raw = read_label_pil(record.label)
        return apply_lut(raw, self._lut, record.label,
                         "Cityscapes labelIds 0..33 (the *_gtFine_labelIds.png files, not labelTrainIds "
                         "or color)")

    def _read_depth(self, record: Record) -> np.ndarray:
        raw = read_png16(record.depth, "disparity")
        if raw.ndim != 2:
            raise DadaError(f"disparity file {record.depth} has {raw.shape[2]} channels, expected one "
                            f"(16-bit Cityscapes disparity)")
        return raw  # converted after resizing (nearest), so that p = 0 stays exact

    def _depth_geometry(self, depth: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        return disparity_from_png(super()._depth_geometry(depth, input_hw))


def companion(name: str, suffix: str) -> str:
    """``city/x_leftImg8bit.png`` → ``city/x<suffix>``."""
    stem = name[: -len(CityscapesDataset.IMAGE_SUFFIX)] if name.endswith(CityscapesDataset.IMAGE_SUFFIX) \
        else os.path.splitext(name)[0]
    return stem + suffix


# ------------------------------------------------------------------------------------------- Mapillary
class MapillaryDataset(SegmentationDataset):
    """Mapillary Vistas v1.x: ``{training|train,validation}/images/<key>.jpg`` and ``.../labels/<key>.png``
    (palette PNGs of ids 0..65). Images are letterboxed into ``size`` (default 768×1024, H×W) at the top
    left with fill 0, as the official code. Labels: ``label_size='input'`` letterboxes them (nearest,
    padding ignored); ``'native'`` keeps their resolution and pads bottom/right to 4:3 with 255 (the
    official evaluation protocol)."""

    dataset_name = "mapillary"
    SPLIT_FOLDERS = {"training": ("training", "train"), "train": ("train", "training"),
                     "validation": ("validation", "val"), "val": ("val", "validation")}
    KNOWN_IDS = tuple(range(len(classes.MAPILLARY_NAMES)))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.size is None:
            self.size = MAPILLARY_CANVAS
        if self.use_depth:
            raise DadaError("Mapillary Vistas has no depth: build it with depth=False")

    def _list_records(self) -> list[Record]:
        candidates = self.SPLIT_FOLDERS.get(self.split, (self.split,))
        split_dir = next((self.root / c for c in candidates if (self.root / c).is_dir()), None)
        if split_dir is None:
            raise DadaError(f"Mapillary split {self.split!r} not found under {self.root}: expected one of "
                            f"{[str(self.root / c) for c in candidates]}")
        image_dir = require_dir(split_dir / "images", "Mapillary splits hold images/*.jpg and labels/*.png")
        if self.list_file is not None:
            names = read_list_file(self.list_file)
            names = [n if os.path.splitext(n)[1] else n + ".jpg" for n in names]
            _check_paired(names, image_dir, set(list_files(image_dir)), "image")
        else:
            names = list_files(image_dir, (".jpg", ".jpeg", ".png"))
        self.label_dir = None
        if self.use_labels and (split_dir / "labels").is_dir():
            self.label_dir = split_dir / "labels"
            stems = [os.path.splitext(n)[0] + ".png" for n in names]
            _check_paired(stems, self.label_dir, set(list_files(self.label_dir, (".png",))), "label")
        return [Record(n, image_dir / n,
                       self.label_dir / (os.path.splitext(n)[0] + ".png") if self.label_dir else None)
                for n in names]

    def _read_label(self, record: Record) -> np.ndarray:
        raw = read_label_pil(record.label)
        return apply_lut(raw, self._lut, record.label,
                         "Mapillary Vistas v1.x label ids 0..65 (v2.0 labels are not supported)")

    def _image_geometry(self, image: Image.Image) -> np.ndarray:
        fitted = resize_image(image, letterbox_shape((image.height, image.width), self.size))
        return paste_top_left(np.asarray(fitted), self.size, 0)

    def _label_geometry(self, label: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        if self.label_size == "native":
            return pad_to_aspect(label, self.size[1] / self.size[0], IGNORE_INDEX)
        fitted = resize_label(label, letterbox_shape(label.shape, self.size))
        return paste_top_left(fitted, self.size, IGNORE_INDEX)


# ------------------------------------------------------------------------------------------- factory
DATASET_NAMES = ("synthia", "cityscapes", "mapillary", "folder")


def dataset_class(name: str) -> type[SegmentationDataset]:
    from dada.data.folder import FolderDataset

    registry = {"synthia": SynthiaDataset, "cityscapes": CityscapesDataset, "mapillary": MapillaryDataset,
                "folder": FolderDataset}
    try:
        return registry[str(name).lower()]
    except KeyError:
        raise DadaError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)}") from None


def build_dataset(name: str, root: str | os.PathLike, split: str, num_classes: int, size=None,
                  depth: bool = False, *, preprocess: str = "caffe", labels: bool = True,
                  label_size: str = "input", fraction: float = 1.0, seed: int = 0,
                  augment: Mapping[str, Any] | None = None, list_file: str | os.PathLike | None = None,
                  spec: str | os.PathLike | Mapping | None = None) -> SegmentationDataset:
    """A dataset of ``name`` (synthia | cityscapes | mapillary | folder) read from ``root``.

    ``size`` (H, W) resizes images (None keeps the native size; Mapillary letterboxes into it, default
    768×1024). ``label_size='input'`` resizes labels (nearest) to the image size, ``'native'`` keeps the
    file resolution (evaluation). ``depth=True`` adds ``depth``: inverse depth 65536/(raw+1) for SYNTHIA
    and folder sources, disparity (p−1)/256 with NaN where invalid for Cityscapes. ``fraction`` keeps a
    seeded subset. ``augment`` (``{"scale": [lo, hi], "crop": [H, W], "flip": True}``) is off by default,
    as in the paper. ``list_file`` overrides the split's file list; ``spec`` is the folder dataset's YAML
    (default ``ROOT/dataset.yaml``).
    """
    cls = dataset_class(name)
    kwargs = dict(preprocess=preprocess, labels=labels, label_size=label_size, fraction=fraction, seed=seed,
                  augment=augment, list_file=list_file)
    if cls.dataset_name == "folder":
        return cls(root, split, num_classes, size, depth, spec=spec, **kwargs)
    if spec is not None:
        raise DadaError(f"spec= is for the 'folder' dataset only, not {name!r}")
    return cls(root, split, num_classes, size, depth, **kwargs)
