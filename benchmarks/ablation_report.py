"""The study's report writer: loads the finished runs of ``benchmarks/ablation.py`` and writes the
generated Markdown (tables, paired differences, D-Gain, health, class shifts, curves, figures) and
``ablation.json``."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import statistics
import time
from pathlib import Path

from ablation_setups import (
    DGAIN_PAIRS,
    PAPER_TABLE1,
    PAPER_TABLE3,
    PAPER_TABLE4,
    SELFTRAINING_ORDER,
    SETTING_REPORTS,
    TABLE1_ORDER,
    TABLE3_STEPS,
    UNVERIFIED,
    VAL_TEXT,
    Job,
    config_of,
    logged_seconds_per_iter,
    run_dir,
)


# ------------------------------------------------------------------------------------------- reporting
def load_group(out: Path, job: Job, baseline: list | None) -> tuple[list[dict], dict]:
    """The evaluated runs of ``job`` (negative transfer recomputed against the S1 run of the same seed)
    and their mean ± std row (``dada.evaluation.compare.aggregate``)."""
    from dada.evaluation import load_results
    from dada.evaluation.compare import aggregate, with_references

    runs = [load_results(run_dir(out, job, seed)) for seed in job.seeds]
    runs = with_references(runs, baseline=baseline)
    row = aggregate(runs, job.setup.label)
    row["seconds_per_iter"] = _mean([logged_seconds_per_iter(run_dir(out, job, s)) for s in job.seeds])
    return runs, row


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def paired_by_seed(groups: dict[str, tuple[list[dict], dict]], a: str, b: str) -> dict[int, float]:
    """mIoU of ``a`` minus mIoU of ``b`` for each seed both have ({} when either is missing)."""
    if a not in groups or b not in groups:
        return {}
    by_seed = {r["model"]["seed"]: r["result"]["miou"] for r in groups[b][0]}
    return {r["model"]["seed"]: r["result"]["miou"] - by_seed[r["model"]["seed"]] for r in groups[a][0]
            if r["model"]["seed"] in by_seed}


def d_gains(groups: dict[str, tuple[list[dict], dict]]) -> dict[str, dict]:
    """D-Gain (``dada.evaluation.metrics.d_gain``: depth model minus its no-depth counterpart) of each
    depth model, per seed (paired by seed) then mean ± std."""
    from dada.evaluation.stats import mean_std

    gains = {}
    for model, counterpart in DGAIN_PAIRS:
        values = list(paired_by_seed(groups, model, counterpart).values())
        if values:
            mean, std = mean_std(values)
            gains[model] = {"counterpart": counterpart, "per_seed": values, "mean": mean, "std": std}
    return gains


def paired_steps(groups: dict[str, tuple[list[dict], dict]], order: list[str]) -> list[dict]:
    """mIoU differences paired by seed: every set-up of ``order`` against S1, then Table 3's steps. A step
    is resolved when |mean| exceeds twice the std of its per-seed differences (at least 2 seeds)."""
    from dada.evaluation.stats import mean_std, verdict

    pairs = [(key, "S1") for key in order if key != "S1"] + [p for p in TABLE3_STEPS if p[1] != "S1"]
    steps = []
    for a, b in pairs:
        per_seed = paired_by_seed(groups, a, b)
        if not per_seed:
            continue
        mean, std = mean_std(list(per_seed.values()))
        steps.append({"a": a, "b": b, "per_seed": per_seed, "mean": mean, "std": std,
                      "verdict": verdict(mean, std)})
    return steps


def run_health(out: Path, jobs: list[Job], groups: dict[str, tuple[list[dict], dict]]
               ) -> dict[str, dict[str, list[float]]]:
    """Per set-up, per quantity, the per-seed values of what says whether a run adapted at all: each
    discriminator and fooling loss averaged over the last half of training (``dada.demo.training_health``)
    and the source-val depth AbsRel and δ<1.25 (the loaded ``results.json``'s ``depth_quality``)."""
    from dada.demo import training_health
    from dada.evaluation.figures import STAT_PANELS

    health: dict[str, dict[str, list[float]]] = {}
    for job in jobs:
        values: dict[str, list[float]] = {}
        for results in groups[job.setup.key][0]:
            one = {k: v for k, v in training_health(run_dir(out, job, results["model"]["seed"])).items()
                   if k.startswith(("d_", "adv_")) or k in STAT_PANELS}
            quality = results.get("depth_quality") or {}
            one["depth_abs_rel"], one["depth_delta1"] = quality.get("abs_rel"), quality.get("delta1")
            for name, value in one.items():
                if value is not None and math.isfinite(value):
                    values.setdefault(name, []).append(float(value))
        if values:
            health[job.setup.key] = values
    return health


def val_during_training(out: Path, by_key: dict[str, Job]) -> dict[str, dict[int, dict[int, float]]]:
    """Per set-up, per seed, the target-val mIoU logged during training (``eval.every``): {iterations done:
    miou} (``metrics.jsonl`` numbers iterations from 0). Set-ups without such records are left out."""
    from dada.evaluation.figures import read_metrics

    curves: dict[str, dict[int, dict[int, float]]] = {}
    for key, job in by_key.items():
        per_seed = {}
        for seed in job.seeds:
            metrics = run_dir(out, job, seed) / "metrics.jsonl"
            records = read_metrics(metrics) if metrics.is_file() else []
            points = {int(r["iteration"]) + 1: float(r["miou"]) for r in records if r.get("kind") == "eval"
                      and isinstance(r.get("miou"), (int, float)) and math.isfinite(r["miou"])}
            if points:
                per_seed[seed] = points
        if per_seed:
            curves[key] = per_seed
    return curves


def class_shifts(groups: dict[str, tuple[list[dict], dict]], order: list[str], top: int = 3) -> list[dict]:
    """For every set-up of ``order`` but S1, the ``top`` classes whose IoU moved most against S1 (paired by
    seed, mean over the seeds both have), and where the ground-truth pixels of each went: the share of them
    predicted as each class (the confusion rows summed over those seeds), by S1 and by the set-up."""
    import numpy as np

    from dada.evaluation.stats import mean_std

    if "S1" not in groups:
        return []
    base = {r["model"]["seed"]: r["result"] for r in groups["S1"][0]}

    def iou(result: dict) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in result["iou"]], dtype=np.float64)

    def went(results: list[dict], c: int) -> list[tuple[str, float]]:
        """The class itself (its recall), then the two other classes that got most of its pixels."""
        row = sum(np.asarray(r["confusion"], dtype=np.float64)[c] for r in results)
        share = row / max(row.sum(), 1.0)
        names = results[0]["class_names"]
        others = [j for j in np.argsort(-share, kind="stable") if j != c and share[j] > 0][:2]
        return [(names[j], float(share[j])) for j in [c, *others]]

    shifts = []
    for key in order:
        if key == "S1" or key not in groups:
            continue
        pairs = [(r["result"], base[r["model"]["seed"]]) for r in groups[key][0]
                 if r["model"]["seed"] in base]
        if not pairs:
            continue
        ours, theirs = np.stack([iou(a) for a, _ in pairs]), np.stack([iou(b) for _, b in pairs])
        deltas = ours - theirs
        known = ~np.isnan(deltas).all(axis=0)
        mean_delta = np.nanmean(np.where(known, deltas, 0.0), axis=0)  # a class no run has: 0
        for c in [c for c in np.argsort(-np.abs(mean_delta), kind="stable") if known[c]][:top]:
            shifts.append({"a": key, "class": pairs[0][0]["class_names"][c], "delta": float(mean_delta[c]),
                           "std": mean_std(deltas[:, c])[1], "per_seed": [float(d) for d in deltas[:, c]],
                           "iou_a": float(np.nanmean(ours[:, c])), "iou_s1": float(np.nanmean(theirs[:, c])),
                           "went_a": went([a for a, _ in pairs], c),
                           "went_s1": went([b for _, b in pairs], c),
                           "seeds": len(pairs)})
    return shifts


