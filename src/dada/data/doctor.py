"""``dada doctor DATASET ROOT``: check a dataset folder before anyone spends GPU hours on it.

Checks, per split: the layout, the counts, that every file pairs up (image ↔ label ↔ depth), that every
file's header reads and that each label (and depth) has its image's size, then fully decodes a few
samples through :func:`build_dataset` (so label values and depth go through the real loaders) and says
whether depth ranges are plausible. Problems (which make the dataset unusable) name the files; warnings
do not block. Exit status: 0 when usable, 2 otherwise.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dada.data import classes
from dada.data.datasets import (
    DATASET_NAMES,
    INVERSE_DEPTH_SCALE,
    SYNTHIA_LABEL_DIRS,
    CityscapesDataset,
    build_dataset,
    read_list_file,
    synthia_depth_dir,
    synthia_label_dir,
)
from dada.data.readers import IMAGE_SUFFIXES, image_size, list_files
from dada.errors import DadaError

SHOWN = 5  # file names shown per problem
EXPECTED_COUNTS = {("synthia", "all"): 9400, ("cityscapes", "train"): 2975, ("cityscapes", "val"): 500,
                   ("mapillary", "training"): 18000, ("mapillary", "validation"): 2000}


@dataclass
class SplitFiles:
    """One split's files, keyed by what pairs them (a file name or stem)."""

    split: str
    images: dict[str, Path]
    labels: dict[str, Path] | None = None
    depth: dict[str, Path] | None = None
    label_folder: str = ""
    depth_folder: str = ""


@dataclass
class Report:
    dataset: str
    root: Path
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems

    def add(self, topic: str, text: str) -> None:
        self.lines.append(f"  {topic:<9} {text}")

    def render(self) -> str:
        out = [f"dada doctor {self.dataset} {self.root}", *self.lines]
        out += [f"  warning   {w}" for w in self.warnings]
        if self.problems:
            out.append(f"problems ({len(self.problems)}):")
            out += [f"  - {p}" for p in self.problems]
            out.append("result: NOT usable: fix the problems above")
        else:
            out.append("result: usable")
        return "\n".join(out)


def _shown(names: list[str]) -> str:
    names = sorted(names)
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _by_key(folder: Path, suffixes: tuple[str, ...], key: Callable[[str], str | None]) -> dict[str, Path]:
    out = {}
    for name in list_files(folder, suffixes):
        k = key(name)
        if k is not None:
            out[k] = folder / name
    return out


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _cities(folder: Path, suffix: str) -> dict[str, Path]:
    """Cityscapes ``<city>/<stem><suffix>`` files keyed by ``<city>/<stem>``."""
    return {f"{c}/{p.name[: -len(suffix)]}": p for c, p in
            ((name.split("/")[0], folder / name) for name in CityscapesDataset.discover(folder, suffix))}


# ----------------------------------------------------------------------------------------- layouts
def _missing(folder: Path, root: Path, report: Report, hint: str) -> bool:
    if folder.is_dir():
        return False
    report.problems.append(f"{folder.relative_to(root)}/ is missing under {root}: {hint}")
    return True


def _synthia_layout(root: Path, report: Report, spec) -> list[SplitFiles]:
    rgb = root / "RGB"
    if _missing(rgb, root, report, "a SYNTHIA-RAND-CITYSCAPES root holds RGB/, GT/LABELS/ (or "
                                    "parsed_LABELS/) and Depth/"):
        return []
    files = SplitFiles("all", _by_key(rgb, (".png",), lambda n: n))
    try:
        label_dir, label_format = synthia_label_dir(root)
        files.labels = _by_key(label_dir, (".png",), lambda n: n)
        files.label_folder = f"{label_dir.relative_to(root)}/"
        kind = next(what for _, fmt, what in SYNTHIA_LABEL_DIRS if fmt == label_format)
        report.add("labels", f"{files.label_folder} ({kind})")
    except DadaError:
        report.problems.append("no labels: expected parsed_LABELS/ or GT/LABELS/ "
                               "(source training needs them)")
    try:
        depth_dir = synthia_depth_dir(root)
        files.depth = _by_key(depth_dir, (".png",), lambda n: n)
        files.depth_folder = f"{depth_dir.relative_to(root)}/"
    except DadaError:
        report.warnings.append("no depth in Depth/ or Depth/Depth/: DADA needs it (source-only and AdvEnt "
                               "do not)")
    splits = [files]
    for list_path in sorted(root.glob("*.txt")):
        try:
            names = read_list_file(list_path)
        except DadaError as error:
            report.problems.append(str(error))
            continue
        missing = [n for n in names if n not in files.images]
        if missing:
            report.problems.append(f"list file {list_path.name} names {len(missing)} image(s) missing in "
                                   f"RGB/: {_shown(missing)}")
        splits.append(SplitFiles(list_path.stem, {n: files.images[n] for n in names if n in files.images},
                                 files.labels, files.depth, files.label_folder, files.depth_folder))
    return splits


