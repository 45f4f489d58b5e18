"""Evaluating a run end to end: ``evaluate_run`` loads a run folder or a checkpoint, builds its validation
set from the checkpoint's config (or the given data), evaluates it (every snapshot when asked, with the
``last`` / ``best-on-val`` selection), its baseline and no-depth counterpart on the same images, the
depth head on the source validation images, and writes ``results.json``, ``results.md`` and the figures.

This is what ``dada eval`` runs and what a demo calls per model.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dada.benchmark import resolve_root
from dada.checkpoints import iteration_checkpoints
from dada.config import SELECTION_POLICIES
from dada.devices import resolve_device
from dada.errors import DadaError
from dada.evaluation.evaluator import EvalResult, evaluate_segmenter
from dada.evaluation.inputs import OFFICIAL_INPUT_SIZE
from dada.evaluation.metrics import DEFAULT_DEPTH_BINS, d_gain, negative_transfer
from dada.evaluation.reports import (
    code_version,
    config_hash,
    evaluation_fingerprint,
    load_results,
    snapshot_record,
    warn_snapshot,
    write_results,
)
from dada.io import now_utc


# ------------------------------------------------------------------------------------------ inputs
def data_settings(info: Mapping, *, dataset: str | None = None, root: str | os.PathLike | None = None,
                  split: str | None = None, size: Sequence[int] | None | str = "config",
                  preprocess: str | None = None, list_file: str | None = None) -> dict:
    """The evaluation data: the checkpoint config's ``data.val`` with the given overrides; official state
    dicts (no config) need ``root`` and default to Cityscapes ``val`` at 512×1024, caffe."""
    config = info.get("config") or {}
    data = config.get("data") or {}
    val = dict(data.get("val") or {})
    if not config:  # official defaults: Cityscapes val at 512×1024; Mapillary letterboxed (its default)
        name = dataset or "cityscapes"
        val = {"name": name, "split": {"cityscapes": "val", "mapillary": "validation"}.get(name, "val"),
               "size": list(OFFICIAL_INPUT_SIZE) if name == "cityscapes" else None}
    settings = {"name": dataset or val.get("name", "cityscapes"), "root": root or val.get("root"),
                "split": split or val.get("split", "val"),
                "size": val.get("size") if size == "config" else (list(size) if size is not None else None),
                "preprocess": preprocess or data.get("preprocess", "caffe"),
                "list_file": list_file if list_file is not None else (val.get("list_file") if root is None
                                                                       else None),
                "spec": val.get("spec") if root is None else None}
    if settings["root"] is None:
        raise DadaError(f"{info.get('source')}: no evaluation data in the checkpoint (an official state dict "
                        "has no config): give the dataset folder with --data ROOT (and --dataset, --split, "
                        "--size if they are not Cityscapes val at 512×1024)")
    settings["root"] = str(resolve_root(settings["root"], "val", config))
    return settings


def build_eval_dataset(settings: Mapping, num_classes: int, *, depth: bool | None = None, part: str = "val"):
    """The labelled evaluation set (labels at full resolution). ``depth=None``: with the target's
    disparity when the dataset has it (Cityscapes ``disparity/<split>``), for IoU by depth range."""
    from dada.data import build_dataset

    root = resolve_root(settings["root"], part)
    if depth is None:
        depth = settings["name"] == "cityscapes" and (root / "disparity" / settings["split"]).is_dir()
    dataset = build_dataset(settings["name"], root, settings["split"], num_classes, size=settings["size"],
                            depth=depth, preprocess=settings["preprocess"], labels=True, label_size="native",
                            list_file=settings.get("list_file"), spec=settings.get("spec"))
    if not getattr(dataset, "has_labels", True):
        raise DadaError(f"{settings['name']} split {settings['split']!r} under {root} has no labels: "
                        f"evaluation needs a labelled split")
    return dataset


def source_val_settings(info: Mapping, split: str | None = None) -> dict | None:
    """The source validation set for depth quality: ``data.source`` with split ``split`` (default
    ``val`` when ``ROOT/val.txt`` exists, as in the built-in benchmark); None when there is none."""
    config = info.get("config") or {}
    source = (config.get("data") or {}).get("source")
    if not source or source.get("root") is None:
        return None
    try:
        root = resolve_root(source["root"], "source", config)
    except DadaError:
        return None
    chosen = split or ("val" if (root / "val.txt").is_file() else None)
    if chosen is None:
        return None
    return {"name": source.get("name", "synthia"), "root": str(root), "split": chosen,
            "size": source.get("size"), "preprocess": (config.get("data") or {}).get("preprocess", "caffe"),
            "list_file": None, "spec": source.get("spec")}


def prepare_out_dir(out_dir: Path, overwrite: bool, *, is_run_folder: bool) -> Path:
    """A run folder may hold a previous ``results.json``; another folder must be new or empty. Either is
    replaced only with ``overwrite``."""
    if is_run_folder:
        stale = None
        if (out_dir / "results.json").exists() and not overwrite:
            try:
                stale = load_results(out_dir)["stale"]
            except DadaError:
                stale = None
        if stale:  # results of an unfinished run are replaced once it has finished
            print(f"note: replacing {out_dir / 'results.json'}: {stale}", file=sys.stderr, flush=True)
        elif (out_dir / "results.json").exists() and not overwrite:
            raise DadaError(f"{out_dir / 'results.json'} exists: pass --overwrite to replace the evaluation, "
                            f"or --out DIR for another folder")
    elif out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise DadaError(f"output folder {out_dir} exists: choose another one with --out or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def previous_figures(out_dir: Path) -> set[str]:
    """The figure files a previous evaluation in ``out_dir`` listed (relative paths under figures/)."""
    try:
        listed = json.loads((out_dir / "results.json").read_text()).get("figures") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return set()
    return {p for p in listed.values() if isinstance(p, str) and p.startswith("figures/") and ".." not in p}


def snapshot_paths(run_dir: Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of a run folder's ``checkpoints/iter_*.pt``, oldest first (``evaluate_run``
    adds ``checkpoints/best.pt`` when its iteration is not among them)."""
    return iteration_checkpoints(run_dir / "checkpoints")


