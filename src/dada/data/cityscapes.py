"""Cityscapes: its on-disk layout, reader and writer.

Layout under ``ROOT``, per split (``train``, ``val``, ``test``) and city:

* ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png``: 8-bit RGB;
* ``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png``: 8-bit single-channel labelIds 0..33 (optional:
  training on the target needs none);
* ``disparity/<split>/<city>/<stem>_disparity.png``: 16-bit single-channel, ``p = 256·d + 1`` with
  ``p = 0`` invalid (depth diagnostics only).

Image names are relative to ``leftImg8bit/<split>/`` (``aachen/aachen_000000_000019_leftImg8bit.png``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

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
    missing_folder,
    read_list_file,
)
from dada.data.classes import IGNORE_INDEX
from dada.data.readers import list_files, read_label_pil, read_png16, require_dir
from dada.errors import DadaError

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
DISPARITY_SUFFIX = "_disparity.png"
LABELS = PngFormat("Cityscapes label", (8,), (1,), "8-bit labelIds, the *_gtFine_labelIds.png files")
DISPARITY = PngFormat("Cityscapes disparity", (16,), (1,), "16-bit single-channel p = 256·d + 1")


def companion(name: str, suffix: str) -> str:
    """``city/x_leftImg8bit.png`` → ``city/x<suffix>``."""
    stem = name[: -len(IMAGE_SUFFIX)] if name.endswith(IMAGE_SUFFIX) else os.path.splitext(name)[0]
    return stem + suffix


def discover(folder: Path, suffix: str) -> list[str]:
    """``<city>/<file>`` names of the files ending in ``suffix`` in ``folder``'s city folders, sorted."""
    names = []
    for city in sorted(os.listdir(folder)):
        city_dir = folder / city
        if city_dir.is_dir():
            names += [f"{city}/{n}" for n in list_files(city_dir, (suffix,)) if n.endswith(suffix)]
    return names


def by_stem(folder: Path, suffix: str) -> dict[str, Path]:
    """The ``<city>/<stem><suffix>`` files of ``folder`` keyed by ``<city>/<stem>``."""
    return {name[: -len(suffix)]: folder / name for name in discover(folder, suffix)}


def disparity_from_png(raw: np.ndarray) -> np.ndarray:
    """Disparity = (p − 1) / 256 for p > 0; p = 0 is invalid → NaN."""
    raw = raw.astype(np.float32)
    disparity = (raw - np.float32(1.0)) / np.float32(256.0)
    return np.where(raw > 0, disparity, np.float32(np.nan)).astype(np.float32)