def _signed_pm(mean: float, std: float | None) -> str:
    """A difference of two mIoUs in points, signed, with the std of its per-seed values when there is one."""
    return f"{100 * mean:+.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def shift_lines(shifts: list[dict], rows: dict[str, dict]) -> list[str]:
    def went(pairs: list[tuple[str, float]]) -> str:
        (name, kept), *others = pairs
        return f"{name} {100 * kept:.0f} %" + "".join(f", {o} {100 * share:.0f} %" for o, share in others)

    lines = ["| Set-up | class | IoU: S1 → set-up | paired change (points) | "
             "its pixels predicted as, by S1 | … by the set-up |", "|---|---|---|---|---|---|"]
    for sh in shifts:
        lines.append(f"| {rows[sh['a']]['label']} (n={sh['seeds']}) | {sh['class']} | "
                     f"{100 * sh['iou_s1']:.1f} → {100 * sh['iou_a']:.1f} | "
                     f"{_signed_pm(sh['delta'], sh['std'])} | "
                     f"{went(sh['went_s1'])} | {went(sh['went_a'])} |")
    return lines


def _num_pm(values: list[float], digits: int = 3) -> str:
    from dada.evaluation.stats import mean_std

    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def paired_lines(steps: list[dict], rows: dict[str, dict]) -> list[str]:
    lines = ["| step (A − B) | per seed (points) | mean ± std | verdict |", "|---|---|---|---|"]
    for step in steps:
        per_seed = ", ".join(f"{seed}: {100 * v:+.1f}" for seed, v in sorted(step["per_seed"].items()))
        lines.append(f"| {rows[step['a']]['label']} − {rows[step['b']]['label']} | {per_seed} | "
                     f"{_signed_pm(step['mean'], step['std'])} | {step['verdict']} |")
    return lines


