"""``dada compare``: one table and one chart over several evaluated runs.

Each input is a run or evaluation folder holding ``results.json`` (written by ``dada eval``), or the file
itself. Runs of one set-up that differ only by their seed (same config hash without the seed) form one
group, shown as mean ± std (sample std, ddof=1) over the seeds; NaN per-class IoUs (class absent) are
left out of that class's mean. Outputs: ``comparison.json``, ``comparison.md`` (the paper's Table 1/2
layout, plus Table 3's one-mIoU-per-setup and Table 4's source-fraction rows when they apply) and
``comparison.png`` (per-class IoU bars with ± std error bars) and ``report.html`` (all of it on one
self-contained page, with each run's training curves and qualitative grid).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dada.errors import DadaError
from dada.evaluation.evaluator import nan_to_none
from dada.evaluation.metrics import d_gain, negative_transfer
from dada.evaluation.reports import (
    describe_dataset,
    load_results,
    paper_table,
    pct,
    pct_pm,
    results_fingerprint,
    snapshot_note,
)
from dada.evaluation.stats import mean_std
from dada.io import now_utc, write_json, write_text


def _group_key(results: Mapping) -> tuple[str, str]:
    """Runs average together only when they differ by their seed alone: the same config (without the
    seed) evaluated on the same evaluation set (fingerprint)."""
    model = results["model"]
    return (model.get("config_hash_without_seed") or model["checkpoint"], results_fingerprint(results))


def _group_label(results: Mapping) -> str:
    model = results["model"]
    return model.get("preset") or model.get("method") or model["label"]


def aggregate(runs: Sequence[Mapping], label: str) -> dict:
    """Mean ± std over the runs of one group (seeds)."""
    iou = np.array([[np.nan if v is None else v for v in r["result"]["iou"]] for r in runs], dtype=np.float64)
    iou_stats = [mean_std(iou[:, c]) for c in range(iou.shape[1])]
    row = {"label": label, "runs": [r["model"]["checkpoint"] for r in runs],
           "seeds": [r["model"].get("seed") for r in runs], "depth": bool(runs[0]["model"].get("depth")),
           "method": runs[0]["model"].get("method"),
           "source_fraction": runs[0]["model"].get("source_fraction"),
           "iou": [m for m, _ in iou_stats], "iou_std": [s for _, s in iou_stats]}
    for key, getter in (("miou", lambda r: r["result"]["miou"]),
                        ("miou13", lambda r: r["result"].get("miou13")),
                        ("pixel_accuracy", lambda r: r["result"]["pixel_accuracy"]),
                        ("negative_transfer", lambda r: (r.get("negative_transfer") or {}).get("rate")),
                        ("d_gain", lambda r: r.get("d_gain"))):
        values = [getter(r) for r in runs]
        if all(v is None for v in values):
            row[key], row[f"{key}_std"] = None, None
        else:
            row[key], row[f"{key}_std"] = mean_std(values)
    return row


def _by_seed(paths: Sequence[str | os.PathLike] | str | os.PathLike | None) -> dict:
    if paths is None:
        return {}
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return {load_results(p)["model"].get("seed"): load_results(p) for p in paths}


def _matching(references: Mapping, results: Mapping, role: str) -> Mapping:
    """The reference run with the same seed, else the first one; it must have been evaluated on the same
    images (per-image scores are paired by image name)."""
    reference = references.get(results["model"].get("seed"), next(iter(references.values())))
    if results_fingerprint(reference) != results_fingerprint(results):
        raise DadaError(f"--{role} {reference['model']['label']} was evaluated on "
                        f"{describe_dataset(reference)}, "
                        f"but {results['model']['label']} on {describe_dataset(results)}: per-image scores "
                        f"of different evaluation sets cannot be paired; evaluate both on the same images")
    return reference


def with_references(loaded: Sequence[dict], baseline=None, counterpart=None) -> list[dict]:
    """Recompute the negative transfer rate against ``baseline`` (source-only run(s)) and the D-Gain of
    depth-aware runs against ``counterpart`` (no-depth run(s)) from the per-image results stored in each
    ``results.json``, pairing runs of the same seed when there are several reference seeds."""
    baselines, counterparts = _by_seed(baseline), _by_seed(counterpart)
    updated = []
    for results in loaded:
        results = dict(results)
        if baselines:
            reference = _matching(baselines, results, "baseline")
            if reference["model"]["checkpoint"] != results["model"]["checkpoint"]:
                results["negative_transfer"] = {**negative_transfer(results["result"]["per_image"],
                                                                    reference["result"]["per_image"]),
                                                "baseline": reference["model"]["label"]}
        if counterparts and results["model"].get("depth"):
            reference = _matching(counterparts, results, "counterpart")
            results["d_gain"] = d_gain(_nan(results["result"]["miou"]), _nan(reference["result"]["miou"]))
        updated.append(results)
    return updated


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def check_distinct(paths: Sequence[str | os.PathLike]) -> None:
    """The same results given twice would count as two runs: an error naming it."""
    seen: dict[Path, str] = {}
    for path in paths:
        file = Path(path) / "results.json" if Path(path).is_dir() else Path(path)
        resolved = file.resolve()
        if resolved in seen:
            raise DadaError(f"{path} is given twice (also as {seen[resolved]}): give each evaluated run once")
        seen[resolved] = str(path)


def check_one_per_seed(runs: Sequence[Mapping]) -> None:
    """Runs averaged as seeds must be distinct seeds (a copied run folder is the same run twice)."""
    seen: dict = {}
    for results in runs:
        model = results["model"]
        key = model.get("seed") if model.get("seed") is not None else Path(str(model["checkpoint"])).resolve()
        if key in seen:
            raise DadaError(f"{model['checkpoint']} and {seen[key]} are the same seed "
                            f"({model.get('seed')}) of "
                            f"one set-up on one evaluation set: an average over seeds needs each seed once")
        seen[key] = model["checkpoint"]


def result_warnings(paths: Sequence[str | os.PathLike], loaded: Sequence[Mapping]) -> list[str]:
    """One line per result that is stale (older than its run's final checkpoint) or of an intermediate
    snapshot, so that neither is read as a final number."""
    warnings = []
    for path, results in zip(paths, loaded, strict=True):
        if results.get("stale"):
            warnings.append(f"{path}: STALE: {results['stale']}")
        elif snapshot_note((results.get("model") or {}).get("snapshot")):
            warnings.append(f"{path}: from an {snapshot_note(results['model']['snapshot'])}")
    return warnings


def compare_runs(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None, *,
                 overwrite: bool = False, title: str = "Comparison", baseline=None, counterpart=None,
                 labels: Sequence[str] | None = None) -> dict:
    """Group the evaluated runs (seeds of one set-up together), write the table and the chart into
    ``out_dir`` (when given) and return ``{"groups", "markdown", "files"}``.

    ``labels``: one label per path; runs with the same label form one group under it. Without it, runs
    group by their configuration without the seed and are labelled by their preset.

    ``baseline`` / ``counterpart``: evaluated source-only / no-depth run(s) (folders or results.json;
    a list for several seeds): the negative transfer rate and the D-Gain are then computed here from the
    stored per-image results, instead of taken from each run's own evaluation."""
    from dada.evaluation.figures import iou_bar_chart
    from dada.evaluation.report_html import write_compare_report

    if not paths:
        raise DadaError("give at least one evaluated run folder or results.json")
    if labels is not None and len(labels) != len(paths):
        raise DadaError(f"give one label per run: {len(labels)} labels for {len(paths)} runs")
    check_distinct(paths)
    loaded = with_references([load_results(p) for p in paths], baseline, counterpart)
    warnings = result_warnings(paths, loaded)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    classes = {r["result"]["num_classes"] for r in loaded}
    if len(classes) > 1:
        raise DadaError(f"the runs use different class sets ({sorted(classes)} classes): compare runs of one "
                        "class set")
    groups: dict = {}
    keys = labels if labels is not None else [_group_key(r) for r in loaded]
    for key, results in zip(keys, loaded, strict=True):
        groups.setdefault(key, []).append(results)
    for runs in groups.values():
        check_one_per_seed(runs)
    several_sets = len({results_fingerprint(r) for r in loaded}) > 1
    seen: dict[str, int] = {}
    rows = []
    for key, runs in groups.items():
        label = key if labels is not None else _group_label(runs[0])  # given labels are already unique keys
        if several_sets and labels is None:  # one model on two evaluation sets: two rows, each named
            label = f"{label} on {(runs[0].get('dataset') or {}).get('name')} " \
                    f"{(runs[0].get('dataset') or {}).get('split')} [{results_fingerprint(runs[0])[:6]}]"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label} ({seen[label]})"
        rows.append(aggregate(runs, label))
    num_classes = classes.pop()
    class_names = loaded[0]["result"]["class_names"]
    table = "Table 1" if num_classes == 16 else "Table 2"
    lines = [f"# {title}", "", f"{len(loaded)} evaluated runs in {len(rows)} groups; groups of seeds show "
             "mean ± std (ddof=1) over the seeds. Written " + now_utc() + ".", "",
             f"## Per-class IoU (%) — layout of the paper's {table}", ""]
    lines += paper_table([{**r, "label": f"{r['label']} (n={len(r['runs'])})"} for r in rows], class_names,
                         num_classes)
    lines += ["", "## mIoU per set-up — layout of the paper's Table 3", ""]
    lines += ["| Setup | method | Depth | seeds | mIoU (%) | NT rate (%) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['method'] or '-'} | {'✓' if r['depth'] else ''} | "
              f"{', '.join(str(s) for s in r['seeds'])} | {pct_pm(r['miou'], r['miou_std'])} | "
              f"{pct_pm(r['negative_transfer'], r['negative_transfer_std'], 0)} |" for r in rows]
    fractions = {r["source_fraction"] for r in rows if r["source_fraction"] is not None}
    if len(fractions) > 1:
        ordered = sorted(rows, key=lambda r: (r["source_fraction"] is None, r["source_fraction"]))
        lines += ["", "## mIoU by fraction of the source set — layout of the paper's Table 4", "",
                  "| % of source | " + " | ".join(pct(r["source_fraction"], 0) for r in ordered) + " |",
                  "|---|" + "---|" * len(ordered),
                  "| mIoU (%) | " + " | ".join(pct_pm(r["miou"], r["miou_std"]) for r in ordered) + " |"]
    if several_sets:
        lines += ["", "## Evaluation sets", "",
                  "These runs were evaluated on different sets; a row holds runs "
                  "of one set only ([fingerprint]: dataset, root, split, size, image list):", ""]
        lines += sorted({f"- [{results_fingerprint(r)[:6]}] {describe_dataset(r)}" for r in loaded})
    if warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in warnings]]
    lines.append("")
    markdown = "\n".join(lines)
    summary = {"format": "dada-seg-comparison/1", "created": now_utc(), "num_classes": num_classes,
               "class_names": class_names, "groups": rows, "inputs": [str(p) for p in paths],
               "warnings": warnings}
    files = {}
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise DadaError(f"output folder {out} exists: choose another one with --out or pass --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        files = {"json": out / "comparison.json", "md": out / "comparison.md",
                 "chart": out / "comparison.png"}
        iou_bar_chart({r["label"]: r["iou"] for r in rows}, class_names, files["chart"],
                      errors={r["label"]: r["iou_std"] for r in rows}, title=title,
                      summary={r["label"]: (r["miou"] if r["miou"] is not None else math.nan) for r in rows},
                      summary_errors={r["label"]: r["miou_std"] for r in rows})
        write_json(files["json"], nan_to_none(summary))
        page_markdown = markdown + f"\n![per-class IoU]({files['chart'].name})\n"
        write_text(files["md"], page_markdown)
        runs = [(r["model"]["label"], Path(p) if Path(p).is_dir() else Path(p).parent, r)
                for p, r in zip(paths, loaded, strict=True)]
        files["html"] = write_compare_report(out, title, page_markdown, runs)
    return {"groups": rows, "markdown": markdown, "files": {k: str(v) for k, v in files.items()}}