def disparity_png(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The inverse of :func:`disparity_from_png`: ``p = round(256·d) + 1`` (clipped to 1..65535) where
    ``valid``, 0 elsewhere (uint16)."""
    return np.where(valid, np.clip(np.rint(disparity * 256.0) + 1, 1, 65535), 0).astype(np.uint16)


# ------------------------------------------------------------------------------------------- reader
class CityscapesDataset(SegmentationDataset):
    """Cityscapes. The file list is discovered from disk (sorted) or read from ``list_file`` (lines such
    as ``aachen/aachen_000000_000019_leftImg8bit.png``, relative to ``leftImg8bit/<split>/``). Without a
    ``gtFine/<split>`` folder, or with ``labels=False``, items carry no label."""

    dataset_name = "cityscapes"
    IMAGE_SUFFIX = IMAGE_SUFFIX
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
            names = discover(image_root, IMAGE_SUFFIX)
        self.label_dir = None
        label_root = self.root / "gtFine" / self.split
        if self.use_labels and label_root.is_dir():
            self.label_dir = label_root
            self._check_companions(names, label_root, LABEL_SUFFIX, "label")
        self.depth_dir = None
        if self.use_depth:
            self.depth_dir = require_dir(self.root / "disparity" / self.split,
                                         "Cityscapes depth diagnostics read disparity/<split>/<city>/ "
                                         "*_disparity.png (or build the dataset with depth=False)")
            self._check_companions(names, self.depth_dir, DISPARITY_SUFFIX, "disparity")
        return [Record(n, image_root / n,
                       self.label_dir / companion(n, LABEL_SUFFIX) if self.label_dir else None,
                       self.depth_dir / companion(n, DISPARITY_SUFFIX) if self.depth_dir else None)
                for n in names]

    @staticmethod
    def discover(image_root: Path, suffix: str) -> list[str]:
        return discover(image_root, suffix)

    @staticmethod
    def _check_companions(names, folder: Path, suffix: str, what: str) -> None:
        missing = [n for n in names if not (folder / companion(n, suffix)).is_file()]
        if missing:
            listed = ", ".join(companion(n, suffix) for n in missing[:5])
            raise DadaError(f"{len(missing)} {what} file(s) missing in {folder}: {listed}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                            + (" (pass labels=False to train on the target without labels)"
                               if what == "label" else ""))

    def _read_label(self, record: Record) -> np.ndarray:
        LABELS.check(record.label)
        raw = read_label_pil(record.label)
        return apply_lut(raw, self._lut, record.label,
                         "Cityscapes labelIds 0..33 (the *_gtFine_labelIds.png files, not labelTrainIds "
                         "or color)")

    def _read_depth(self, record: Record) -> np.ndarray:
        DISPARITY.check(record.depth)
        raw = read_png16(record.depth, "disparity")
        if raw.ndim != 2:
            raise DadaError(f"disparity file {record.depth} has {raw.shape[2]} channels, expected one "
                            f"(16-bit Cityscapes disparity)")
        return raw  # converted after resizing (nearest), so that p = 0 stays exact

    def _depth_geometry(self, depth: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        return disparity_from_png(super()._depth_geometry(depth, input_hw))

    @classmethod
    def survey(cls, root: Path, report: Findings, spec: Any = None) -> list[SplitFiles]:
        images_root = root / "leftImg8bit"
        if missing_folder(images_root, root, report, "a Cityscapes root holds leftImg8bit/<split>/<city>/ "
                                                     "and gtFine/<split>/<city>/"):
            return []
        splits = []
        for split in sorted(p.name for p in images_root.iterdir() if p.is_dir()):
            files = SplitFiles(split, by_stem(images_root / split, IMAGE_SUFFIX), label_format=LABELS,
                               depth_format=DISPARITY)
            if (root / "gtFine" / split).is_dir():
                files.labels = by_stem(root / "gtFine" / split, LABEL_SUFFIX)
                files.label_folder = f"gtFine/{split}/"
            elif split == "val":
                report.warnings.append("gtFine/val/ is missing: evaluation on Cityscapes val needs it")
            if (root / "disparity" / split).is_dir():
                files.depth = by_stem(root / "disparity" / split, DISPARITY_SUFFIX)
                files.depth_folder = f"disparity/{split}/"
            splits.append(files)
        if "train" not in [s.split for s in splits]:
            report.problems.append("leftImg8bit/train/ is missing: adaptation trains on the target's "
                                   "train images")
        return splits


# ------------------------------------------------------------------------------------------- writer
def write_cityscapes(root: str | os.PathLike, split: str, city: str, stem: str, rgb: np.ndarray,
                     label_ids: np.ndarray | None = None, disparity_png: np.ndarray | None = None, *,
                     writer: SampleWriter = WRITER) -> str:
    """One Cityscapes sample (``stem`` such as ``aachen_000000_000019``): ``rgb`` (H×W×3 uint8),
    ``label_ids`` (labelIds) and ``disparity_png`` (the 16-bit file values, see :func:`disparity_png`);
    returns the image's name relative to ``leftImg8bit/<split>/``."""
    root = Path(root)
    name = f"{city}/{stem}{IMAGE_SUFFIX}"
    writer.rgb(root / "leftImg8bit" / split / name, rgb)
    if label_ids is not None:
        writer.png(root / "gtFine" / split / city / f"{stem}{LABEL_SUFFIX}", np.asarray(label_ids, np.uint8))
    if disparity_png is not None:
        writer.png(root / "disparity" / split / city / f"{stem}{DISPARITY_SUFFIX}",
                   np.asarray(disparity_png, dtype=np.uint16))
    return name