def health_lines(health: dict[str, dict[str, list[float]]], rows: dict[str, dict]) -> list[str]:
    from dada.evaluation.figures import STAT_PANELS
    from dada.evaluation.stats import mean_std

    lines = ["| Set-up | depth AbsRel (source val) | δ<1.25 (%) | last-half losses (chance: ln 2 = 0.693) | "
             "self-training, last half |", "|---|---|---|---|---|"]
    for key, values in health.items():
        absrel = _num_pm(values["depth_abs_rel"]) if "depth_abs_rel" in values else "-"
        delta = _pm(*mean_std(values["depth_delta1"])) if "depth_delta1" in values else "-"
        losses = "; ".join(f"`{name}` {_num_pm(v)}" for name, v in sorted(values.items())
                           if name.startswith(("d_", "adv_"))) or "-"
        stats = "; ".join(f"`{name}` {_num_pm(values[name])}" for name in STAT_PANELS
                          if name in values) or "-"
        lines.append(f"| {rows[key]['label']} | {absrel} | {delta} | {losses} | {stats} |")
    return lines


def val_curve_lines(curves: dict[str, dict[int, dict[int, float]]], rows: dict[str, dict]) -> list[str]:
    """One row per set-up (mean ± std over seeds at each logged iteration), and below each set-up other
    than S1 its difference to S1 paired by seed."""
    from dada.evaluation.stats import mean_std

    iterations = sorted({it for per_seed in curves.values() for points in per_seed.values() for it in points})

    def cell(values: list[float], signed: bool = False) -> str:
        if not values:
            return "-"
        mean, std = mean_std(values)
        return _signed_pm(mean, std) if signed else _pm(mean, std)

    lines = ["| Set-up | " + " | ".join(str(it) for it in iterations) + " |",
             "|---|" + "---|" * len(iterations)]
    base = curves.get("S1", {})
    for key, per_seed in curves.items():
        lines.append(f"| {rows[key]['label']} (n={len(per_seed)}) | " + " | ".join(
            cell([p[it] for p in per_seed.values() if it in p]) for it in iterations) + " |")
        if key != "S1" and base:
            lines.append(f"| {rows[key]['label']} − S1, paired | " + " | ".join(cell([
                p[it] - base[s][it] for s, p in per_seed.items() if s in base and it in p and it in base[s]],
                signed=True) for it in iterations) + " |")
    return lines


def comparison_lines(rows: dict[str, dict], keys: list[str]) -> tuple[list[str], list[str]]:
    """Which set-up beats which by more than twice the larger of their two std (over seeds), and which
    pairs stay within it. Needs at least 2 seeds."""
    beats, within = [], []
    present = [k for k in keys
               if k in rows and rows[k]["miou"] is not None and not math.isnan(rows[k]["miou"])]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            ra, rb = rows[a], rows[b]
            if ra["miou_std"] is None or rb["miou_std"] is None:
                continue
            diff = ra["miou"] - rb["miou"]
            spread = 2 * max(ra["miou_std"], rb["miou_std"])
            winner, loser = (ra, rb) if diff > 0 else (rb, ra)
            text = (f"{winner['label']} ({100 * winner['miou']:.1f}) vs {loser['label']} "
                    f"({100 * loser['miou']:.1f}): {100 * abs(diff):.1f} points, twice the larger std "
                    f"{100 * spread:.1f}")
            (beats if abs(diff) > spread else within).append(text)
    return beats, within