#: how reports name a model trained on the target's labels (the ``oracle`` preset), so that it is never
#: mistaken for an adaptation result
ORACLE_LABEL = "oracle (target-trained)"


def model_label(info: Mapping) -> str:
    config = info.get("config") or {}
    preset = config.get("preset") or (config.get("method") or {}).get("name")
    if preset:
        label = f"{preset} (seed {config['seed']})" if "seed" in config else str(preset)
    else:
        label = Path(str(info.get("source", "model"))).stem
    trained_on_target = (info.get("method_info") or {}).get("target_trained")
    if trained_on_target is None:  # checkpoints written before methods recorded it
        trained_on_target = (config.get("method") or {}).get("name") == "oracle"
    if trained_on_target:
        label = f"{label}: {ORACLE_LABEL}"
    return label


def uses_depth(info: Mapping) -> bool:
    """Whether the model used depth as privileged information (a supervised depth branch, or SPIGAN's
    privileged network)."""
    recorded = (info.get("method_info") or {}).get("source_depth")
    if recorded is not None:  # what the method said it used (Method.needs_source_depth)
        return bool(recorded)
    spec = info.get("model_spec") or {}  # checkpoints written before methods recorded it
    method = (info.get("config") or {}).get("method") or {}
    if method.get("privileged"):
        return True
    return bool(spec.get("depth_head")) and bool(method.get("depth_supervision", True))


def _read_selection(run_dir: Path | None) -> dict | None:
    if run_dir is None or not (run_dir / "train_summary.json").is_file():
        return None
    try:
        return json.loads((run_dir / "train_summary.json").read_text()).get("selection")
    except (OSError, json.JSONDecodeError):
        return None


def _item_names(dataset, indices: Sequence[int]) -> list[str]:
    records = getattr(dataset, "records", None)
    if records is not None:
        return [str(records[i].name) for i in indices]
    return [str(dataset[i]["name"]) for i in indices]


def choose_figure_indices(dataset, count: int, names: Sequence[str] | None = None, seed: int = 0,
                          limit: int | None = None) -> list[int]:
    """Indices of the images shown in figures: those named, else ``count`` drawn with ``seed``."""
    total = len(dataset) if limit is None else min(len(dataset), int(limit))
    if names:
        all_names = _item_names(dataset, range(total))
        missing = [n for n in names if n not in all_names]
        if missing:
            raise DadaError(f"--figure-images: {missing[:3]} not in the evaluation set (names look like "
                            f"{all_names[0]!r})")
        return [all_names.index(n) for n in names]
    count = min(int(count), total)
    if not count:
        return []
    return sorted(np.random.default_rng(seed).choice(total, size=count, replace=False).tolist())


