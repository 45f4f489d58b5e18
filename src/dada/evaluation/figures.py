"""Pictures: colourised predictions (official palettes), depth maps, overlays, the qualitative grid of the
paper's Figures 3–4, per-class IoU bar charts and training curves.

matplotlib is used through its object-oriented API on the Agg canvas (no pyplot, no global backend, no
display needed); every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dada.data.classes import ClassSet, class_set
from dada.errors import DadaError
from dada.io import atomic_path, display, write_image

DEPTH_COLORMAP = "magma"


# ---------------------------------------------------------------------------------------- arrays
def colorize(pred: np.ndarray, num_classes_or_set: int | ClassSet) -> np.ndarray:
    """H×W train ids → H×W×3 uint8 RGB with the official palette (ignore pixels black)."""
    if isinstance(num_classes_or_set, ClassSet):
        return num_classes_or_set.colorize(np.asarray(pred))
    classes = class_set(num_classes_or_set)
    return classes.colorize(np.asarray(pred))


def depth_to_rgb(inverse_depth: np.ndarray, colormap: str = DEPTH_COLORMAP,
                 limits: tuple[float, float] | None = None) -> np.ndarray:
    """An inverse-depth (or disparity) map → H×W×3 uint8 RGB: bright = near, dark = far.

    Scaled between the 2nd and 98th percentiles of the finite values (or ``limits``); NaN pixels black.
    """
    from matplotlib import colormaps

    values = np.asarray(inverse_depth, dtype=np.float64)
    finite = np.isfinite(values)
    if limits is None:
        low, high = (np.percentile(values[finite], [2, 98]) if finite.any() else (0.0, 1.0))
    else:
        low, high = limits
    scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
    rgb = (colormaps[colormap](np.where(finite, scaled, 0))[..., :3] * 255).round().astype(np.uint8)
    rgb[~finite] = 0
    return rgb


def overlay(image_rgb: np.ndarray, seg_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colourised segmentation onto the image (``alpha`` = weight of the segmentation)."""
    image = np.asarray(image_rgb, dtype=np.float32)
    seg = np.asarray(seg_rgb, dtype=np.float32)
    if image.shape != seg.shape:
        raise ValueError(f"overlay: image {image.shape} and segmentation {seg.shape} differ in size")
    return np.clip((1 - alpha) * image + alpha * seg + 0.5, 0, 255).astype(np.uint8)


