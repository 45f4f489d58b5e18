"""Mapillary Vistas v1.x: its on-disk layout, reader and writer.

Layout under ``ROOT``: ``{training|train,validation|val}/images/<key>.jpg`` and
``.../labels/<key>.png`` (8-bit palette PNGs whose indices are the ids 0..65). Images are letterboxed into
``size`` (default 768×1024, H×W) at the top left with fill 0, as the official code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dada.data import classes
from dada.data.base import (
    WRITER,
    Findings,
    PngFormat,
    Record,
    SampleWriter,
    SegmentationDataset,
    SplitFiles,
    apply_lut,
    check_paired,
    files_by_key,
    read_list_file,
)
from dada.data.classes import IGNORE_INDEX
from dada.data.readers import list_files, read_label_pil, require_dir
from dada.data.transforms import letterbox_shape, pad_to_aspect, paste_top_left, resize_image, resize_label
from dada.errors import DadaError

#: Official letterbox canvas (H, W).
CANVAS = (768, 1024)
#: the split names and the folder names each may have on disk, in order of preference
SPLIT_FOLDERS = {"training": ("training", "train"), "train": ("train", "training"),
                 "validation": ("validation", "val"), "val": ("val", "validation")}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABELS = PngFormat("Mapillary label", (8,), (1,), "8-bit palette PNG of ids 0..65")


def split_folder(root: Path, split: str) -> Path | None:
    """The folder of ``split`` under ``root`` (``training`` or ``train``, ...), None when absent."""
    candidates = SPLIT_FOLDERS.get(split, (split,))
    return next((root / c for c in candidates if (root / c).is_dir()), None)


def label_name(image_name: str) -> str:
    return os.path.splitext(image_name)[0] + ".png"


# ------------------------------------------------------------------------------------------- reader
class MapillaryDataset(SegmentationDataset):
    """Mapillary Vistas v1.x. Labels: ``label_size='input'`` letterboxes them (nearest, padding
    ignored); ``'native'`` keeps their resolution and pads bottom/right to 4:3 with 255 (the official
    evaluation protocol)."""

    dataset_name = "mapillary"
    SPLIT_FOLDERS = SPLIT_FOLDERS
    KNOWN_IDS = tuple(range(len(classes.MAPILLARY_NAMES)))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.size is None:
            self.size = CANVAS
        if self.use_depth:
            raise DadaError("Mapillary Vistas has no depth: build it with depth=False")

    def _list_records(self) -> list[Record]:
        split_dir = split_folder(self.root, self.split)
        if split_dir is None:
            candidates = SPLIT_FOLDERS.get(self.split, (self.split,))
            raise DadaError(f"Mapillary split {self.split!r} not found under {self.root}: expected one of "
                            f"{[str(self.root / c) for c in candidates]}")
        image_dir = require_dir(split_dir / "images", "Mapillary splits hold images/*.jpg and labels/*.png")
        if self.list_file is not None:
            names = read_list_file(self.list_file)
            names = [n if os.path.splitext(n)[1] else n + ".jpg" for n in names]
            check_paired(names, image_dir, set(list_files(image_dir)), "image")
        else:
            names = list_files(image_dir, IMAGE_SUFFIXES)
        self.label_dir = None
        if self.use_labels and (split_dir / "labels").is_dir():
            self.label_dir = split_dir / "labels"
            check_paired([label_name(n) for n in names], self.label_dir,
                         set(list_files(self.label_dir, (".png",))), "label")
        return [Record(n, image_dir / n, self.label_dir / label_name(n) if self.label_dir else None)
                for n in names]

    def _read_label(self, record: Record) -> np.ndarray:
        LABELS.check(record.label)
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

    @classmethod
    def survey(cls, root: Path, report: Findings, spec: Any = None) -> list[SplitFiles]:
        def stem(name: str) -> str:
            return os.path.splitext(name)[0]

        splits = []
        for split in ("training", "validation"):
            folder = split_folder(root, split)
            if folder is None:
                report.problems.append(f"{'/ or '.join(SPLIT_FOLDERS[split])}/ is missing under {root}")
                continue
            if not (folder / "images").is_dir():
                report.problems.append(f"{folder.name}/images/ is missing")
                continue
            files = SplitFiles(folder.name, files_by_key(folder / "images", IMAGE_SUFFIXES, stem),
                               label_format=LABELS)
            if (folder / "labels").is_dir():
                files.labels = files_by_key(folder / "labels", (".png",), stem)
                files.label_folder = f"{folder.name}/labels/"
            elif split == "validation":
                report.problems.append(f"{folder.name}/labels/ is missing: evaluation needs the labels")
            splits.append(files)
        return splits


# ------------------------------------------------------------------------------------------- writer
def palette() -> list[int]:
    """A 256-entry palette for label PNGs (the colours do not matter to readers: ids do)."""
    rng = np.random.default_rng(65)
    return rng.integers(0, 256, size=256 * 3).astype(np.uint8).tolist()


def write_mapillary(root: str | os.PathLike, split: str, key: str, rgb: np.ndarray,
                    label_ids: np.ndarray | None = None, quality: int = 95, *,
                    writer: SampleWriter = WRITER) -> None:
    """One Mapillary Vistas sample: ``<split>/images/<key>.jpg`` (JPEG ``quality``) and a palette
    ``<split>/labels/<key>.png`` of ``label_ids``."""
    root = Path(root)
    writer.rgb(root / split / "images" / f"{key}.jpg", rgb, quality=quality)
    if label_ids is not None:
        label = Image.fromarray(np.asarray(label_ids, dtype=np.uint8), "P")
        label.putpalette(palette())
        writer.pil(root / split / "labels" / f"{key}.png", label, "PNG")