# ------------------------------------------------------------------------------------------ models
def _evaluate_model(model, dataset, *, num_classes, device, batch_size, depth_bins, max_images, keep,
                    progress, desc) -> EvalResult:
    spec = getattr(model, "spec", None)
    output_classes = int(spec["num_classes"]) if isinstance(spec, Mapping) else num_classes
    if output_classes != num_classes:
        raise DadaError(f"{desc}: the checkpoint predicts {output_classes} classes but the dataset has "
                        f"{num_classes}: evaluate it on a {output_classes}-class dataset")
    return evaluate_segmenter(model, dataset, num_classes=num_classes, device=device, batch_size=batch_size,
                              depth_bins=depth_bins, max_images=max_images, keep=keep, progress=progress,
                              desc=desc)


def _reference(path, *, role: str, dataset, num_classes, device, batch_size, depth_bins, max_images, keep,
               progress, label: str | None = None) -> dict:
    from dada.models import load_segmenter

    model, info = load_segmenter(path, map_location=device)
    classes = int(info["model_spec"]["num_classes"])
    if classes != num_classes:
        raise DadaError(f"--{role} {path}: predicts {classes} classes but the evaluated model has "
                        f"{num_classes}: compare models of the same class set")
    result = _evaluate_model(model, dataset, num_classes=num_classes, device=device, batch_size=batch_size,
                             depth_bins=depth_bins, max_images=max_images, keep=keep, progress=progress,
                             desc=role)
    del model
    return {"label": label or model_label(info), "checkpoint": info["source"],
            "iteration": info.get("iteration"), "depth": uses_depth(info), "model_spec": info["model_spec"],
            "config_hash": config_hash(info.get("config")), "result_obj": result}


# ------------------------------------------------------------------------------------------ the run
@dataclass
class EvalOptions:
    """What :func:`evaluate_run` evaluates, on which data, and what it reports (the ``dada eval`` options).

    Data (``dataset``, ``root``, ``split``, ``size``: override the checkpoint config's ``data.val``;
    ``size="config"`` keeps it, None the native size; ``num_classes`` must match the checkpoint).
    References: ``baseline`` the source-only model (negative transfer rate); ``counterpart`` the no-depth
    counterpart (D-Gain; default the baseline when it has no depth and this model has). Snapshots:
    ``all_snapshots`` evaluates every ``checkpoints/iter_*.pt`` and reports the one chosen by ``select``
    (a key of :data:`dada.config.SELECTION_POLICIES`). Depth: ``depth_bins`` (IoU by depth range, None
    off), ``source_depth`` (depth quality on the source validation images of ``source_split``). Figures:
    ``figures`` images drawn with ``seed``, or ``figure_images`` by name; ``label`` names the model,
    ``baseline_label`` and ``counterpart_label`` the references (default: preset and seed).
    """

    dataset: str | None = None
    root: str | os.PathLike | None = None
    split: str | None = None
    size: Sequence[int] | None | str = "config"
    num_classes: int | None = None
    baseline: str | os.PathLike | None = None
    counterpart: str | os.PathLike | None = None
    all_snapshots: bool = False
    select: str = "last"
    device: str = "auto"
    batch_size: int = 1
    max_images: int | None = None
    depth_bins: Sequence[float] | None = DEFAULT_DEPTH_BINS
    source_depth: bool = True
    source_split: str | None = None
    figures: int = 4
    figure_images: Sequence[str] | None = None
    seed: int = 0
    label: str | None = None
    baseline_label: str | None = None
    counterpart_label: str | None = None
    progress: bool = True


def evaluate_run(path: str | os.PathLike, options: EvalOptions | None = None, *,
                 out_dir: str | os.PathLike | None = None, overwrite: bool = False, **settings) -> dict:
    """:func:`_evaluate_run`; an output folder it created is removed again if the evaluation is refused
    or fails before writing anything into it."""
    from dada.io import removed_if_left_empty

    path = Path(path)
    default = path if path.is_dir() else path.parent / f"eval_{path.stem}"
    with removed_if_left_empty(Path(out_dir) if out_dir is not None else default):
        return _evaluate_run(path, options, out_dir=out_dir, overwrite=overwrite, **settings)