def save_rgb(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an H×W×3 uint8 RGB array as PNG (atomically)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_rgb expects H×W×3, got {rgb.shape}")
    write_image(path, np.ascontiguousarray(rgb[..., ::-1]))
    return Path(path)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    from matplotlib.text import Text

    for text in figure.findobj(Text):  # names that are not UTF-8 (surrogate escapes) cannot be drawn
        if text.get_text() != display(text.get_text()):
            text.set_text(display(text.get_text()))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return Path(path)


def _legend_handles(classes: ClassSet, present: Sequence[int] | None = None):
    from matplotlib.patches import Patch

    ids = range(classes.num_classes) if present is None else sorted(present)
    return [Patch(facecolor=np.asarray(classes.palette[i]) / 255, edgecolor="black", linewidth=0.3,
                  label=classes.names[i]) for i in ids]


# ---------------------------------------------------------------------------------------- figures
def qualitative_grid(rows: Sequence[Mapping], path: str | os.PathLike, num_classes: int,
                     column_titles: Sequence[str] | None = None) -> Path:
    """The paper's Figures 3–4: one row per image, columns (a) image, (b) ground truth, then one column
    per model (e.g. baseline, DADA). ``rows``: ``{"image": H×W×3 uint8 RGB, "label": H×W train ids,
    "predictions": {title: H×W train ids}, "name": str}``; maps are shown at the label's size."""
    if not rows:
        raise DadaError("qualitative_grid: no images to show")
    classes = class_set(num_classes)
    models = list(rows[0]["predictions"])
    titles = list(column_titles) if column_titles else ["(a) image", "(b) ground truth"] + [
        f"({chr(ord('c') + k)}) {name}" for k, name in enumerate(models)]
    columns = 2 + len(models)
    height, width = np.asarray(rows[0]["label"]).shape[:2]
    cell_w = 3.2
    cell_h = cell_w * height / width
    figure = _new_figure(cell_w * columns, cell_h * len(rows))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    present: set[int] = set()
    for r, row in enumerate(rows):
        label = np.asarray(row["label"])
        for shown in [label, *(np.asarray(row["predictions"][m]) for m in models)]:
            present |= {int(v) for v in np.unique(shown) if v < classes.num_classes}
        image = np.asarray(row["image"])
        if image.shape[:2] != label.shape:
            import cv2

            image = cv2.resize(image, (label.shape[1], label.shape[0]), interpolation=cv2.INTER_AREA)
        panels = [image, colorize(label, classes)]
        panels += [colorize(row["predictions"][m], classes) for m in models]
        for c, panel in enumerate(panels):
            axis = axes[r, c]
            axis.imshow(panel, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c], fontsize=10)
            if c == 0 and row.get("name"):
                axis.set_ylabel(_short(row["name"], max(10, int(cell_h * 13))), fontsize=6)
    figure.subplots_adjust(left=0.03, right=0.99, top=0.97, bottom=0.03, wspace=0.03, hspace=0.06)
    figure.legend(handles=_legend_handles(classes, present or None), loc="upper center",
                  bbox_to_anchor=(0.5, 0.02), ncol=min(8, max(1, len(present) or classes.num_classes)),
                  fontsize=8, frameon=False)
    return save_figure(figure, path)


def _short(name: str, limit: int = 28) -> str:
    name = display(Path(name).stem.removesuffix("_leftImg8bit"))  # non-UTF-8 names: matplotlib needs text
    return name if len(name) <= limit else "…" + name[-limit + 1:]