def paper_agreement(rows: dict[str, dict], paper: dict[str, float]) -> list[str]:
    """For each pair of Table 3 set-ups the paper orders, whether the measured order agrees (beyond twice
    the larger std), is reversed, or is not resolved."""
    lines = []
    keys = [k for k in paper if k in rows and rows[k]["miou"] is not None]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if paper[a] == paper[b]:
                continue
            hi, lo = (a, b) if paper[a] > paper[b] else (b, a)
            diff = rows[hi]["miou"] - rows[lo]["miou"]
            stds = [rows[k]["miou_std"] for k in (hi, lo)]
            spread = 2 * max(stds) if None not in stds else None
            if spread is None:
                verdict = "not resolved (one seed)"
            elif diff > spread:
                verdict = "agrees"
            elif -diff > spread:
                verdict = "reversed"
            else:
                verdict = "not resolved (within twice the std)"
            lines.append(f"paper {hi} > {lo} ({paper[hi]} > {paper[lo]}); measured "
                         f"{100 * rows[hi]['miou']:.1f} vs {100 * rows[lo]['miou']:.1f}: {verdict}")
    return lines


def dagger(key: str, label: str) -> str:
    """``label`` with † when the set-up's constants are not verified against its paper (``UNVERIFIED``)."""
    return f"{label}†" if key in UNVERIFIED else label


def unverified_footnote(keys) -> list[str]:
    """The footnote that explains the † of the rows in ``keys`` (none: no lines)."""
    keys = set(keys)
    marked = list(dict.fromkeys(text for key, text in UNVERIFIED.items() if key in keys))
    if not marked:
        return []
    return ["", "† constants not verified against the paper: " + "; ".join(marked) + " (docs/methods.md "
            "gives where each value comes from); read these rows as our implementation, not the paper's."]


def _pm(mean, std, digits=1) -> str:
    from dada.evaluation.reports import pct_pm

    return pct_pm(mean, std, digits)