def _cityscapes_layout(root: Path, report: Report, spec) -> list[SplitFiles]:
    images_root = root / "leftImg8bit"
    if _missing(images_root, root, report, "a Cityscapes root holds leftImg8bit/<split>/<city>/ and "
                                           "gtFine/<split>/<city>/"):
        return []
    splits = []
    for split in sorted(p.name for p in images_root.iterdir() if p.is_dir()):
        files = SplitFiles(split, _cities(images_root / split, "_leftImg8bit.png"))
        if (root / "gtFine" / split).is_dir():
            files.labels = _cities(root / "gtFine" / split, "_gtFine_labelIds.png")
            files.label_folder = f"gtFine/{split}/"
        elif split == "val":
            report.warnings.append("gtFine/val/ is missing: evaluation on Cityscapes val needs it")
        if (root / "disparity" / split).is_dir():
            files.depth = _cities(root / "disparity" / split, "_disparity.png")
            files.depth_folder = f"disparity/{split}/"
        splits.append(files)
    if "train" not in [s.split for s in splits]:
        report.problems.append("leftImg8bit/train/ is missing: adaptation trains on the target's "
                               "train images")
    return splits


def _mapillary_layout(root: Path, report: Report, spec) -> list[SplitFiles]:
    splits = []
    for split, candidates in (("training", ("training", "train")), ("validation", ("validation", "val"))):
        folder = next((root / c for c in candidates if (root / c).is_dir()), None)
        if folder is None:
            report.problems.append(f"{'/ or '.join(candidates)}/ is missing under {root}")
            continue
        if not (folder / "images").is_dir():
            report.problems.append(f"{folder.name}/images/ is missing")
            continue
        files = SplitFiles(folder.name, _by_key(folder / "images", (".jpg", ".jpeg", ".png"), _stem))
        if (folder / "labels").is_dir():
            files.labels = _by_key(folder / "labels", (".png",), _stem)
            files.label_folder = f"{folder.name}/labels/"
        elif split == "validation":
            report.problems.append(f"{folder.name}/labels/ is missing: evaluation needs the labels")
        splits.append(files)
    return splits


def _folder_layout(root: Path, report: Report, spec) -> list[SplitFiles]:
    from dada.data.folder import DEPTH_SUFFIXES, FolderSpec, load_spec

    try:
        data, source = load_spec(spec, root)
        parsed = FolderSpec(data, source, int(data.get("num_classes", 16)))
    except DadaError as error:
        report.problems.append(str(error))
        return []
    report.add("spec", f"{source}: {parsed.class_set.num_classes} classes, labels as {parsed.label_format}"
               + (f", depth {parsed.depth_format} ({parsed.depth_kind})" if parsed.has_depth_spec else ""))
    if _missing(root / "images", root, report, "a folder dataset holds images/, optional labels/ "
                                               "and depth/"):
        return []
    files = SplitFiles("all", _by_key(root / "images", IMAGE_SUFFIXES, _stem))
    if (root / "labels").is_dir():
        files.labels, files.label_folder = _by_key(root / "labels", IMAGE_SUFFIXES, _stem), "labels/"
    if (root / "depth").is_dir():
        files.depth = _by_key(root / "depth", DEPTH_SUFFIXES[parsed.depth_format], _stem)
        files.depth_folder = "depth/"
        if not parsed.has_depth_spec:
            report.problems.append(f"depth/ exists but {source} has no 'depth' section saying how it "
                                   f"is encoded")
    return [files]