def _evaluate_run(path: str | os.PathLike, options: EvalOptions | None = None, *,
                  out_dir: str | os.PathLike | None = None, overwrite: bool = False, **settings) -> dict:
    """Evaluate a run folder or a checkpoint and write ``results.json``, ``results.md`` and the figures.

    ``options``: an :class:`EvalOptions`, or its fields as keyword arguments (``settings``). ``out_dir``:
    default the run folder (for a run) or ``<checkpoint folder>/eval_<name>/`` (for a file); an existing
    evaluation is replaced only with ``overwrite``. Returns the results dict (as written).
    """
    from dada.data import denormalize
    from dada.models import load_segmenter

    opts = options if options is not None else EvalOptions(**settings)
    if options is not None and settings:
        raise TypeError("give either an EvalOptions or its fields as keyword arguments, not both")
    if opts.select not in SELECTION_POLICIES:
        raise DadaError(f"--select must be one of {', '.join(SELECTION_POLICIES)}, got {opts.select!r}")
    path = Path(path)
    if not path.exists():
        raise DadaError(f"{path}: no such run folder or checkpoint")
    run_dir = path if path.is_dir() else (path.parent.parent if path.parent.name == "checkpoints" else None)
    if opts.all_snapshots and not path.is_dir():
        raise DadaError("--all-snapshots needs a run folder (with checkpoints/iter_*.pt), not a file")
    device = resolve_device(opts.device)
    if out_dir is None:
        out = path if path.is_dir() else path.parent / f"eval_{path.stem}"
        out_dir = prepare_out_dir(out, overwrite, is_run_folder=path.is_dir())
    else:
        out_dir = prepare_out_dir(Path(out_dir), overwrite, is_run_folder=False)

    stale = previous_figures(out_dir)
    model, info = load_segmenter(path, map_location=device)
    classes = int(info["model_spec"]["num_classes"])
    if opts.num_classes is not None and int(opts.num_classes) != classes:
        raise DadaError(f"{info['source']}: the checkpoint predicts {classes} classes but --num-classes is "
                        f"{opts.num_classes}: evaluate it on a {classes}-class dataset")
    settings = data_settings(info, dataset=opts.dataset, root=opts.root, split=opts.split, size=opts.size)
    eval_set = build_eval_dataset(settings, classes)
    indices = choose_figure_indices(eval_set, opts.figures, opts.figure_images, opts.seed, opts.max_images)
    common = dict(num_classes=classes, device=device, batch_size=opts.batch_size, depth_bins=opts.depth_bins,
                  max_images=opts.max_images, keep=_item_names(eval_set, indices), progress=opts.progress)

    snapshots = None
    selection = _read_selection(run_dir) if path.is_dir() else None
    if opts.all_snapshots:
        snapshots, result, info, selection = _evaluate_snapshots(path, eval_set, opts.select, common)
        model = load_segmenter(info["source"], map_location=device)[0]
    else:
        result = _evaluate_model(model, eval_set, desc="eval", **common)

    references: dict[str, dict] = {}
    for role, ref_path, ref_label in (("baseline", opts.baseline, opts.baseline_label),
                                      ("counterpart", opts.counterpart, opts.counterpart_label)):
        if ref_path is not None:
            references[role] = _reference(ref_path, role=role, dataset=eval_set, label=ref_label, **common)
    snapshot = snapshot_record(info)
    if not opts.all_snapshots or snapshot["run_finished"] is False:
        warn_snapshot(snapshot, f"dada eval {path}")
    depth_model = uses_depth(info)
    if "counterpart" not in references and "baseline" in references and depth_model \
            and not references["baseline"]["depth"]:
        references["counterpart"] = references["baseline"]
    depth_quality = None
    if opts.source_depth and info["model_spec"].get("depth_head"):
        depth_quality = _source_depth_quality(model, info, opts, classes, device)
    del model

    config = info.get("config") or {}
    results: dict[str, Any] = {
        "format": "dada-seg-results/1",
        "created": now_utc(),
        "code_version": code_version(),
        "model": {"label": opts.label or model_label(info), "checkpoint": info["source"],
                  "iteration": info.get("iteration"), "format": info.get("format"), "depth": depth_model,
                  "model_spec": info["model_spec"], "config_hash": config_hash(info.get("config")),
                  "config_hash_without_seed": config_hash(info.get("config"), without_seed=True),
                  "preset": config.get("preset"), "method": (config.get("method") or {}).get("name"),
                  "seed": config.get("seed"), "snapshot": snapshot,
                  "source_fraction": ((config.get("data") or {}).get("source") or {}).get("fraction")},
        "config": info.get("config"),
        "dataset": {**settings, "root": str(settings["root"]), "num_images": result.num_images,
                    "with_disparity": result.depth_ranges is not None,
                    "fingerprint": evaluation_fingerprint(settings, [r["name"] for r in result.per_image])},
        "selection": selection,
        "snapshots": snapshots,
        "result": result.to_dict(),
        "depth_quality": depth_quality,
        "notes": evaluation_notes(settings, result, opts, depth_quality, info),
    }
    for role, ref in references.items():
        results[role] = {k: v for k, v in ref.items() if k != "result_obj"} | {
            "result": ref["result_obj"].to_dict()}
    if "baseline" in references:
        results["negative_transfer"] = negative_transfer(result.per_image_map(),
                                                         references["baseline"]["result_obj"].per_image_map())
    if "counterpart" in references:
        results["d_gain"] = d_gain(result.miou, references["counterpart"]["result_obj"].miou)

    from dada.io import make_temp_dir

    # the evaluation is written beside (a hidden folder in out_dir), then swapped in file by file with
    # results.json last: a failure or a kill never leaves old results beside new figures, nor a
    # results.json without its report
    staging = make_temp_dir(out_dir, STAGING_PREFIX)
    try:
        results["figures"] = write_figures(staging, results, result, references, eval_set, indices,
                                           settings["preprocess"], run_dir, denormalize)
        write_results(staging, results)
        commit_evaluation(staging, out_dir, stale)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    results["out_dir"] = str(out_dir)
    return results