def series_colours(n: int) -> list[tuple[float, ...]]:
    """``n`` bar colours: tab10 up to 10 series, tab20 up to 20 (all distinct), then tab20 again."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]


def iou_bar_chart(series: Mapping[str, Sequence[float]], class_names: Sequence[str], path: str | os.PathLike,
                  errors: Mapping[str, Sequence[float]] | None = None, title: str = "IoU per class",
                  summary: Mapping[str, float] | None = None,
                  summary_errors: Mapping[str, float | None] | None = None) -> Path:
    """Grouped bars: per-class IoU (%) of each run (``series``: label → IoUs in [0, 1], NaN = absent),
    with optional ± error bars (same units; ``summary_errors`` for the mIoU group) and an ``mIoU`` group at
    the right (``summary``)."""
    labels = list(series)
    names = list(class_names) + (["mIoU"] if summary else [])
    figure = _new_figure(max(7.0, 0.55 * len(names) * max(1, len(labels)) ** 0.5 + 2), 4.2)
    axis = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(labels))
    positions = np.arange(len(names))
    colours = series_colours(len(labels))
    for k, label in enumerate(labels):
        raw = list(series[label]) + ([summary[label]] if summary else [])
        values = [100 * v if _defined(v) else 0.0 for v in raw]
        err = None
        if errors and label in errors:
            spread = list(errors[label]) + ([(summary_errors or {}).get(label)] if summary else [])
            # no error bar on an absent class (NaN IoU) or a single run (None)
            err = [100 * e if _defined(e) and _defined(v) else 0.0 for e, v in zip(spread, raw, strict=True)]
        axis.bar(positions + (k - (len(labels) - 1) / 2) * width, values, width, label=label,
                 color=colours[k], yerr=err, capsize=2 if err else 0, edgecolor="black", linewidth=0.3)
    axis.set_xticks(positions)
    axis.set_xticklabels(names, rotation=45, ha="right", fontsize=9)
    axis.set_ylabel("IoU (%)")
    axis.set_ylim(0, 100)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(figure, path)


def _defined(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def depth_range_chart(series: Mapping[str, Mapping[str, float]], path: str | os.PathLike,
                      title: str = "mIoU by depth range") -> Path:
    """Grouped bars: mIoU (%) per depth range (near / middle / far) for each run."""
    labels = list(series)
    ranges = list(next(iter(series.values())))
    figure = _new_figure(5.5, 3.6)
    axis = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(labels))
    from matplotlib import colormaps

    for k, label in enumerate(labels):
        values = [100 * series[label][r] if not math.isnan(series[label][r]) else 0.0 for r in ranges]
        axis.bar(np.arange(len(ranges)) + (k - (len(labels) - 1) / 2) * width, values, width, label=label,
                 color=colormaps["tab10"](k % 10), edgecolor="black", linewidth=0.3)
    axis.set_xticks(np.arange(len(ranges)))
    axis.set_xticklabels(ranges)
    axis.set_ylabel("mIoU (%)")
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(figure, path)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` (blank or truncated last lines are skipped). A number the
    logger wrote as ``null`` (it was NaN) comes back as NaN: ``miou`` and the ``loss``, ``stats`` and ``lr``
    values."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(record, dict):
            if "miou" in record and record["miou"] is None:
                record["miou"] = float("nan")
            for key in ("loss", "stats", "lr"):
                if isinstance(record.get(key), dict):
                    record[key] = {k: float("nan") if v is None else v for k, v in record[key].items()}
        records.append(record)
    return records


def loss_series(records: Sequence[Mapping]) -> dict[str, tuple[list[int], list[float]]]:
    """``{loss name: (iterations, values)}`` from train records: a nested ``"loss": {...}`` dict (our
    logger) or flat keys whose name contains ``loss``."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        if "iteration" not in record or record.get("kind", "train") != "train":
            continue
        values = dict(record["loss"]) if isinstance(record.get("loss"), Mapping) else {
            k: v for k, v in record.items() if "loss" in k and isinstance(v, (int, float))}
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                its, vals = series.setdefault(name, ([], []))
                its.append(int(record["iteration"]))
                vals.append(float(value))
    return series


#: logged statistics (a train record's ``"stats"``) that get a panel of their own: self-training's
#: pseudo-label weight (DACS's q), dast's share of ClassMix pixels removed by the occlusion test and its
#: mean CorDA depth weight; the health tables show their last-half means (``dada.demo.training_health``)
STAT_PANELS = ("pseudo_weight", "mix_removed_by_depth", "mix_depth_weight")


