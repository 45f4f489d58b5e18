"""SYNTHIA-RAND-CITYSCAPES: its on-disk layout, reader and writer.

Layout under ``ROOT``:

* ``RGB/<name>.png``: 8-bit RGB;
* labels, in order of preference: ``parsed_LABELS/<name>.png`` (the official side download: one channel
  of raw SYNTHIA ids) or the raw ``GT/LABELS/<name>.png``: 16-bit, 3 channels, the class id in the first
  channel in RGB order (OpenCV's BGR index 2), the instance id in the second;
* ``Depth/<name>.png`` or ``Depth/Depth/<name>.png`` (the raw archive's layout): 16-bit depth in
  centimetres (3 equal channels in the archive), read with OpenCV's ``IMREAD_ANYDEPTH`` as the official
  ``get_depth`` and turned into inverse depth ``65536 / (raw + 1)``;
* optional list files ``ROOT/<split>.txt`` (one ``RGB/`` file name per line); split ``all`` is every
  file of ``RGB/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dada.data import classes
from dada.data.base import (
    MAX_RAW_DEPTH,
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
    inverse_depth_from_raw,
    missing_folder,
    read_list_file,
    shown,
)
from dada.data.readers import list_files, read_anydepth, read_label_pil, read_png16, require_dir
from dada.errors import DadaError

RGB_DIR = "RGB"
DEPTH_DIRS = ("Depth", "Depth/Depth")
LAYOUT_HINT = "a SYNTHIA-RAND-CITYSCAPES root holds RGB/, GT/LABELS/ (or parsed_LABELS/) and Depth/"

RAW_LABELS = PngFormat("SYNTHIA GT/LABELS label", (16,), (1, 3, 4),
                       "raw 16-bit, class id in the first channel")
PARSED_LABELS = PngFormat("SYNTHIA parsed_LABELS label", (8, 16), (1,), "single-channel raw ids")
DEPTH = PngFormat("SYNTHIA depth", (16,), (1, 3, 4), "depth in centimetres, 16-bit")
#: label folders in order of preference: (sub-folder, format name, file format)
LABEL_DIRS = (("parsed_LABELS", "parsed", PARSED_LABELS), ("GT/LABELS", "raw", RAW_LABELS))


def label_dir(root: Path) -> tuple[Path, str]:
    """The label folder and its format: ``parsed_LABELS/`` (the official side download) when present,
    else the raw ``GT/LABELS/``."""
    for sub, label_format, _ in LABEL_DIRS:
        if (root / sub).is_dir():
            return root / sub, label_format
    raise DadaError(f"no SYNTHIA labels under {root}: expected parsed_LABELS/ or GT/LABELS/ "
                    f"(or build the dataset with labels=False)")


def label_format(name: str) -> PngFormat:
    return next(fmt for _, label_kind, fmt in LABEL_DIRS if label_kind == name)


def depth_dir(root: Path) -> Path:
    """``Depth/`` when it holds the PNGs, else ``Depth/Depth/`` (the raw archive's layout)."""
    for sub in DEPTH_DIRS:
        folder = root / sub
        if folder.is_dir() and list_files(folder):
            return folder
    raise DadaError(f"no SYNTHIA depth under {root}: expected PNGs in Depth/ or Depth/Depth/ "
                    f"(or build the dataset with depth=False)")


def raw_label_ids(array: np.ndarray, path: Path) -> np.ndarray:
    """Class ids from a raw ``GT/LABELS`` PNG decoded by OpenCV (BGR): the first channel in RGB order,
    i.e. BGR index 2 (the second RGB channel holds the instance id). Single-channel files pass through."""
    if array.ndim == 2:
        return array
    if array.shape[2] < 3:
        raise DadaError(f"label file {path} has {array.shape[2]} channels, expected 1 or 3")
    return np.ascontiguousarray(array[:, :, 2])


# ------------------------------------------------------------------------------------------- reader
class SynthiaDataset(SegmentationDataset):
    """SYNTHIA-RAND-CITYSCAPES. Split ``all`` = every file in ``RGB/`` sorted; any other name ``X`` reads
    ``ROOT/X.txt`` (or ``list_file``)."""

    dataset_name = "synthia"
    KNOWN_IDS = tuple(classes.SYNTHIA_IDS.values())

    def _list_records(self) -> list[Record]:
        rgb_dir = require_dir(self.root / RGB_DIR, LAYOUT_HINT)
        names = self._split_names(rgb_dir, list_files(rgb_dir))
        self.label_dir, self.label_format = None, None
        if self.use_labels:
            self.label_dir, self.label_format = label_dir(self.root)
            check_paired(names, self.label_dir, set(list_files(self.label_dir)), "label")
        self.depth_dir = None
        if self.use_depth:
            self.depth_dir = depth_dir(self.root)
            check_paired(names, self.depth_dir, set(list_files(self.depth_dir)), "depth")
        return [Record(n, rgb_dir / n, self.label_dir / n if self.label_dir else None,
                       self.depth_dir / n if self.depth_dir else None) for n in names]

    def _read_label(self, record: Record) -> np.ndarray:
        label_format(self.label_format).check(record.label)
        if self.label_format == "parsed":
            raw = read_label_pil(record.label)
        else:
            raw = raw_label_ids(read_png16(record.label, "label"), record.label)
        return apply_lut(raw, self._lut, record.label, "SYNTHIA raw class ids 0..22")

    def _read_depth(self, record: Record) -> np.ndarray:
        DEPTH.check(record.depth)
        return inverse_depth_from_raw(read_anydepth(record.depth, "depth"))

    @classmethod
    def survey(cls, root: Path, report: Findings, spec: Any = None) -> list[SplitFiles]:
        rgb = root / RGB_DIR
        if missing_folder(rgb, root, report, LAYOUT_HINT):
            return []
        files = SplitFiles("all", files_by_key(rgb, (".png",), lambda n: n), depth_format=DEPTH)
        try:
            labels, kind = label_dir(root)
            files.labels = files_by_key(labels, (".png",), lambda n: n)
            files.label_folder = f"{labels.relative_to(root)}/"
            files.label_format = label_format(kind)
            report.add("labels", f"{files.label_folder} ({files.label_format.meaning})")
        except DadaError:
            report.problems.append("no labels: expected parsed_LABELS/ or GT/LABELS/ "
                                   "(source training needs them)")
        try:
            depth = depth_dir(root)
            files.depth = files_by_key(depth, (".png",), lambda n: n)
            files.depth_folder = f"{depth.relative_to(root)}/"
        except DadaError:
            report.warnings.append("no depth in Depth/ or Depth/Depth/: DADA needs it (source-only and "
                                   "AdvEnt do not)")
        splits = [files]
        for list_path in sorted(root.glob("*.txt")):
            try:
                names = read_list_file(list_path)
            except DadaError as error:
                report.problems.append(str(error))
                continue
            missing = [n for n in names if n not in files.images]
            if missing:
                report.problems.append(f"list file {list_path.name} names {len(missing)} image(s) missing "
                                       f"in RGB/: {shown(missing)}")
            splits.append(SplitFiles(list_path.stem, {n: files.images[n] for n in names if n in files.images},
                                     list_file=list_path, shares_files_of="all"))
        return splits


# ------------------------------------------------------------------------------------------- writer
def label_png(class_ids: np.ndarray, instance_ids: np.ndarray | None = None) -> np.ndarray:
    """The raw ``GT/LABELS`` array in OpenCV's BGR order: R = class id, G = instance id, B = 0 (16 bit)."""
    class_ids = np.asarray(class_ids, dtype=np.uint16)
    out = np.zeros(class_ids.shape + (3,), dtype=np.uint16)
    out[:, :, 2] = class_ids
    if instance_ids is not None:
        out[:, :, 1] = np.asarray(instance_ids, dtype=np.uint16)
    return out


def depth_png(depth: np.ndarray) -> np.ndarray:
    """A 16-bit 3-channel depth PNG array: an H×W array of centimetres is copied to the three channels
    (so OpenCV's ANYDEPTH grayscale returns it exactly); an H×W×3 array (BGR) is written as given."""
    depth = np.asarray(depth)
    if depth.ndim == 2:
        depth = np.repeat(depth[:, :, None], 3, axis=2)
    if depth.min() < 0 or depth.max() > MAX_RAW_DEPTH:
        raise DadaError("SYNTHIA depth values must lie in 0..65535")
    return depth.astype(np.uint16)


def centimetres(metres: np.ndarray) -> np.ndarray:
    """Metric depth → SYNTHIA's raw values: rounded centimetres clipped to 0..65535 (uint16)."""
    return np.clip(np.rint(metres * 100.0), 0, MAX_RAW_DEPTH).astype(np.uint16)


def write_synthia(root: str | os.PathLike, name: str, rgb: np.ndarray, class_ids: np.ndarray,
                  depth: np.ndarray | None = None, *, instance_ids: np.ndarray | None = None,
                  labels: str = "raw", depth_folder: str = "Depth", writer: SampleWriter = WRITER) -> None:
    """One SYNTHIA-RAND-CITYSCAPES sample: ``rgb`` (H×W×3 uint8), raw ``class_ids`` and ``depth`` in
    centimetres (H×W, or H×W×3 BGR). ``labels``: 'raw' (``GT/LABELS``) or 'parsed' (``parsed_LABELS``);
    ``depth_folder``: 'Depth' or 'Depth/Depth'."""
    root = Path(root)
    writer.rgb(root / RGB_DIR / name, rgb)
    if labels == "raw":
        writer.png(root / "GT" / "LABELS" / name, label_png(class_ids, instance_ids))
    elif labels == "parsed":
        writer.png(root / "parsed_LABELS" / name, np.asarray(class_ids, dtype=np.uint8))
    else:
        raise DadaError(f"labels must be 'raw' or 'parsed', got {labels!r}")
    if depth_folder not in DEPTH_DIRS:
        raise DadaError(f"depth_folder must be one of {list(DEPTH_DIRS)}, got {depth_folder!r}")
    if depth is not None:
        writer.png(root / depth_folder / name, depth_png(depth))


def write_list(root: str | os.PathLike, split: str, names: list[str]) -> None:
    """``ROOT/<split>.txt``: one ``RGB/`` file name per line."""
    (Path(root) / f"{split}.txt").write_text("".join(n + "\n" for n in names))
