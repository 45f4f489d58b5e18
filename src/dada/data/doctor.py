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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dada.data import classes
from dada.data.base import INVERSE_DEPTH_SCALE, SplitFiles, shown
from dada.data.datasets import DATASET_NAMES, build_dataset, dataset_class
from dada.data.readers import image_size
from dada.errors import DadaError

EXPECTED_COUNTS = {("synthia", "all"): 9400, ("cityscapes", "train"): 2975, ("cityscapes", "val"): 500,
                   ("mapillary", "training"): 18000, ("mapillary", "validation"): 2000,
                   ("camvid", "train"): 367, ("camvid", "val"): 101, ("camvid", "test"): 233}


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


# ------------------------------------------------------------------------------------------ checks
def _check_pairs(files: SplitFiles, report: Report) -> None:
    for companions, folder, what in ((files.labels, files.label_folder, "label"),
                                     (files.depth, files.depth_folder, "depth")):
        if companions is None:
            continue
        lonely = [str(files.images[k].name) for k in files.images if k not in companions]
        if lonely:
            report.problems.append(f"{files.split}: {len(lonely)} image(s) without a {what} file in "
                                   f"{folder}: {shown(lonely)}")
        orphans = [companions[k].name for k in companions if k not in files.images]
        if orphans:
            report.warnings.append(f"{files.split}: {len(orphans)} {what} file(s) in {folder} without an "
                                   f"image: {shown(orphans)}")


def _header_hw(path: Path) -> tuple[int, int]:
    """(H, W) of a label or depth file from its header (``.npy``: its array's last two axes)."""
    if path.suffix.lower() == ".npy":
        try:
            return tuple(np.load(path, mmap_mode="r").shape[-2:])
        except (OSError, ValueError) as error:
            raise DadaError(f"file {path} is not a readable .npy array ({error})") from None
    return image_size(path)


def _check_headers(files: SplitFiles, report: Report) -> int:
    """Read every image's header; check each label/depth file's format (bit depth, channels, where the
    dataset defines it) and size; returns how many images were read."""
    bad, mismatched, wrong = [], [], []
    sizes: dict[tuple[int, int], list[str]] = {}
    for key, path in files.images.items():
        try:
            size = image_size(path)
        except DadaError:
            bad.append(path.name)
            continue
        sizes.setdefault(tuple(size), []).append(path.name)
        for companions, fmt in ((files.labels, files.label_format), (files.depth, files.depth_format)):
            if companions is None or key not in companions:
                continue
            other = companions[key]
            try:
                problem = fmt.problem(other) if fmt is not None and other.suffix.lower() == ".png" else None
                other_size = None if problem else _header_hw(other)
            except DadaError:
                bad.append(other.name)
                continue
            if problem:
                wrong.append((other.name, problem))
            elif tuple(other_size) != tuple(size):
                mismatched.append(f"{other.name} ({other_size[1]}×{other_size[0]} vs image "
                                  f"{size[1]}×{size[0]})")
    if bad:
        report.problems.append(f"{files.split}: {len(bad)} file(s) are not readable images: {shown(bad)}")
    if wrong:
        report.problems.append(f"{files.split}: {len(wrong)} file(s) of the wrong format "
                               f"({shown([name for name, _ in wrong])}); first: {wrong[0][1]}")
    if mismatched:
        report.problems.append(f"{files.split}: {len(mismatched)} label/depth file(s) differ in size from "
                               f"their image: {shown(mismatched)}")
    if len(sizes) > 1:  # batches need one size: training stacks items
        common = max(sizes, key=lambda s: len(sizes[s]))
        others = [f"{name} ({h}×{w})" for (h, w), names in sizes.items() if (h, w) != common
                  for name in names]
        report.warnings.append(f"{files.split}: the images differ in size ({len(sizes)} sizes; most are "
                               f"{common[1]}×{common[0]} (W×H), not: {shown(others)}): training in batches "
                               f"needs data.<part>.size (resize) or data.<part>.augment.crop")
    return len(files.images)


def _sample_indices(count: int, samples: int | None) -> list[int]:
    """Evenly spread indices of ``samples`` items (every item when ``samples`` is None)."""
    if count <= 0:
        return []
    if samples is None or samples >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, num=samples)})