#: the hidden folder in which an evaluation is written before it replaces the previous one
STAGING_PREFIX = ".eval-tmp-"


def commit_evaluation(staging: Path, out_dir: Path, previous: set[str]) -> None:
    """Move a complete evaluation from ``staging`` into ``out_dir``: the previous ``results.json`` is removed
    first (from then on the folder reads as not evaluated), the previous evaluation's figures
    (``previous``) next, then the new figures and reports, and the new ``results.json`` last."""
    from dada.io import fsync_dir, os_errors

    with os_errors(out_dir / "results.json", "replace the evaluation in"):
        (out_dir / "results.json").unlink(missing_ok=True)
        fsync_dir(out_dir)
        for old in previous:
            (out_dir / old).unlink(missing_ok=True)
        for path in sorted(staging.rglob("*")):
            relative = path.relative_to(staging)
            if path.is_dir() or relative == Path("results.json"):
                continue
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, out_dir / relative)
        if (out_dir / "figures").is_dir():
            fsync_dir(out_dir / "figures")
        os.replace(staging / "results.json", out_dir / "results.json")
        fsync_dir(out_dir)


def evaluation_notes(settings: Mapping, result: EvalResult, opts: EvalOptions, depth_quality,
                     info: Mapping) -> list[str]:
    """What the evaluation could not measure on this target, and why (results.json ``notes``)."""
    notes = []
    if opts.depth_bins and result.depth_ranges is None:
        notes.append(f"IoU by depth range skipped: {settings['name']} split {settings['split']} has no depth "
                     f"(disparity) to bin pixels by")
    if info["model_spec"].get("depth_head") and settings["name"] == "camvid":
        scored = "; the depth head is scored on the source validation images" if depth_quality else ""
        notes.append(f"depth metrics on the target skipped: CamVid has no depth{scored}")
    return notes


def _evaluate_snapshots(run_dir: Path, eval_set, select: str, common: dict) -> tuple[list, EvalResult,
                                                                                      dict, dict]:
    """Every ``checkpoints/iter_*.pt`` (and ``best.pt``) of a run: ``(snapshots, result, info,
    selection)`` of the one ``select`` chooses."""
    from dada.models import load_segmenter

    found = snapshot_paths(run_dir)
    if not found:
        raise DadaError(f"{run_dir}: no checkpoints/iter_*.pt to evaluate (training keeps the newest "
                        f"train.keep_last); evaluate final.pt without --all-snapshots")
    snapshots, results_by_iter = [], {}
    best_file = run_dir / "checkpoints" / "best.pt"  # the trainer's best-on-val, possibly pruned from iter_*
    for iteration, snapshot in found + ([(None, best_file)] if best_file.is_file() else []):
        snap_model, snap_info = load_segmenter(snapshot, map_location=common["device"])
        iteration = snap_info.get("iteration") if iteration is None else iteration
        if iteration in results_by_iter or iteration is None:
            continue
        res = _evaluate_model(snap_model, eval_set, desc=f"iter {iteration}", **common)
        snapshots.append({"iteration": iteration, "checkpoint": str(snapshot), "miou": res.miou,
                          "miou13": res.miou13})
        results_by_iter[iteration] = (res, snap_info)
        del snap_model
    snapshots.sort(key=lambda s: s["iteration"])
    if select == "last":
        chosen = snapshots[-1]["iteration"]
    else:
        chosen = max(snapshots, key=lambda s: -math.inf if math.isnan(s["miou"]) else s["miou"])["iteration"]
    result, info = results_by_iter[chosen]
    selection = {"policy": select, "iteration": chosen, "label": SELECTION_POLICIES[select],
                 "source": "dada eval --all-snapshots"}
    return snapshots, result, info, selection