def write_report(doc: Path, out: Path, jobs: list[Job], skipped: dict, the_plan: dict, args,
                 common: list[str], started: float) -> dict:
    from dada.evaluation import compare_runs, evaluate_run
    from dada.evaluation import figures as fig
    from dada.evaluation.reports import paper_table
    from dada.io import now_utc

    by_key = {job.setup.key: job for job in jobs}
    baseline = [run_dir(out, by_key["S1"], s) for s in by_key["S1"].seeds] if "S1" in by_key else None
    groups = {key: load_group(out, job, baseline) for key, job in by_key.items()}
    rows = {key: row for key, (_, row) in groups.items()}
    for row in rows.values():  # D-Gain only where the paper reports one (set below)
        row["d_gain"] = row["d_gain_std"] = None
    gains = d_gains(groups)
    for key, gain in gains.items():
        rows[key]["d_gain"], rows[key]["d_gain_std"] = gain["mean"], gain["std"]
    first = next(iter(groups.values()))[0][0]["result"]
    class_names, num_classes = first["class_names"], first["num_classes"]

    assets = doc.parent / "figures" / doc.stem
    assets.mkdir(parents=True, exist_ok=True)
    figures, local_figures = {}, {}
    # all runs in one `dada compare` (its json/md/chart next to the runs; the chart also in the doc)
    # grouped and labelled by set-up: runs of one set-up trained by different code versions can differ in
    # their config hash (a key added since), and Table 4's fractions share S7's preset
    all_runs = [run_dir(out, job, s) for job in jobs for s in job.seeds]
    comparison = compare_runs(all_runs, out / "comparison", overwrite=True,
                              title=f"ablation on {args.setting}", baseline=baseline,
                              labels=[job.setup.label for job in jobs for _ in job.seeds])
    shutil.copyfile(comparison["files"]["chart"], assets / "per_class_iou.png")
    figures["per-class IoU of every set-up"] = assets / "per_class_iou.png"
    plotted = [job for job in jobs if job.setup.group != "table4"] or jobs  # Table 4 alone: its runs
    curves = {job.setup.label: run_dir(out, job, job.seeds[0]) / "metrics.jsonl" for job in plotted}
    fig.training_curves_overlay(curves, assets / "training_curves.png",
                                title=f"training curves (seed {jobs[0].seeds[0]})")
    figures["training curves (first seed)"] = assets / "training_curves.png"
    if all(k in by_key for k in ("S1", "S2", "S7")):  # the paper's Figure 3: image, GT, S1, AdvEnt, DADA
        seed = by_key["S7"].seeds[0]
        qualitative = evaluate_run(run_dir(out, by_key["S7"], seed), out_dir=out / "qualitative",
                                   overwrite=True, device=args.device, progress=False, figures=3,
                                   label=by_key["S7"].setup.label, baseline=run_dir(out, by_key["S1"], seed),
                                   counterpart=run_dir(out, by_key["S2"], seed),
                                   baseline_label=by_key["S1"].setup.label,
                                   counterpart_label=by_key["S2"].setup.label)
        grid = Path(qualitative["out_dir"]) / qualitative["figures"]["qualitative grid"]
        caption = "qualitative: image, ground truth, S1, S2 (AdvEnt), S7 (DADA)"
        if SETTING_REPORTS.get(args.setting, {}).get("frames_in_git", True):
            shutil.copyfile(grid, assets / "qualitative.png")
            figures[caption] = assets / "qualitative.png"
        else:  # the target's frames may not go into git (CamVid: research use only): name the local file
            local_figures[caption] = grid

    cfg = config_of(jobs[0], jobs[0].seeds[0], common, out)
    seeds = sorted({s for job in jobs for s in job.seeds})
    command = "python benchmarks/ablation.py " + shlex.join(args.argv)
    lines = [f"# {args.title}", "",
             f"Written {now_utc()} by `{command.strip()}` (rerun it to reproduce or extend; finished runs "
             f"are reused). Runs and raw numbers: `{out}` (`ablation.json`).", "",
             f"- recipe: setting `{args.setting}` — `{cfg.model.arch}` backbone, {cfg.train.max_iters} "
             f"iterations, batch {cfg.data.source.batch_size}+{cfg.data.target.batch_size}, "
             f"{cfg.model.num_classes} classes; overrides of the setting: "
             f"{', '.join(f'`{o}`' for o in args.recipe) or 'none'}",
             f"- seeds: {', '.join(map(str, seeds))}; every cell is mean ± std (ddof=1) over the seeds "
             "its row has (the n and seeds columns; one seed: no ±)",
             f"- mIoU on {SETTING_REPORTS.get(args.setting, {}).get('val', VAL_TEXT)} (official protocol); "
             "NT rate: share of "
             "images whose per-image mIoU is below S1's of the same seed; D-Gain: mIoU gain over the "
             "no-depth counterpart of the same seed (DADA vs AdvEnt, SPIGAN vs SPIGAN-no-PI)",
             f"- total time of this invocation: {(time.perf_counter() - started) / 60:.1f} min", ""]
    if skipped:
        lines += ["Not run: " + "; ".join(f"**{k}** ({v})" for k, v in skipped.items()), ""]
    notes = [job for job in jobs if job.note]
    lines += [f"Note: {job.setup.label}: {job.note}." for job in notes] + ([""] if notes else [])

    table1 = [k for k in TABLE1_ORDER if k in rows]
    if table1:  # a study of source only and self-training alone has no Table 1 row
        lines += ["## Table 1 layout: per-class IoU (%)", ""]
        labelled = [{**rows[k], "label": f"{dagger(k, rows[k]['label'])} (n={len(rows[k]['runs'])})"}
                    for k in table1]
        lines += paper_table(labelled, class_names, num_classes)
        lines += unverified_footnote(table1)
        paper1 = [f"{rows[k]['label']} {v[0] if v[0] is not None else '-'} / {v[1]}"
                  for k, v in PAPER_TABLE1.items() if k in rows]
        lines += ["", "Paper (Synthia→Cityscapes, mIoU / mIoU*): " + "; ".join(paper1) + ".", ""]
    selftraining = [k for k in SELFTRAINING_ORDER if k in rows]
    if any(job.setup.group == "selftraining" for job in jobs):  # beyond the paper: self-training beside
        # source only, DADA and the oracle, per class
        lines += ["## Self-training: per-class IoU (%)", ""]
        lines += paper_table([{**rows[k], "label": f"{rows[k]['label']} (n={len(rows[k]['runs'])})"}
                              for k in selftraining], class_names, num_classes)
        lines += [""]

    lines += ["## Table 3 layout: ablation S1–S7", "",
              "| Setup | Surp. Adapt. | Depth Adapt. | Feat. Fusion | DADA Fusion | mIoU (%) | NT rate (%) | "
              "seeds | paper mIoU (%) |", "|---|---|---|---|---|---|---|---|---|"]
    for job in jobs:
        if job.setup.flags is None:
            continue
        r = rows[job.setup.key]
        marks = " | ".join("✓" if f else "" for f in job.setup.flags)
        lines.append(f"| {r['label']} | {marks} | {_pm(r['miou'], r['miou_std'])} | "
                     f"{_pm(r['negative_transfer'], r['negative_transfer_std'], 0)} | {len(job.seeds)} | "
                     f"{PAPER_TABLE3.get(job.setup.key, '-')} |")
    fractions = [(job.setup.fraction, rows[job.setup.key]) for job in jobs if job.setup.group == "table4"]
    if fractions and "S7" in rows:
        fractions.append((1.0, rows["S7"]))
    if fractions:
        fractions.sort(key=lambda x: x[0])
        lines += ["", "## Table 4 layout: DADA on fractions of the source", "",
                  "| % of source | " + " | ".join(f"{round(100 * f)}%" for f, _ in fractions) + " |",
                  "|---|" + "---|" * len(fractions),
                  "| mIoU (%) | " + " | ".join(_pm(r["miou"], r["miou_std"]) for _, r in fractions) + " |",
                  "| seeds | " + " | ".join(str(len(r["runs"])) for _, r in fractions) + " |",
                  "| paper mIoU (%) | " + " | ".join(str(PAPER_TABLE4.get(f, "-")) for f, _ in fractions)
                  + " |"]

    lines += ["", "## Time per iteration", "",
              "Median logged seconds per training iteration (mean over the seeds' runs), this machine, "
              + ("the thread count each run was trained with." if args.report_only else
                 f"{args.threads} thread(s) per job."), "",
              "| Set-up | preset | s/iter | iterations | training time per run (min) |",
              "|---|---|---|---|---|"]
    for job in jobs:
        r = rows[job.setup.key]
        per_iter = r["seconds_per_iter"]
        minutes = "-" if per_iter is None else f"{per_iter * cfg.train.max_iters / 60:.1f}"
        preset = " ".join([job.preset, *job.setup.overrides])
        seconds = "-" if per_iter is None else f"{per_iter:.3f}"
        lines.append(f"| {dagger(job.setup.key, r['label'])} | `{preset}` | {seconds} | "
                     f"{cfg.train.max_iters} | {minutes} |")
    lines += unverified_footnote(job.setup.key for job in jobs)

    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({os.path.relpath(path, doc.parent)})" for name, path in figures.items()]
    lines += [f"- {name}: `{path}` on the machine that ran the study (not in git: the target's frames are "
              f"not ours to publish; rerun the command above with `--report-only` to draw it)"
              for name, path in local_figures.items()]

    order = [k for k in ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "minent", "adaptsegnet", "clan",
                         "adaptpatch", "spigan_nopi", "spigan", "dacs", "dast_class", "dast_nofusion", "dast",
                         "dast_adv", "dast_corda", "oracle")
             if k in rows]
    order += [job.setup.key for job in jobs if job.setup.group == "table4"]
    beats, within = comparison_lines(rows, order)
    lines += ["", "## Measured comparisons (generated)", "",
              "A beats B when mean(A) − mean(B) exceeds twice the larger of their two standard deviations "
              "over seeds.", ""]
    if len(seeds) < 2:
        lines += ["One seed: no spread, so no comparison is resolved; rerun with `--seeds 3`.", ""]
    lines += ["Beats:", ""] + ([f"- {t}" for t in beats] or ["- none"])
    lines += ["", "Within the spread:", ""] + ([f"- {t}" for t in within] or ["- none"])
    lines += ["", "Against the paper's Table 3 ordering:", ""]
    lines += [f"- {t}" for t in paper_agreement(rows, PAPER_TABLE3)] or ["- no Table 3 rows"]
    if gains:
        lines += ["", "D-Gain per seed: " + "; ".join(
            f"{rows[k]['label']} vs {rows[g['counterpart']]['label']}: "
            + ", ".join(f"{100 * v:+.1f}" for v in g["per_seed"]) for k, g in gains.items())]
    steps = paired_steps(groups, order)
    lines += ["", "## Paired by seed (generated)", "",
              "mIoU of A minus mIoU of B trained with the same seed: every set-up against S1, then Table 3's "
              "steps. Resolved: |mean| above twice the std of the per-seed differences.", ""]
    lines += paired_lines(steps, rows) if steps else ["No pair with a common seed."]
    health = run_health(out, jobs, groups)
    if health:
        lines += ["", "## Depth branch and discriminators (generated)", "",
                  "Depth quality of each run's depth head on the source validation images (`results.json`'s "
                  "`depth_quality`), each discriminator (`d_*`) and fooling (`adv_*`) loss averaged over "
                  "the last half of training (`metrics.jsonl`), and the self-training statistics over the "
                  "same half (`pseudo_weight`: the fraction of target pixels the teacher is confident on, "
                  "DACS's weight of the mixed loss; `mix_removed_by_depth`: the share of ClassMix pixels "
                  "dast's occlusion test removes); mean ± std over seeds.", ""]
        lines += health_lines(health, rows)
    shifts = class_shifts(groups, order)
    if shifts:
        lines += ["", "## Where the pixels went (generated)", "",
                  "For each set-up, the three classes whose IoU moved most against S1 (paired by seed, "
                  "mean ± std of the per-seed changes), and how the ground-truth pixels of that class are "
                  "predicted (the confusion rows summed over the common seeds): the share kept in the class, "
                  "then the two other classes that took most of them; first by S1, then by the set-up.", ""]
        lines += shift_lines(shifts, rows)
    curves = val_during_training(out, by_key)
    if curves:
        lines += ["", "## Target mIoU during training (generated)", "",
                  "The target-val mIoU (%) each run logged during training (`eval.every`), mean ± std over "
                  "seeds, after the iterations in the header; each set-up's second row: its difference to S1 "
                  "of the same seed.",
                  ""]
        lines += val_curve_lines(curves, rows)
    reading = (args.reading.read_text(encoding="utf-8").strip() if args.reading is not None else
               "_To be written by a person from the measured comparisons above: where the ordering agrees "
               "with the paper, where it does not, and why (pass it with `--reading FILE`)._")
    lines += ["", "## Reading", "", reading, ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines), encoding="utf-8")

    summary = {"format": "dada-seg-ablation/1", "created": now_utc(), "command": command.strip(),
               "setting": args.setting, "common_overrides": common, "seeds": seeds, "plan": the_plan,
               "skipped": skipped,
               "setups": {key: {"label": job.setup.label, "preset": job.preset, "overrides": job.overrides,
                                "note": job.note, "group": job.setup.group, "fraction": job.setup.fraction,
                                "runs": [{"seed": r["model"]["seed"],
                                          "folder": str(run_dir(out, job, r["model"]["seed"])),
                                          "miou": r["result"]["miou"], "miou13": r["result"].get("miou13"),
                                          "negative_transfer": (r.get("negative_transfer") or {}).get("rate")}
                                         for r in groups[key][0]],
                                "aggregate": rows[key]} for key, job in by_key.items()},
               "d_gain": gains, "comparisons": {"beats": beats, "within_spread": within},
               "paper_agreement": paper_agreement(rows, PAPER_TABLE3),
               "paired": [{**st, "per_seed": {str(k): v for k, v in st["per_seed"].items()}} for st in steps],
               "health": health,
               "class_shifts": shifts,
               "val_during_training": {key: {str(seed): {str(it): m for it, m in points.items()}
                                             for seed, points in per_seed.items()}
                                       for key, per_seed in curves.items()},
               "figures": {k: str(v) for k, v in figures.items()}, "doc": str(doc)}
    from dada.evaluation.evaluator import nan_to_none
    from dada.io import write_json

    write_json(out / "ablation.json", nan_to_none(summary))
    return summary