def _decode_samples(dataset: str, root: Path, files: SplitFiles, report: Report, spec,
                    samples: int | None) -> None:
    num_classes = {"mapillary": 7, "camvid": 11}.get(dataset, 16)
    if dataset == "folder":
        from dada.data.folder import load_spec

        num_classes = int(load_spec(spec, root)[0].get("num_classes", 16))
    use_depth = files.depth is not None and dataset != "mapillary"
    try:
        ds = build_dataset(dataset, root, files.split, num_classes, depth=use_depth,
                           labels=files.labels is not None, label_size="native", spec=spec,
                           list_file=files.list_file)
    except DadaError as error:
        report.problems.append(f"{files.split}: {error}")
        return
    class_names = classes.class_set(num_classes).names
    seen: set[int] = set()
    ignored = total = 0
    depth = DepthStats()
    decoded = []
    failed: list[str] = []
    indices = _sample_indices(len(ds), samples)
    for index in indices:
        try:
            item = ds[index]
        except DadaError as error:
            failed.append(str(error))
            continue
        decoded.append(item["name"])
        if "label" in item:
            label = item["label"].numpy()
            seen.update(int(v) for v in np.unique(label) if v != classes.IGNORE_INDEX)
            ignored += int((label == classes.IGNORE_INDEX).sum())
            total += label.size
        if "depth" in item:
            depth.update(item["depth"].numpy().ravel())
    if failed:
        report.problems.append(f"{files.split}: {failed[0]}" if len(failed) == 1 else
                               f"{files.split}: {len(failed)} of {len(indices)} items fail to decode; "
                               f"first: {failed[0]}")
    scope = "every item" if len(indices) == len(ds) else f"use --all to decode all {len(ds)}"
    report.add("decoded", f"{files.split}: {len(indices)} of {len(ds)} items decoded ({scope})"
               + (f", {len(failed)} failed" if failed else ""))
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
    if depth.total:
        _check_depth(dataset, files.split, depth, report)


@dataclass
class DepthStats:
    """Running range of the decoded depth targets (no arrays kept: ``--all`` may decode thousands)."""

    low: float = math.inf  # of the finite values
    high: float = -math.inf
    finite: int = 0
    total: int = 0
    at_far: int = 0  # inverse depth <= 1: the far plane (SYNTHIA sky, invalid folder pixels)

    def update(self, values: np.ndarray) -> None:
        valid = values[np.isfinite(values)]
        if valid.size:
            self.low, self.high = min(self.low, float(valid.min())), max(self.high, float(valid.max()))
        self.finite += int(valid.size)
        self.total += int(values.size)
        self.at_far += int((valid <= 1.0).sum())


def _check_depth(dataset: str, split: str, stats: DepthStats, report: Report) -> None:
    if dataset == "cityscapes":
        if stats.finite == 0:
            report.problems.append(f"{split}: disparity has no valid pixel (all 0) in the samples")
            return
        report.add("depth", f"{split}: disparity {stats.low:.2f}–{stats.high:.2f} px, "
                            f"{100.0 * (1 - stats.finite / stats.total):.1f}% invalid")
        return
    # SYNTHIA and folder: inverse depth 65536 / (cm + 1); the largest inverse depth is the nearest point
    near = (INVERSE_DEPTH_SCALE / stats.high - 1.0) / 100.0
    far = (INVERSE_DEPTH_SCALE / stats.low - 1.0) / 100.0
    at_far = stats.at_far / max(1, stats.total)
    report.add("depth", f"{split}: {near:.2f}–{far:.2f} m (inverse depth {stats.low:.3g}–"
                        f"{stats.high:.3g}), {100.0 * at_far:.1f}% at the far plane")
    if math.isclose(near, far):
        report.problems.append(f"{split}: depth is constant ({near:.2f} m) in every sample: wrong files or "
                               f"encoding")
    elif far < 1.0:
        report.warnings.append(f"{split}: the farthest depth is {far:.2f} m: check the depth scale/units")
    if at_far > 0.9:
        report.warnings.append(f"{split}: {100 * at_far:.0f}% of depth pixels are invalid or beyond 655 m: "
                               f"check the depth scale/units")


# --------------------------------------------------------------------------------------------- entry
def diagnose(dataset: str, root: str | os.PathLike, *, spec: Any = None, samples: int | None = 3) -> Report:
    """Check ``root`` as a ``dataset`` folder, decoding ``samples`` items per split (None: every item);
    raises DadaError only when ``root`` is not a folder."""
    dataset = str(dataset).lower()
    if dataset not in DATASET_NAMES:
        raise DadaError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASET_NAMES)}")
    root = Path(root)
    if root.is_file():
        raise DadaError(f"dataset root {root} is a file, not a folder: give the {dataset} root folder")
    if not root.is_dir():
        raise DadaError(f"dataset folder {root} does not exist")
    if samples is not None and int(samples) < 1:
        raise DadaError(f"samples must be >= 1 (or --all), got {samples}")
    report = Report(dataset, root)
    for files in dataset_class(dataset).survey(root, report, spec):
        if files.shares_files_of is not None:
            # a list-file split shares the files of another split, checked there
            report.add("split", f"{files.split}: {len(files.images)} images listed in {files.list_file.name}")
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


def run_doctor(dataset: str, root: str | os.PathLike, *, spec: Any = None, samples: int | None = 3,
               out=None) -> int:
    """Print the report; 0 when the dataset is usable, 2 when not. ``samples=None`` decodes every item."""
    report = diagnose(dataset, root, spec=spec, samples=samples)
    print(report.render(), file=out or sys.stdout)
    if not report.usable:
        print(f"dada doctor: error: {len(report.problems)} problem(s) in {report.root}", file=sys.stderr)
        return 2
    return 0


__all__ = ["Report", "diagnose", "run_doctor"]
