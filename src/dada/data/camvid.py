"""CamVid (11 classes) in the layout of the SegNet distribution: its on-disk layout, reader and writer.

Layout under ``ROOT``: ``<split>/<name>.png`` (or ``.jpg``) RGB frames (480×360 in the original) and
``<split>annot/<name>.png`` label maps, 8-bit single-channel PNGs of ids 0..10 with 11 = void (read as
:data:`~dada.data.classes.IGNORE_INDEX`); splits ``train``, ``val``, ``test``. Frames and labels pair by
file stem. A training target needs only ``<split>/`` (``labels=False``).

Labels are always the 11 CamVid classes (:data:`~dada.data.classes.CLASSES_CAMVID11`). A model of another
class set (the 16 SYNTHIA∩Cityscapes classes of a synthetic source) is evaluated on them by merging its
predictions (:mod:`dada.evaluation.classmap`): build the dataset with the model's ``num_classes`` and
``label_size='native'``; its ``label_class_set`` tells the evaluator which classes the labels hold.
Training on the labels (the oracle) needs ``num_classes=11``. CamVid has no depth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dada.data.base import (
    WRITER,
    Findings,
    PngFormat,
    Record,
    SampleWriter,
    SegmentationDataset,
    SplitFiles,
    apply_lut,
    files_by_key,
    read_list_file,
)
from dada.data.classes import CLASSES_CAMVID11, IGNORE_INDEX
from dada.data.readers import list_files, read_label_pil
from dada.errors import DadaError

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: the label id of void (ignored in training and evaluation)
VOID_ID = 11
LABELS = PngFormat("CamVid label", (8,), (1,), "8-bit single-channel PNG of ids 0..10, 11 = void")
#: raw id → train id: 0..10 themselves, 11 (void) → 255; any other value is refused (−1)
LUT = np.full(256, -1, dtype=np.int16)
LUT[:VOID_ID] = np.arange(VOID_ID)
LUT[VOID_ID] = IGNORE_INDEX
EXPECTED = "CamVid label ids 0..10 and 11 (void): an 8-bit map of class ids, not a colour image"


def label_folder(split: str) -> str:
    """``train`` → ``trainannot`` (the SegNet distribution's name)."""
    return f"{split}annot"


def stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _stem_index(folder: Path, suffixes: tuple[str, ...]) -> dict[str, str]:
    """Stem → file name of ``folder``'s files; two files of one stem (``a.png`` and ``a.jpg``) are refused."""
    index: dict[str, str] = {}
    for name in list_files(folder, suffixes):
        if stem(name) in index:
            raise DadaError(f"{folder} holds both {index[stem(name)]} and {name}: keep one file per frame")
        index[stem(name)] = name
    return index


# ------------------------------------------------------------------------------------------- reader
class CamVidDataset(SegmentationDataset):
    """CamVid frames (``<split>/``) and, with ``labels=True``, their label maps (``<split>annot/``)."""

    dataset_name = "camvid"
    label_class_set = CLASSES_CAMVID11

    def __init__(self, root, split, num_classes=11, size=None, depth=False, **kwargs):
        if depth:
            raise DadaError("CamVid has no depth: build it with depth=False (depth metrics and IoU by depth "
                            "are skipped on it)")
        self.model_classes = int(num_classes)
        training_labels = kwargs.get("labels", True) and kwargs.get("label_size", "input") == "input"
        if self.model_classes != CLASSES_CAMVID11.num_classes and training_labels:
            raise DadaError(f"CamVid's labels have 11 classes; a {self.model_classes}-class model cannot "
                            f"train on them: set model.num_classes=11 (a {self.model_classes}-class model is "
                            f"evaluated on CamVid by merging its predictions, with label_size='native')")
        super().__init__(root, split, CLASSES_CAMVID11.num_classes, size, False, **kwargs)

    def _list_records(self) -> list[Record]:
        image_dir = self.root / self.split
        if not image_dir.is_dir():
            found = [s for s in SPLITS if (self.root / s).is_dir()]
            raise DadaError(f"CamVid split {self.split!r} not found: {image_dir} is not a folder (splits "
                            f"found under {self.root}: {', '.join(found) or 'none'}; the layout is "
                            f"<split>/ frames and <split>annot/ labels, see docs/camvid.md)")
        images = _stem_index(image_dir, IMAGE_SUFFIXES)
        if not images:
            raise DadaError(f"CamVid folder {image_dir} holds no frames (.png or .jpg): copy the "
                            f"{self.split} frames there")
        if self.list_file is not None:
            wanted = [stem(n) for n in read_list_file(self.list_file)]
            missing = [n for n in wanted if n not in images]
            if missing:
                raise DadaError(f"list file {self.list_file} names {len(missing)} frame(s) not in "
                                f"{image_dir}: {', '.join(missing[:5])}")
        else:
            wanted = sorted(images)
        self.label_dir = None
        if self.use_labels:
            self.label_dir = self.root / label_folder(self.split)
            if not self.label_dir.is_dir():
                raise DadaError(f"CamVid labels of split {self.split!r} not found: {self.label_dir} is not a "
                                f"folder (evaluation and the oracle need <split>annot/<name>.png)")
            labels = _stem_index(self.label_dir, (".png",))
            lonely = [images[k] for k in wanted if k not in labels]
            if lonely:
                raise DadaError(f"{len(lonely)} CamVid frame(s) of {image_dir} have no label in "
                                f"{self.label_dir}: {', '.join(lonely[:5])}"
                                f"{' and more' if len(lonely) > 5 else ''}; each frame <name>.png|jpg needs "
                                f"{label_folder(self.split)}/<name>.png (or remove the frame)")
        return [Record(images[k], image_dir / images[k],
                       self.label_dir / f"{k}.png" if self.label_dir is not None else None) for k in wanted]

    def _read_label(self, record: Record) -> np.ndarray:
        LABELS.check(record.label)
        return apply_lut(read_label_pil(record.label), LUT, record.label, EXPECTED)

    @classmethod
    def survey(cls, root: Path, report: Findings, spec: Any = None) -> list[SplitFiles]:
        splits = []
        for split in SPLITS:
            folder = root / split
            if not folder.is_dir():
                if split == "test":
                    report.add("split", "test: absent (fine: only an independent check needs it)")
                elif split == "train":
                    report.warnings.append(f"train/ is missing under {root}: a CamVid target needs its "
                                           f"frames for training")
                else:
                    report.warnings.append(f"{split}/ is missing under {root}: evaluation needs it")
                continue
            files = SplitFiles(split, files_by_key(folder, IMAGE_SUFFIXES, stem), label_format=LABELS)
            if (root / label_folder(split)).is_dir():
                files.labels = files_by_key(root / label_folder(split), (".png",), stem)
                files.label_folder = f"{label_folder(split)}/"
            else:
                report.warnings.append(f"{label_folder(split)}/ is missing: split {split} can be a training "
                                       f"target (frames only) but not evaluated")
            splits.append(files)
        if not splits:
            report.problems.append(f"no CamVid split under {root}: expected train/, val/ (and their "
                                   f"trainannot/, valannot/ label folders)")
        return splits


# ------------------------------------------------------------------------------------------- writer
def write_camvid(root: str | os.PathLike, split: str, name: str, rgb: np.ndarray,
                 label_ids: np.ndarray | None = None, *, suffix: str = ".png", quality: int = 95,
                 writer: SampleWriter = WRITER) -> None:
    """One CamVid sample: ``<split>/<name><suffix>`` (``.png`` or ``.jpg``, JPEG ``quality``) and, given
    ``label_ids`` (ids 0..10, 11 = void), the 8-bit ``<split>annot/<name>.png``."""
    if suffix not in IMAGE_SUFFIXES:
        raise DadaError(f"CamVid frames are {', '.join(IMAGE_SUFFIXES)}, got {suffix!r}")
    root = Path(root)
    writer.rgb(root / split / f"{name}{suffix}", rgb, quality=quality)
    if label_ids is not None:
        writer.png(root / label_folder(split) / f"{name}.png", np.asarray(label_ids, dtype=np.uint8))


__all__ = ["CamVidDataset", "LABELS", "SPLITS", "VOID_ID", "label_folder", "write_camvid"]
