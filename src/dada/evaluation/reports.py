"""``results.json`` and ``results.md``: every figure of an evaluation, with what produced it.

``results.json`` holds the full :class:`~dada.evaluation.EvalResult` of the model (and of the baseline and
the no-depth counterpart when given), the negative transfer rate, the D-Gain, the depth quality, the
snapshot table and its selection policy, the checkpoint, the config and its hash, the code version
(``dada.__version__`` and the git commit when the code runs from a git checkout) and the figures' paths.
``results.md`` lays the numbers out as the paper's tables: Table 1 (16 classes: per-class IoU, mIoU,
D-Gain, mIoU*), Table 2 (7 classes), Table 3 (one row per setup: mIoU) and Table 4 (source fractions).
``report.html`` is the same with the figures embedded (:mod:`dada.evaluation.report_html`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dada.evaluation.evaluator import nan_to_none
from dada.io import write_json, write_text

RESULTS_FORMAT = "dada-seg-results/1"
#: Config keys that do not change what a run computes (left out of the grouping hash of seed runs).
RUNTIME_KEYS = {"train": ("device", "progress"), "data": ("num_workers",), "output": ("root", "name"),
                "eval": ("max_images",)}


# ---------------------------------------------------------------------------------------- provenance
@functools.cache
def code_version() -> dict:
    """``{"dada": __version__, "git_commit": sha or None, "git_dirty": bool or None}``."""
    from dada import __version__

    here = Path(__file__).resolve().parent
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                                cwd=here.parent, capture_output=True, text=True, timeout=5, check=True)
        dirty = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"dada": __version__, "git_commit": commit, "git_dirty": dirty}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Mapping | None, *, without_seed: bool = False) -> str | None:
    """First 12 hex digits of the SHA-256 of the resolved config (sorted-key JSON), runtime keys
    (device, workers, output folder, progress) left out; ``without_seed`` also drops ``seed`` (to group
    the runs of one set-up over seeds)."""
    if config is None:
        return None
    config = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(config).items()}
    for section, keys in RUNTIME_KEYS.items():
        if isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if k not in keys}
    if without_seed:
        config.pop("seed", None)
    return hashlib.sha256(_canonical(config).encode()).hexdigest()[:12]


def evaluation_fingerprint(dataset: Mapping, image_names: Sequence[str]) -> str:
    """What an evaluation ran on, as 16 hex digits: the dataset's name, root (resolved), split, list file,
    input size, preprocessing and the list of evaluated images. Two results compare (seeds averaged,
    per-image scores paired) only when their fingerprints are equal."""
    root = dataset.get("root")
    if root is not None:
        try:
            root = str(Path(str(root)).resolve())
        except OSError:
            root = str(root)
    key = {"name": dataset.get("name"), "root": root, "split": dataset.get("split"),
           "list_file": dataset.get("list_file"), "size": dataset.get("size"),
           "preprocess": dataset.get("preprocess"), "images": sorted(str(n) for n in image_names)}
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:16]


def results_fingerprint(results: Mapping) -> str:
    """The evaluation-set fingerprint of a ``results.json`` (recomputed for files written before it was
    recorded)."""
    dataset = results.get("dataset") or {}
    if dataset.get("fingerprint"):
        return dataset["fingerprint"]
    names = [row.get("name") for row in (results.get("result") or {}).get("per_image") or []]
    return evaluation_fingerprint(dataset, names)


def describe_dataset(results: Mapping) -> str:
    """``cityscapes val (500 images, 512×1024)``: how reports name an evaluation set."""
    dataset = results.get("dataset") or {}
    size = dataset.get("size")
    size = "×".join(map(str, size)) if size else "native size"
    return (f"{dataset.get('name')} {dataset.get('split')} ({dataset.get('num_images')} images, {size}; "
            f"{dataset.get('root')})")


# ---------------------------------------------------------------------------------------- snapshots
_ITER_NAME = re.compile(r"^iter_(\d+)\.pt$")


def snapshot_record(info: Mapping) -> dict:
    """Which checkpoint a result came from, as recorded in every output (results.json, the ONNX metadata,
    predict.json): its file, iteration (of ``train.max_iters``), whether it is an intermediate
    ``iter_*.pt`` snapshot, whether its run had finished (``checkpoints/final.pt``) and its mtime."""
    source = Path(str(info.get("source")))
    in_run = source.parent.name == "checkpoints"
    record = {"file": source.name, "iteration": info.get("iteration"),
              "max_iters": ((info.get("config") or {}).get("train") or {}).get("max_iters"),
              "intermediate": bool(_ITER_NAME.match(source.name)),
              "run_finished": (source.parent / "final.pt").is_file() if in_run else None,
              "mtime_ns": None}
    try:
        record["mtime_ns"] = source.stat().st_mtime_ns
    except OSError:
        pass
    return record


def snapshot_note(record: Mapping | None) -> str | None:
    """A sentence for an intermediate snapshot (None for a final checkpoint or a given file)."""
    if not record or not record.get("intermediate"):
        return None
    of = f" of {record['max_iters']}" if record.get("max_iters") else ""
    unfinished = "; the run has no checkpoints/final.pt yet (unfinished)" \
        if record.get("run_finished") is False else ""
    return f"intermediate snapshot {record['file']} (iteration {record['iteration']}{of}){unfinished}"


def warn_snapshot(record: Mapping | None, what: str) -> None:
    """Say on stderr that ``what`` uses an intermediate snapshot (nothing for a final checkpoint)."""
    note = snapshot_note(record)
    if note:
        print(f"warning: {what} uses the {note}", file=sys.stderr, flush=True)


def stale_reason(results: Mapping, results_dir: str | os.PathLike | None = None) -> str | None:
    """Why a ``results.json`` is older than its run (None when it is not): it was computed before the run
    finished (an intermediate snapshot, and the run now has ``checkpoints/final.pt``), or its checkpoint
    file changed since. ``results_dir``: the folder of the results file (a run folder's own checkpoints
    are looked up there when the recorded path is relative to another working folder)."""
    model = results.get("model") or {}
    record = model.get("snapshot") or {}
    checkpoint = Path(str(model.get("checkpoint")))
    if not checkpoint.is_absolute() and not checkpoint.exists() and results_dir is not None:
        local = Path(results_dir) / "checkpoints" / checkpoint.name
        checkpoint = local if local.exists() or (Path(results_dir) / "checkpoints").is_dir() else checkpoint
    folder = checkpoint.parent
    if folder.name == "checkpoints" and (folder / "final.pt").is_file():
        was_finished = record.get("run_finished")
        if was_finished is None:  # written before the record existed: judge by the file name
            was_finished = not _ITER_NAME.match(checkpoint.name)
        if not was_finished:
            return (f"computed from {checkpoint.name} (iteration {model.get('iteration')}) before the run "
                    f"finished; the run now has checkpoints/final.pt: evaluate it again")
    mtime = record.get("mtime_ns")
    if mtime is not None and checkpoint.is_file() and checkpoint.stat().st_mtime_ns != mtime:
        return f"{checkpoint} changed after these results were computed: evaluate it again"
    return None


# ---------------------------------------------------------------------------------------- formatting
def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as % with ``digits`` decimals; ``-`` for None/NaN (the paper's convention)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.{digits}f}"


def pct_pm(mean: float | None, std: float | None, digits: int = 1) -> str:
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return pct(mean, digits)
    return f"{pct(mean, digits)} ± {pct(std, digits)}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def class_header(class_names: Sequence[str], num_classes: int) -> list[str]:
    """Class names as column titles; wall, fence and pole starred in the 16-class table (not in mIoU*)."""
    from dada.data.classes import MIOU13_CLASSES

    if num_classes == 16:
        return [n if i in MIOU13_CLASSES else f"{n}*" for i, n in enumerate(class_names)]
    return list(class_names)


def paper_table(rows: Sequence[Mapping], class_names: Sequence[str], num_classes: int,
                digits: int = 1) -> list[str]:
    """Table 1 (16 classes: … mIoU, D-Gain, mIoU*) or Table 2 (7 classes: … mIoU) layout.

    ``rows``: ``{"label", "depth": bool, "iou": [...], "miou", "miou13", "d_gain", "negative_transfer",
    optional "*_std" entries for mean ± std}``."""
    header = ["Model", "Depth", *class_header(class_names, num_classes), "mIoU", "D-Gain"]
    if num_classes == 16:
        header.append("mIoU*")
    header.append("NT rate")
    body = []
    for row in rows:
        iou_std = row.get("iou_std") or [None] * len(row["iou"])
        cells = [row["label"], "✓" if row.get("depth") else ""]
        cells += [pct_pm(v, s, digits) for v, s in zip(row["iou"], iou_std, strict=True)]
        cells.append(pct_pm(row.get("miou"), row.get("miou_std"), digits))
        cells.append(pct_pm(row.get("d_gain"), row.get("d_gain_std"), digits))
        if num_classes == 16:
            cells.append(pct_pm(row.get("miou13"), row.get("miou13_std"), digits))
        cells.append(pct_pm(row.get("negative_transfer"), row.get("negative_transfer_std"), 0))
        body.append(cells)
    return _table(header, body)


def _row(label: str, result: Mapping, depth: bool, d_gain: float | None = None,
         negative_transfer: float | None = None) -> dict:
    return {"label": label, "depth": depth, "iou": result["iou"], "miou": result["miou"],
            "miou13": result.get("miou13"), "d_gain": d_gain, "negative_transfer": negative_transfer}


# ---------------------------------------------------------------------------------------- results.md
def results_markdown(results: Mapping) -> str:
    """``results.md`` of one evaluation (see the module docstring)."""
    model = results["model"]
    result = results["result"]
    n = result["num_classes"]
    names = result["class_names"]
    lines = [f"# Evaluation: {model['label']}", ""]
    dataset = results.get("dataset") or {}
    note = snapshot_note(model.get("snapshot"))
    lines += [f"- checkpoint: `{model.get('checkpoint')}` (iteration {model.get('iteration')}, "
              f"{model.get('format')})" + (f" — **{note}**" if note else ""),
              f"- dataset: {dataset.get('name')} `{dataset.get('root')}` split {dataset.get('split')}, "
              f"{result['num_images']} images, input size {dataset.get('size') or 'native'}, labels at full "
              "resolution",
              f"- config hash: `{model.get('config_hash')}`; code: dada {results['code_version']['dada']}"
              f" @ {results['code_version'].get('git_commit') or 'unknown commit'}",
              f"- model selection: {(results.get('selection') or {}).get('label', 'the given checkpoint')}",
              f"- written {results.get('created')}", ""]
    rows = []
    baseline, counterpart = results.get("baseline"), results.get("counterpart")
    if baseline:
        rows.append(_row(baseline["label"], baseline["result"], baseline.get("depth", False)))
    if counterpart and not (baseline and counterpart["checkpoint"] == baseline["checkpoint"]):
        rows.append(_row(counterpart["label"], counterpart["result"], counterpart.get("depth", False)))
    nt = (results.get("negative_transfer") or {}).get("rate")
    rows.append(_row(model["label"], result, model.get("depth", False), results.get("d_gain"), nt))
    table = "Table 1" if n == 16 else "Table 2"
    lines += [f"## Per-class IoU (%) — layout of the paper's {table}", ""]
    lines += paper_table(rows, names, n)
    lines += ["", "mIoU: nanmean of the per-class IoUs over the whole set (official). "
              + ("mIoU*: the 13 classes without the starred ones (wall, fence, pole). " if n == 16 else "")
              + "D-Gain: mIoU gain over the no-depth counterpart. NT rate: negative transfer rate, the share "
              "of images whose per-image mIoU is below the baseline's (source-only) model's.", ""]
    lines += [f"Pixel accuracy: {pct(result['pixel_accuracy'], 2)} %. mIoU to two decimals (official "
              f"print): {pct(result['miou'], 2)}.", ""]
    if results.get("negative_transfer"):
        info = results["negative_transfer"]
        lines += ["## Negative transfer", "",
                  f"{info['worse']} of {info['images']} images have a per-image mIoU below the baseline "
                  f"`{baseline['label'] if baseline else '?'}`: **{pct(info['rate'], 1)} %**"
                  + (f" ({info['unmatched']} images not in both evaluations)" if info.get("unmatched")
                     else ""),
                  ""]
    ranges = result.get("depth_ranges")
    if ranges:
        lines += ["## IoU by depth range", "",
                  f"Depth bins (m): {', '.join(f'{b:g}' for b in ranges['bins_m'])}; depth from the target's "
                  "disparity with the Cityscapes stereo rig scaled to the label width; pixels without "
                  "disparity left out.", ""]
        runs = [(model["label"], result)] + ([(baseline["label"], baseline["result"])] if baseline else [])
        header = ["Model", *[f"{name} mIoU" for name in ranges["names"]], *[f"{name} pixels"
                                                                           for name in ranges["names"]]]
        body = []
        for label, res in runs:
            other = res.get("depth_ranges")
            if not other:
                continue
            body.append([label, *[pct(other["ranges"][r]["miou"]) for r in ranges["names"]],
                         *[str(other["ranges"][r]["pixels"]) for r in ranges["names"]]])
        lines += _table(header, body) + [""]
        lines += ["Per-class IoU (%) by range:", ""]
        lines += _table(["Range", *class_header(names, n)],
                        [[r, *[pct(v) for v in ranges["ranges"][r]["iou"]]] for r in ranges["names"]]) + [""]
    quality = results.get("depth_quality")
    if quality:
        cells = [f"{quality['abs_rel']:.3f}" if quality["abs_rel"] is not None else "-",
                 f"{quality['rmse']:.2f}" if quality["rmse"] is not None else "-",
                 pct(quality["delta1"]), str(quality["pixels"]), str(quality.get("images", "-"))]
        lines += ["## Depth quality (source validation images)", "",
                  *_table(["AbsRel", "RMSE (m)", "δ<1.25 (%)", "pixels", "images"], [cells]),
                  "", "Depth = 655.36 / inverse depth (SYNTHIA's encoding, metres); predicted and "
                  "ground-truth inverse depth at the ground truth's resolution.", ""]
    snapshots = results.get("snapshots")
    if snapshots:
        selected = (results.get("selection") or {}).get("iteration")
        lines += ["## Snapshots", "", f"Selection policy: **{results['selection']['label']}**", ""]
        lines += _table(["iteration", "mIoU", *(["mIoU*"] if n == 16 else []), "selected"],
                        [[str(s["iteration"]), pct(s["miou"], 2),
                          *([pct(s.get("miou13"), 2)] if n == 16 else []),
                          "✓" if s["iteration"] == selected else ""] for s in snapshots]) + [""]
    if result.get("class_map") or results.get("notes"):
        from dada.evaluation.classmap import markdown

        lines += ["## Notes", ""] + [f"- {line}" for line in (markdown(result["class_map"]) if result.get(
            "class_map") else [])] + [f"- {note}" for note in results.get("notes") or []] + [""]
    figures = results.get("figures")
    if figures:
        lines += ["## Figures", ""] + [f"- {name}: `{path}`" for name, path in figures.items()] + [""]
    lines += ["## Protocol", ""] + [f"- {k}: {v}" for k, v in result.get("protocol", {}).items()] + ["", ""]
    return "\n".join(lines)


def write_results(out_dir: str | os.PathLike, results: Mapping) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``report.html`` (the same tables with every figure of
    ``results["figures"]`` embedded) into ``out_dir``; returns their paths."""
    from dada.evaluation.report_html import write_eval_report

    out_dir = Path(out_dir)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md"}
    markdown = results_markdown(results)
    write_text(paths["md"], markdown)
    paths["html"] = write_eval_report(out_dir, results, markdown)
    # results.json last, listing its reports: one without them is an incomplete evaluation
    write_json(paths["json"],
               nan_to_none({**results, "report_files": [paths["md"].name, paths["html"].name]}))
    return paths


def load_results(path: str | os.PathLike) -> dict:
    """A ``results.json`` (or a folder holding one)."""
    from dada.errors import DadaError

    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise DadaError(f"{path}: no results.json; evaluate it first with `dada eval {path}`")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DadaError(f"{file}: cannot be read as JSON ({error})") from None
    if data.get("format") != RESULTS_FORMAT:
        raise DadaError(f"{file}: not a dada-seg results file (format {RESULTS_FORMAT})")
    missing = [name for name in data.get("report_files") or [] if not (file.parent / name).is_file()]
    if missing:
        raise DadaError(f"{file}: an incomplete evaluation ({', '.join(missing)} missing beside it): "
                        f"evaluate it again with `dada eval ... --overwrite`")
    data["stale"] = stale_reason(data, file.parent)
    return data