LAYOUTS = {"synthia": _synthia_layout, "cityscapes": _cityscapes_layout, "mapillary": _mapillary_layout,
           "folder": _folder_layout}


# ------------------------------------------------------------------------------------------ checks
def _check_pairs(files: SplitFiles, report: Report) -> None:
    for companions, folder, what in ((files.labels, files.label_folder, "label"),
                                     (files.depth, files.depth_folder, "depth")):
        if companions is None:
            continue
        lonely = [str(files.images[k].name) for k in files.images if k not in companions]
        if lonely:
            report.problems.append(f"{files.split}: {len(lonely)} image(s) without a {what} file in "
                                   f"{folder}: {_shown(lonely)}")
        orphans = [companions[k].name for k in companions if k not in files.images]
        if orphans:
            report.warnings.append(f"{files.split}: {len(orphans)} {what} file(s) in {folder} without an "
                                   f"image: {_shown(orphans)}")


def _check_headers(files: SplitFiles, report: Report) -> int:
    """Read every image's header and compare label/depth sizes; returns how many images were read."""
    bad, mismatched = [], []
    for key, path in files.images.items():
        try:
            size = image_size(path)
        except DadaError:
            bad.append(path.name)
            continue
        for companions in (files.labels, files.depth):
            if companions is None or key not in companions:
                continue
            other = companions[key]
            try:
                other_size = np.load(other, mmap_mode="r").shape[-2:] if other.suffix == ".npy" \
                    else image_size(other)
            except (DadaError, OSError, ValueError):
                bad.append(other.name)
                continue
            if tuple(other_size) != tuple(size):
                mismatched.append(f"{other.name} ({other_size[1]}×{other_size[0]} vs image "
                                  f"{size[1]}×{size[0]})")
    if bad:
        report.problems.append(f"{files.split}: {len(bad)} file(s) are not readable images: {_shown(bad)}")
    if mismatched:
        report.problems.append(f"{files.split}: {len(mismatched)} label/depth file(s) differ in size from "
                               f"their image: {_shown(mismatched)}")
    return len(files.images)


def _sample_indices(count: int, samples: int) -> list[int]:
    if count <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, num=min(samples, count))})


def _decode_samples(dataset: str, root: Path, files: SplitFiles, report: Report, spec, samples: int) -> None:
    num_classes = 7 if dataset == "mapillary" else 16
    if dataset == "folder":
        from dada.data.folder import load_spec

        num_classes = int(load_spec(spec, root)[0].get("num_classes", 16))
    use_depth = files.depth is not None and dataset != "mapillary"
    try:
        ds = build_dataset(dataset, root, files.split, num_classes, depth=use_depth,
                           labels=files.labels is not None, label_size="native", spec=spec,
                           list_file=root / f"{files.split}.txt" if dataset in ("synthia", "folder")
                           and files.split != "all" else None)
    except DadaError as error:
        report.problems.append(f"{files.split}: {error}")
        return
    class_names = classes.class_set(num_classes).names
    seen: set[int] = set()
    ignored = total = 0
    depth_values = []
    decoded = []
    for index in _sample_indices(len(ds), samples):
        try:
            item = ds[index]
        except DadaError as error:
            report.problems.append(f"{files.split}: {error}")
            continue
        decoded.append(item["name"])
        if "label" in item:
            label = item["label"].numpy()
            seen.update(int(v) for v in np.unique(label) if v != classes.IGNORE_INDEX)
            ignored += int((label == classes.IGNORE_INDEX).sum())
            total += label.size
        if "depth" in item:
            depth_values.append(item["depth"].numpy().ravel())
    if not decoded:
        return
    text = f"{files.split}: {len(decoded)} decoded ({', '.join(decoded[:3])})"
    if total:
        text += f"; classes {', '.join(class_names[c] for c in sorted(seen)) or 'none'}; " \
                f"{100.0 * ignored / total:.1f}% ignored"
        if ignored == total and (dataset, files.split) == ("cityscapes", "test"):
            text += " (Cityscapes test labels are withheld: expected)"
        elif ignored == total:
            report.problems.append(f"{files.split}: every label pixel of the samples is ignored (255): wrong "
                                   f"label files (e.g. labelTrainIds or colour images instead of raw ids)?")
    report.add("samples", text)
    if depth_values:
        _check_depth(dataset, files.split, np.concatenate(depth_values), report)