def _source_depth_quality(model, info: Mapping, opts: EvalOptions, classes: int, device) -> dict | None:
    """The depth head's quality on the source validation images (None when the config names none)."""
    source_settings = source_val_settings(info, opts.source_split)
    if source_settings is None:
        return None
    source_set = build_eval_dataset(source_settings, classes, depth=True, part="source")
    source_result = evaluate_segmenter(model, source_set, num_classes=classes, device=device,
                                       batch_size=opts.batch_size, depth_quality=True,
                                       max_images=opts.max_images, progress=opts.progress,
                                       desc="source depth")
    if not source_result.depth_quality:
        return None
    return {**source_result.depth_quality, "images": source_result.num_images, "dataset": source_settings,
            "source_miou": source_result.miou}


def write_figures(out_dir: Path, results: Mapping, result: EvalResult, references: Mapping[str, dict],
                  eval_set, indices: Sequence[int], preprocess: str, run_dir: Path | None,
                  denormalize) -> dict[str, str]:
    """Predictions, depth maps, the qualitative grid, the IoU and depth-range charts, training curves."""
    from dada.evaluation import figures as fig

    out = Path(out_dir)
    written: dict[str, str] = {}
    classes = result.num_classes
    model_label = results["model"]["label"]
    rows = []
    for index in indices:
        item = eval_set[index]
        name = str(item["name"])
        kept = result.kept.get(name)
        if kept is None:
            continue
        stem = Path(name).with_suffix("").as_posix().removesuffix("_leftImg8bit")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
        fig.save_rgb(out / "figures" / f"{safe}_pred.png", fig.colorize(kept["pred"], classes))
        written[f"prediction {name}"] = f"figures/{safe}_pred.png"
        if kept["depth"] is not None:
            fig.save_rgb(out / "figures" / f"{safe}_depth.png", fig.depth_to_rgb(kept["depth"]))
            written[f"depth {name}"] = f"figures/{safe}_depth.png"
        predictions = {}
        for role in ("baseline", "counterpart"):
            ref = references.get(role)
            if ref is not None and ref["label"] not in predictions and name in ref["result_obj"].kept:
                predictions[f"{ref['label']}"] = ref["result_obj"].kept[name]["pred"]
        title = model_label if model_label not in predictions else f"{model_label} (evaluated)"
        predictions[title] = kept["pred"]
        rows.append({"image": denormalize(item["image"], preprocess), "label": item["label"].numpy(),
                     "predictions": predictions, "name": name})
    if rows:
        fig.qualitative_grid(rows, out / "figures" / "qualitative.png", classes)
        written["qualitative grid"] = "figures/qualitative.png"
    series = {model_label: result.iou}
    summary = {model_label: result.miou}
    depth_series = {}
    if result.depth_ranges:
        depth_series[model_label] = {r: v["miou"] for r, v in result.depth_ranges["ranges"].items()}
    for role in ("counterpart", "baseline"):
        ref = references.get(role)
        if ref is not None and ref["label"] not in series:
            series = {ref["label"]: ref["result_obj"].iou, **series}
            summary = {ref["label"]: ref["result_obj"].miou, **summary}
            if ref["result_obj"].depth_ranges:
                ranges = ref["result_obj"].depth_ranges["ranges"]
                depth_series = {ref["label"]: {r: v["miou"] for r, v in ranges.items()}, **depth_series}
    fig.iou_bar_chart(series, result.class_names, out / "figures" / "iou_per_class.png", summary=summary)
    written["per-class IoU"] = "figures/iou_per_class.png"
    if depth_series:
        fig.depth_range_chart(depth_series, out / "figures" / "iou_by_depth.png")
        written["mIoU by depth range"] = "figures/iou_by_depth.png"
    if run_dir is not None and (run_dir / "metrics.jsonl").is_file():
        try:
            fig.training_curves(run_dir / "metrics.jsonl", out / "figures" / "training_curves.png",
                                title=model_label)
            written["training curves"] = "figures/training_curves.png"
        except DadaError:
            pass  # no training records yet
    return written