def stat_series(records: Sequence[Mapping], names: Sequence[str] = STAT_PANELS
                ) -> dict[str, tuple[list[int], list[float]]]:
    """``{name: (iterations, values)}`` of the finite values of ``names`` in the train records' ``stats``."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        stats = record.get("stats")
        if ("iteration" not in record or record.get("kind", "train") != "train"
                or not isinstance(stats, Mapping)):
            continue
        for name in names:
            value = stats.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                its, vals = series.setdefault(name, ([], []))
                its.append(int(record["iteration"]))
                vals.append(float(value))
    return series


def training_curves(metrics_path: str | os.PathLike, path: str | os.PathLike,
                    title: str | None = None) -> Path:
    """Loss curves (one panel per loss, log scale when positive), the self-training statistics of
    :data:`STAT_PANELS` when logged (linear scale) and the validation mIoU if logged."""
    records = read_metrics(metrics_path)
    series = loss_series(records)
    stats = stat_series(records)
    evals = [(int(r["iteration"]), float(r["miou"])) for r in records
             if r.get("kind") == "eval" and isinstance(r.get("miou"), (int, float))
             and math.isfinite(r["miou"])]
    if not series and not evals:
        raise DadaError(f"{metrics_path}: no training records with an iteration and losses to plot")
    panels = list(series) + list(stats) + (["val mIoU"] if evals else [])
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(4.2 * columns, 2.9 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, name in zip(axes, panels, strict=False):
        if name == "val mIoU" and evals:
            its, vals = zip(*evals, strict=True)
            axis.plot(its, [100 * v for v in vals], marker="o", color="tab:green")
            axis.set_ylabel("mIoU (%)")
        elif name in stats and name not in series:
            its, vals = stats[name]
            axis.plot(its, vals, linewidth=1.0, color="tab:purple", marker="o" if len(vals) < 30 else None,
                      markersize=3)
            axis.set_ylim(-0.02, 1.02)  # shares and weights in [0, 1]
        else:
            its, vals = series[name]
            axis.plot(its, vals, linewidth=1.0, marker="o" if len(vals) < 30 else None, markersize=3)
            if len(vals) >= 2 and min(vals) > 0 and max(vals) / min(vals) > 20:
                axis.set_yscale("log")
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("iteration", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def overlay_panels(series: Mapping[str, Mapping], stats: Mapping[str, Mapping], with_evals: bool,
                   max_panels: int = 12) -> list[str]:
    """The panels of :func:`training_curves_overlay`: the loss names logged by the most runs first, then
    the self-training statistics of :data:`STAT_PANELS` any run logged (kept when losses must be dropped:
    a teacher that is never confident should show beside the set-ups that adapt), then the validation
    mIoU; at most ``max_panels``."""
    counts: dict[str, int] = {}
    for losses in series.values():
        for name in losses:
            counts[name] = counts.get(name, 0) + 1
    names = sorted(counts, key=lambda n: (-counts[n], n))
    stat_names = [name for name in STAT_PANELS if any(name in run for run in stats.values())]
    tail = stat_names + (["val mIoU"] if with_evals else [])
    return (names[:max(0, max_panels - len(tail))] + tail)[:max_panels]


def training_curves_overlay(runs: Mapping[str, str | os.PathLike], path: str | os.PathLike,
                            title: str | None = None, max_panels: int = 12) -> Path:
    """The losses and self-training statistics of several runs on shared panels (one panel per name, one
    line per run; the validation mIoU as a last panel when logged): ``runs`` maps a label to a
    ``metrics.jsonl``; the panels as :func:`overlay_panels` chooses them."""
    curves = {label: read_metrics(metrics) for label, metrics in runs.items()}
    series = {label: loss_series(records) for label, records in curves.items()}
    stats = {label: stat_series(records) for label, records in curves.items()}
    evals = {label: [(int(r["iteration"]), 100 * float(r["miou"])) for r in records
                     if r.get("kind") == "eval" and isinstance(r.get("miou"), (int, float))
                     and math.isfinite(r["miou"])] for label, records in curves.items()}
    panels = overlay_panels(series, stats, any(evals.values()), max_panels)
    if not panels:
        raise DadaError(f"{', '.join(str(m) for m in runs.values())}: no training records to plot")
    from matplotlib import colormaps

    palette = colormaps["tab20" if len(runs) > 10 else "tab10"]
    colors = {label: palette(k % palette.N) for k, label in enumerate(runs)}  # one colour per run
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _new_figure(4.4 * columns, 3.0 * rows + 0.8)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, name in zip(axes, panels, strict=False):
        for label in runs:
            source = stats[label] if name in STAT_PANELS else series[label]
            points = evals[label] if name == "val mIoU" else list(zip(*source.get(name, ([], [])),
                                                                     strict=True))
            if points:
                its, vals = zip(*points, strict=True)
                axis.plot(its, vals, linewidth=1.0, label=label, color=colors[label],
                          marker="o" if len(vals) < 30 else None, markersize=3)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("iteration", fontsize=8)
        axis.grid(alpha=0.3)
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    handles, labels = [], []
    for axis in axes[:len(panels)]:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(figure, path)