def _check_depth(dataset: str, split: str, values: np.ndarray, report: Report) -> None:
    if dataset == "cityscapes":
        valid = values[np.isfinite(values)]
        if valid.size == 0:
            report.problems.append(f"{split}: disparity has no valid pixel (all 0) in the samples")
            return
        report.add("depth", f"{split}: disparity {valid.min():.2f}–{valid.max():.2f} px, "
                            f"{100.0 * (1 - valid.size / values.size):.1f}% invalid")
        return
    # SYNTHIA and folder: inverse depth 65536 / (cm + 1)
    centimetres = INVERSE_DEPTH_SCALE / values.astype(np.float64) - 1.0
    near, far = float(centimetres.min()) / 100.0, float(centimetres.max()) / 100.0
    at_far = float(np.mean(values <= 1.0))
    report.add("depth", f"{split}: {near:.2f}–{far:.2f} m (inverse depth {values.min():.3g}–"
                        f"{values.max():.3g}), {100.0 * at_far:.1f}% at the far plane")
    if math.isclose(near, far):
        report.problems.append(f"{split}: depth is constant ({near:.2f} m) in every sample: wrong files or "
                               f"encoding")
    elif far < 1.0:
        report.warnings.append(f"{split}: the farthest depth is {far:.2f} m: check the depth scale/units")
    if at_far > 0.9:
        report.warnings.append(f"{split}: {100 * at_far:.0f}% of depth pixels are invalid or beyond 655 m: "
                               f"check the depth scale/units")


# --------------------------------------------------------------------------------------------- entry
def diagnose(dataset: str, root: str | os.PathLike, *, spec: Any = None, samples: int = 3) -> Report:
    """Check ``root`` as a ``dataset`` folder; raises DadaError only when ``root`` is not a folder."""
    dataset = str(dataset).lower()
    if dataset not in LAYOUTS:
        raise DadaError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASET_NAMES)}")
    root = Path(root)
    if not root.is_dir():
        raise DadaError(f"dataset folder {root} does not exist (or is not a folder)")
    report = Report(dataset, root)
    for files in LAYOUTS[dataset](root, report, spec):
        if files.split != "all" and dataset == "synthia":
            # a list-file split shares the files of 'all', checked there
            report.add("split", f"{files.split}: {len(files.images)} images listed in {files.split}.txt")
            continue
        counts = [f"{len(files.images)} images"]
        if files.labels is not None:
            counts.append(f"{len(files.labels)} labels in {files.label_folder}")
        if files.depth is not None:
            counts.append(f"{len(files.depth)} depth in {files.depth_folder}")
        expected = EXPECTED_COUNTS.get((dataset, files.split))
        report.add("split", f"{files.split}: {', '.join(counts)}")
        built_in = (root.parent / "benchmark.json").is_file()  # the built-in benchmark: its own counts
        if expected and len(files.images) != expected and not built_in:
            report.warnings.append(f"{files.split}: {len(files.images)} images where the full dataset has "
                                   f"{expected}")
        if not files.images:
            report.problems.append(f"{files.split}: no images")
            continue
        problems_before = len(report.problems)
        _check_pairs(files, report)
        read = _check_headers(files, report)
        report.add("files", f"{files.split}: {read} image headers read"
                   + (", sizes match" if len(report.problems) == problems_before else ""))
        if len(report.problems) == problems_before:
            _decode_samples(dataset, root, files, report, spec, samples)
    return report


def run_doctor(dataset: str, root: str | os.PathLike, *, spec: Any = None, samples: int = 3,
               out=None) -> int:
    """Print the report; 0 when the dataset is usable, 2 when not."""
    report = diagnose(dataset, root, spec=spec, samples=samples)
    print(report.render(), file=out or sys.stdout)
    if not report.usable:
        print(f"dada doctor: error: {len(report.problems)} problem(s) in {report.root}", file=sys.stderr)
        return 2
    return 0


__all__ = ["Report", "diagnose", "run_doctor"]
