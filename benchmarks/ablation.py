"""The paper's ablation and comparison on the built-in benchmark: Tables 1, 3 and 4, rerunnable.

Trains and evaluates, on the built-in benchmark with the demo's recipe (the ``--setting``, default
``benchmark``; presets ``<setting>_<method>``), ``--seeds`` seeds each (default 3):

- core:   S1–S7 (Table 3), MinEnt, AdaptSegNet and the oracle (trained on the target's labelled train
          split: the ``<setting>_oracle`` preset, or, while that preset does not exist, S1 with
          ``data.source := data.target``);
- table1: the Table 1 comparison systems CLAN, AdaptPatch, SPIGAN, SPIGAN-no-PI, when their presets exist
          (skipped with a printed reason otherwise);
- table4: DADA (S7) on 10/30/50/70 % of the source (``data.source.fraction``; 100 % is S7 itself).
- selftraining: DACS and the depth-aware self-training ladder (dast_class: + depth supervision; dast: +
          depth-ordered ClassMix), docs/self-training.md.

It first prints a plan with the estimated time, from a measured seconds/iteration of each set-up (a few
timed training steps, or the logged time of a run already there), then trains each run (finished runs are
reused, unfinished ones resumed from their last checkpoint), evaluates each on the target's validation set
(``dada.evaluation.evaluate_run``), and writes:

- ``<out>/ablation.json``: the plan, every run's results and timing, every table's numbers;
- ``<out>/comparison/``: ``dada compare`` over all runs (``compare_runs``);
- ``--doc`` (default ``docs/results-benchmark.md``; ``<out>/results-benchmark.md`` with ``--quick``) in
  the layouts of the paper's Tables 1, 3 and 4 (mean ± std over seeds, D-Gain, negative-transfer rate),
  the time per iteration of each method, the training curves, a qualitative figure and the factual
  comparison lines for a human's "Reading".

Examples::

    OMP_NUM_THREADS=1 python benchmarks/ablation.py --plan-only         # the plan and its time estimate
    OMP_NUM_THREADS=1 python benchmarks/ablation.py                     # the whole study (hours)
    python benchmarks/ablation.py --quick                               # smoke test: minutes
    python benchmarks/ablation.py --sets core --seeds 3 --jobs 2        # 2 parallel single-thread jobs
    python benchmarks/ablation.py --report-only --reading reading.md    # report what has finished
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

#: The paper's numbers (Synthia→Cityscapes, 16 classes, ResNet-101 unless said): Table 3 (mIoU per set-up),
#: Table 4 (DADA by % of source) and Table 1's mIoU (SPIGAN rows: VGG-16; "-": only mIoU* published).
PAPER_TABLE3 = {"S1": 32.2, "S2": 40.8, "S3": 40.7, "S4": 35.7, "S5": 38.0, "S6": 41.6, "S7": 42.6}
PAPER_TABLE4 = {0.1: 32.6, 0.3: 35.1, 0.5: 40.9, 0.7: 41.0, 1.0: 42.6}
PAPER_TABLE1 = {"spigan_nopi": (35.8, 41.2), "spigan": (36.8, 42.4), "adaptsegnet": (None, 45.9),
                "adaptpatch": (None, 46.3), "clan": (None, 47.8), "S2": (40.8, 47.6), "S7": (42.6, 49.8)}
QUICK_ITERS = 20


@dataclass(frozen=True)
class Setup:
    """One row: ``key`` names its folder and ``--only`` entry; ``method`` its methods.yaml entry."""

    key: str
    label: str
    method: str
    group: str  # core | table1 | table4
    overrides: tuple[str, ...] = ()
    flags: tuple[bool, bool, bool, bool] | None = None  # Table 3: surprisal, depth adapt, fusion, DADA fusion
    fraction: float | None = None


def _s(key: str, label: str, method: str, flags) -> Setup:
    return Setup(key, label, method, "core", flags=flags)


CORE = (
    _s("S1", "S1 (no adapt.)", "s1", (False, False, False, False)),
    _s("S2", "S2 (AdvEnt)", "s2", (True, False, False, False)),
    _s("S3", "S3", "s3", (True, False, True, False)),
    _s("S4", "S4", "s4", (False, True, False, False)),
    _s("S5", "S5", "s5", (False, True, True, False)),
    _s("S6", "S6", "s6", (True, True, True, False)),
    _s("S7", "S7 (DADA)", "s7", (True, True, True, True)),
    Setup("minent", "MinEnt", "minent", "core"),
    Setup("adaptsegnet", "AdaptSegNet", "adaptsegnet", "core"),
    Setup("oracle", "Oracle (target-trained)", "oracle", "core"),
)
TABLE1 = (
    Setup("clan", "CLAN", "clan", "table1"),
    Setup("adaptpatch", "AdaptPatch", "adaptpatch", "table1"),
    Setup("spigan_nopi", "SPIGAN-no-PI", "spigan_nopi", "table1"),
    Setup("spigan", "SPIGAN", "spigan", "table1"),
)
#: self-training (issue 27): DACS, and the depth-aware ladder DACS -> + depth supervision (dast_class) ->
#: + depth-ordered ClassMix (dast); docs/self-training.md
SELFTRAINING = (
    Setup("dacs", "DACS", "dacs", "selftraining"),
    Setup("dast_class", "DACS + depth sup.", "dast_class", "selftraining"),
    Setup("dast", "dast (depth-ordered mix)", "dast", "selftraining"),
)
#: Table 1's rows in the paper's order (SPIGAN pair, AdaptSegNet, AdaptPatch, CLAN, MinEnt, AdvEnt, DADA)
TABLE1_ORDER = ("spigan_nopi", "spigan", "adaptsegnet", "adaptpatch", "clan", "minent", "S2", "S7", "oracle")
#: Table 1 rows whose constants are not verified against their paper (docs/methods.md: the stored texts
#: stop after §1): the report's tables mark them with † and a footnote, never to be read as the paper's
UNVERIFIED = {"adaptpatch": "AdaptPatch's K, λ_d, λ_adv and patch grid", "spigan_nopi": "SPIGAN's α–δ",
              "spigan": "SPIGAN's α–δ"}
#: D-Gain pairs: (depth model, its no-depth counterpart)
DGAIN_PAIRS = (("S7", "S2"), ("spigan", "spigan_nopi"))
#: Table 3's steps, each one component added (paired by seed); every set-up is also paired with S1
TABLE3_STEPS = (("S3", "S2"), ("S5", "S4"), ("S6", "S3"), ("S6", "S5"), ("S7", "S6"), ("S7", "S2"))
DEFAULT_FRACTIONS = (0.1, 0.3, 0.5, 0.7)
#: settings whose study has its own report (``--doc``, ``--title`` defaults) and, for a target whose
#: licence keeps its frames out of git (CamVid: CC BY-NC, research use only), a qualitative figure that
#: stays in the runs folder instead of docs/figures
SETTING_REPORTS = {
    "benchmark2camvid": {"doc": "results-camvid.md", "frames_in_git": False,
                         "title": "Results on real frames: the built-in synthetic source → CamVid",
                         "val": "CamVid val (101 real frames; the 16 predicted classes merged into CamVid's "
                                "11, dada.evaluation.classmap; the oracle predicts the 11 itself)"},
}
BENCHMARK_TITLE = "Results on the built-in benchmark: the paper's Tables 1, 3 and 4"
VAL_TEXT = "the benchmark's target validation images"


def fraction_setups(fractions) -> tuple[Setup, ...]:
    return tuple(Setup(f"S7_frac{round(100 * f):02d}", f"DADA {round(100 * f)}%", "s7", "table4",
                       overrides=(f"data.source.fraction={f}",), fraction=f) for f in fractions)


def say(message: str) -> None:
    print(f"[ablation {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------- set-ups
@dataclass
class Job:
    setup: Setup
    preset: str
    overrides: list[str]
    note: str = ""
    seeds: list[int] = field(default_factory=list)


def resolve(setup: Setup, setting: str, common: list[str]) -> Job:
    """The preset and overrides of ``setup``; raises LookupError(reason) when its preset does not exist."""
    from dada.config import load_config, split_preset
    from dada.errors import DadaError

    preset = f"{setting}_{setup.method}"
    try:
        split_preset(preset)
    except DadaError:
        if setup.key != "oracle":
            raise LookupError(f"preset {preset} does not exist yet (its method is not in "
                              f"dada/configs/methods.yaml)") from None
        # the oracle's definition: the source-only model trained on the target's labelled train split
        preset = f"{setting}_s1"
        target = load_config(preset, common).data.target
        size = "null" if target.size is None else f"[{','.join(str(int(v)) for v in target.size)}]"
        overrides = [f"data.source.name={target.name}", f"data.source.root={json.dumps(str(target.root))}",
                     f"data.source.split={target.split}", f"data.source.size={size}"]
        return Job(setup, preset, [*overrides, *setup.overrides],
                   note=f"{setting}_oracle does not exist yet: {preset} trained on the target's labelled "
                        f"{target.split} split")
    return Job(setup, preset, list(setup.overrides))


def run_dir(out: Path, job: Job, seed: int) -> Path:
    return out / "runs" / job.setup.key / f"seed{seed}"


def config_of(job: Job, seed: int, common: list[str], out: Path):
    from dada.config import load_config

    return load_config(job.preset, [*common, *job.overrides, f"seed={seed}",
                                    f"output.name=runs/{job.setup.key}/seed{seed}"])


def is_trained(folder: Path, max_iters: int) -> bool:
    try:
        summary = json.loads((folder / "train_summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    final = folder / "checkpoints" / "final.pt"
    return int(summary.get("iterations", -1)) == int(max_iters) and final.is_file()


def is_evaluated(folder: Path) -> bool:
    results, final = folder / "results.json", folder / "checkpoints" / "final.pt"
    return results.is_file() and final.is_file() and results.stat().st_mtime >= final.stat().st_mtime


def logged_seconds_per_iter(folder: Path) -> float | None:
    """Median of the logged ``seconds_per_iter`` of a run (None without records)."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    from dada.evaluation.figures import read_metrics

    values = [float(r["seconds_per_iter"]) for r in read_metrics(path)
              if r.get("kind") == "train" and isinstance(r.get("seconds_per_iter"), (int, float))]
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------------------- measuring
def measure(cfg, steps: int) -> dict:
    """Seconds per training iteration of ``cfg``'s method (median of ``steps`` timed steps after one
    warm-up step) and seconds per evaluated validation image (median over 4 images)."""
    import tempfile

    import torch

    from dada.engine import Trainer
    from dada.engine.data import build_part, infinite_loader
    from dada.evaluation import evaluate_segmenter

    started = time.perf_counter()
    trainer = Trainer(cfg)
    datasets = {"source": build_part(cfg, "source")}
    if trainer.method.needs_target:
        datasets["target"] = build_part(cfg, "target")
    with tempfile.TemporaryDirectory() as scratch:
        trainer.method.prepare(datasets, Path(scratch))
    setup = time.perf_counter() - started
    sources = infinite_loader(datasets["source"], cfg, "source", 0, trainer.device)
    targets = infinite_loader(datasets["target"], cfg, "target", 0, trainer.device) \
        if trainer.method.needs_target else iter(dict, None)
    times = []
    for step in range(steps + 1):
        source, target = next(sources), next(targets)
        started = time.perf_counter()
        trainer.train_step(source, target)
        if step:
            times.append(time.perf_counter() - started)
    val = build_part(cfg, "val")
    count = min(4, len(val))
    with torch.no_grad():
        evaluate_segmenter(trainer.model, val, num_classes=cfg.model.num_classes, device=trainer.device,
                           max_images=1, depth_bins=None, progress=False)  # warm-up
        started = time.perf_counter()
        evaluate_segmenter(trainer.model, val, num_classes=cfg.model.num_classes, device=trainer.device,
                           max_images=count, depth_bins=None, progress=False)
    return {"seconds_per_iter": statistics.median(times), "measured_steps": steps, "setup_seconds": setup,
            "seconds_per_val_image": (time.perf_counter() - started) / max(count, 1), "val_images": len(val),
            "eval_images": _eval_images(cfg, len(val))}


def _eval_images(cfg, val_images: int) -> int:
    """Images one evaluation reads: the target val set, plus the source val set (depth quality) for a
    model with a depth head."""
    from dada.config import to_dict
    from dada.evaluation.pipeline import build_eval_dataset, source_val_settings

    settings = source_val_settings({"config": to_dict(cfg)}) if cfg.model.depth_head else None
    if settings is None:
        return val_images
    return val_images + len(build_eval_dataset(settings, cfg.model.num_classes, depth=True, part="source"))


def plan(jobs: list[Job], out: Path, common: list[str], steps: int, skipped: dict) -> dict:
    """Per set-up: its seconds/iteration (logged by a run there, cached, or measured now) and the time
    its remaining runs take. Measurements are cached in ``<out>/timing.json``. A set-up that cannot
    train here (a DadaError while measuring) is removed from ``jobs`` and its reason put in ``skipped``."""
    from dada.config import to_dict
    from dada.errors import DadaError
    from dada.evaluation.reports import config_hash

    cache_path = out / "timing.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows = []
    measured_fixed = fixed_costs(out)
    for job in jobs:
        cfg = config_of(job, job.seeds[0], common, out)
        key = config_hash(to_dict(cfg), without_seed=True)
        logged = [s for s in (logged_seconds_per_iter(run_dir(out, job, seed)) for seed in job.seeds)
                  if s is not None]
        if key in cache:
            timing, source = cache[key], "measured earlier"
        else:
            say(f"measuring {job.setup.label} ({job.preset}): {steps} training steps")
            try:
                timing, source = measure(cfg, steps), "measured now"
            except DadaError as error:  # e.g. an optional package the method needs is not installed
                skipped[job.setup.key] = f"{job.preset} cannot train here: {error}"
                say(f"skipping {job.setup.label}: {error}")
                continue
            cache[key] = timing
            out.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache, indent=1))
        per_iter = statistics.median(logged) if logged else timing["seconds_per_iter"]
        source = "logged by its runs" if logged else source
        iters = int(cfg.train.max_iters)
        # per run: the iterations, plus its fixed costs as measured on finished runs of this study, or
        # before any: building the model and data twice (training, evaluation) and the evaluation's images
        eval_cost = timing["eval_images"] * timing["seconds_per_val_image"] + timing["setup_seconds"]
        fixed = measured_fixed if measured_fixed is not None else timing["setup_seconds"] + eval_cost
        remaining = 0.0
        for seed in job.seeds:
            folder = run_dir(out, job, seed)
            if not is_trained(folder, iters):
                done = _checkpoint_iteration(folder)
                remaining += (iters - done) * per_iter + fixed
            elif not is_evaluated(folder):
                remaining += eval_cost
        rows.append({"key": job.setup.key, "label": job.setup.label, "preset": job.preset,
                     "overrides": job.overrides, "note": job.note, "seeds": job.seeds, "iterations": iters,
                     "seconds_per_iter": per_iter, "timing_source": source,
                     "seconds_per_val_image": timing["seconds_per_val_image"], "remaining_s": remaining})
    jobs[:] = [job for job in jobs if job.setup.key not in skipped]
    return {"rows": rows, "total_remaining_s": sum(r["remaining_s"] for r in rows),
            "fixed_seconds_per_run": measured_fixed}


def _checkpoint_iteration(folder: Path) -> int:
    from dada.engine.checkpoint import iteration_checkpoints

    found = iteration_checkpoints(folder / "checkpoints")
    return found[-1][0] if found else 0


def print_plan(the_plan: dict, skipped: dict, jobs_in_parallel: int, threads: int) -> None:
    print()
    print(f"{'set-up':26s} {'preset':26s} {'seeds':>5s} {'iters':>6s} {'s/iter':>7s} {'left (min)':>10s}  "
          "s/iter from")
    for row in the_plan["rows"]:
        print(f"{row['label'][:26]:26s} {row['preset'][:26]:26s} {len(row['seeds']):5d} "
              f"{row['iterations']:6d} "
              f"{row['seconds_per_iter']:7.3f} {row['remaining_s'] / 60:10.1f}  {row['timing_source']}")
        if row["note"]:
            print(f"{'':28s}note: {row['note']}")
    for key, reason in skipped.items():
        print(f"{key:26s} skipped: {reason}")
    fixed = the_plan["fixed_seconds_per_run"]
    print("\nFixed cost per run (set-up, checkpoints, logs, evaluation): "
          + (f"{fixed:.1f} s, measured on this study's finished runs" if fixed is not None
             else "estimated from the measurement (no finished run yet)"))
    total = the_plan["total_remaining_s"]
    wall = total / max(1, jobs_in_parallel)
    print(f"\nEstimated time left: {total / 60:.1f} min of training and evaluation"
          + (f", about {wall / 60:.1f} min of wall time with {jobs_in_parallel} parallel jobs"
             if jobs_in_parallel > 1 else "")
          + f" ({threads} thread(s) per job; s/iter measured with the same threads; the report's figures "
            "are extra).\n", flush=True)


# -------------------------------------------------------------------------------------------- training
def train_and_evaluate(job: Job, seed: int, common: list[str], out: Path, device: str,
                       threads: int | None = None) -> str:
    """Train (or resume, or reuse) one run and evaluate it alone; returns its folder."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from dada.engine import Trainer
    from dada.evaluation import evaluate_run

    cfg = config_of(job, seed, common, out)
    folder = run_dir(out, job, seed)
    times_path = folder / "ablation_time.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    if not is_trained(folder, cfg.train.max_iters):
        say(f"training {job.setup.label} seed {seed}: {cfg.train.max_iters} iterations -> {folder}")
        started, first = time.perf_counter(), _checkpoint_iteration(folder)
        Trainer(cfg).fit(folder)
        times.update(train_s=time.perf_counter() - started, iterations_run=cfg.train.max_iters - first)
    if not is_evaluated(folder):
        say(f"evaluating {job.setup.label} seed {seed}")
        started = time.perf_counter()
        evaluate_run(folder, overwrite=True, device=device, progress=False, figures=0, label=job.setup.label)
        times["eval_s"] = time.perf_counter() - started
    times_path.write_text(json.dumps(times))
    return str(folder)


def fixed_costs(out: Path) -> float | None:
    """Measured seconds a run costs besides its iterations (model and data set-up, checkpoints, logs,
    the evaluation): the median over the runs of this study that recorded them (None before any)."""
    costs = []
    for path in out.glob("runs/*/seed*/ablation_time.json"):
        times = json.loads(path.read_text())
        per_iter = logged_seconds_per_iter(path.parent)
        if {"train_s", "iterations_run", "eval_s"} <= set(times) and per_iter is not None:
            costs.append(times["train_s"] - times["iterations_run"] * per_iter + times["eval_s"])
    return statistics.median(costs) if costs else None


def finished_only(jobs: list[Job], out: Path, common: list[str], skipped: dict) -> list[Job]:
    """``--report-only``: each job keeps the seeds whose run is trained and evaluated; a job without any is
    dropped and recorded in ``skipped``."""
    kept = []
    for job in jobs:
        done = [s for s in job.seeds if is_evaluated(run_dir(out, job, s))
                and is_trained(run_dir(out, job, s), config_of(job, s, common, out).train.max_iters)]
        if done:
            job.seeds = done
            kept.append(job)
        else:
            skipped[job.setup.key] = f"no finished run in {out} yet"
    return kept


def _pool_job(args) -> str:
    return train_and_evaluate(*args)


def run_all(jobs: list[Job], common: list[str], out: Path, device: str, parallel: int, threads: int) -> None:
    tasks = [(job, seed) for seed_index in range(max(len(j.seeds) for j in jobs)) for job in jobs
             if seed_index < len(job.seeds) for seed in [job.seeds[seed_index]]]
    if parallel <= 1:
        for count, (job, seed) in enumerate(tasks, 1):
            say(f"[{count}/{len(tasks)}] {job.setup.key} seed {seed}")
            train_and_evaluate(job, seed, common, out, device)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(parallel, mp_context=context) as pool:
        futures = [pool.submit(_pool_job, (job, seed, common, out, device, threads)) for job, seed in tasks]
        for count, future in enumerate(futures, 1):
            say(f"[{count}/{len(tasks)}] done: {future.result()}")


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

    health: dict[str, dict[str, list[float]]] = {}
    for job in jobs:
        values: dict[str, list[float]] = {}
        for results in groups[job.setup.key][0]:
            one = {k: v for k, v in training_health(run_dir(out, job, results["model"]["seed"])).items()
                   if k.startswith(("d_", "adv_"))}
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
    from dada.evaluation.stats import mean_std

    lines = ["| Set-up | depth AbsRel (source val) | δ<1.25 (%) | last-half losses (chance: ln 2 = 0.693) |",
             "|---|---|---|---|"]
    for key, values in health.items():
        absrel = _num_pm(values["depth_abs_rel"]) if "depth_abs_rel" in values else "-"
        delta = _pm(*mean_std(values["depth_delta1"])) if "depth_delta1" in values else "-"
        losses = "; ".join(f"`{name}` {_num_pm(v)}" for name, v in sorted(values.items())
                           if name.startswith(("d_", "adv_"))) or "-"
        lines.append(f"| {rows[key]['label']} | {absrel} | {delta} | {losses} |")
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
    figures = {}
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
                                   label="S7 (DADA)", baseline=run_dir(out, by_key["S1"], seed),
                                   counterpart=run_dir(out, by_key["S2"], seed))
        grid = Path(qualitative["out_dir"]) / qualitative["figures"]["qualitative grid"]
        if SETTING_REPORTS.get(args.setting, {}).get("frames_in_git", True):
            shutil.copyfile(grid, assets / "qualitative.png")
            grid = assets / "qualitative.png"
        figures["qualitative: image, ground truth, S1, S2 (AdvEnt), S7 (DADA)"] = grid

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
    lines += ["## Table 1 layout: per-class IoU (%)", ""]
    lines += paper_table([{**rows[k], "label": f"{dagger(k, rows[k]['label'])} (n={len(rows[k]['runs'])})"}
                          for k in table1], class_names, num_classes)
    lines += unverified_footnote(table1)
    paper1 = [f"{rows[k]['label']} {v[0] if v[0] is not None else '-'} / {v[1]}"
              for k, v in PAPER_TABLE1.items() if k in rows]
    lines += ["", "Paper (Synthia→Cityscapes, mIoU / mIoU*): " + "; ".join(paper1) + ".", ""]

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

    order = [k for k in ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "minent", "adaptsegnet", "clan",
                         "adaptpatch", "spigan_nopi", "spigan", "dacs", "dast_class", "dast", "oracle") if k in rows]
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
                  "`depth_quality`), and each discriminator (`d_*`) and fooling (`adv_*`) loss averaged over "
                  "the last half of training (`metrics.jsonl`); mean ± std over seeds.", ""]
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


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="benchmark", help="the recipe: presets <setting>_<method> "
                        "(default benchmark, the demo's)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3; 1 with --quick)")
    parser.add_argument("--sets", default="core,table1,table4",
                        help="comma list of core, table1, table4, selftraining (DACS and the dast ladder)")
    parser.add_argument("--only", default=None, help="comma list of set-up keys (S1..S7, minent, "
                        "adaptsegnet, oracle, clan, adaptpatch, spigan, spigan_nopi, S7_frac10, ...)")
    parser.add_argument("--fractions", default=",".join(str(f) for f in DEFAULT_FRACTIONS),
                        help="Table 4's source fractions besides 1.0 (S7)")
    parser.add_argument("--iters", type=int, default=None, help="train.max_iters (default the setting's; "
                        f"{QUICK_ITERS} with --quick)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override applied to every run (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smoke test: the demo's small benchmark, "
                        f"{QUICK_ITERS} iterations, 1 seed; report in <out>/results-benchmark.md")
    parser.add_argument("--out", default=None, help="runs folder (default runs/ablation; runs/ablation-quick "
                        "with --quick)")
    parser.add_argument("--doc", default=None, help="the markdown report (default docs/results-benchmark.md; "
                        "<out>/results-benchmark.md with --quick)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel single-thread training jobs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default "
                        "$OMP_NUM_THREADS, else the CPU count divided by --jobs)")
    parser.add_argument("--measure-steps", type=int, default=3, help="timed steps per set-up for the plan")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and its estimate, then stop")
    parser.add_argument("--report-only", action="store_true", help="train nothing: write the report from the "
                        "runs already trained and evaluated (each row over the seeds it has)")
    parser.add_argument("--reading", type=Path, default=None, help="a markdown file with the human reading "
                        "of the results, put under the report's '## Reading' heading")
    parser.add_argument("--title", default=None, help="the report's heading (default the setting's: "
                        f"{BENCHMARK_TITLE!r} for the built-in benchmark)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        args.threads = int(env) if env.isdigit() and int(env) > 0 \
            else max(1, (os.cpu_count() or 1) // args.jobs)
    if args.jobs > 1:
        args.threads = 1  # N parallel single-thread jobs
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from dada.demo import PROFILES, _prepare_benchmark
    from dada.errors import DadaError

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    out = Path(args.out or ("runs/ablation-quick" if args.quick else "runs/ablation"))
    report = SETTING_REPORTS.get(args.setting, {})
    args.title = args.title or report.get("title", BENCHMARK_TITLE)
    doc = Path(args.doc) if args.doc else (out / "results-benchmark.md" if args.quick
                                             else REPO / "docs" / report.get("doc", "results-benchmark.md"))
    iters = args.iters if args.iters is not None else (QUICK_ITERS if args.quick else None)
    recipe = [*(PROFILES["quick"] if args.quick else [])]
    if iters is not None and f"train.max_iters={iters}" not in recipe:
        recipe += [f"train.max_iters={iters}", f"train.checkpoint_every={max(1, iters // 2)}",
                   f"train.image_every={max(1, iters // 2)}"]
    recipe += list(args.override)
    common = [f"train.device={args.device}", f"output.root={out}", "train.progress=false", *recipe]
    args.recipe = recipe

    sets = {s.strip() for s in args.sets.split(",") if s.strip()}
    unknown = sets - {"core", "table1", "table4", "selftraining"}
    if unknown:
        raise SystemExit(f"--sets: unknown {sorted(unknown)}; choose among core, table1, table4, selftraining")
    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    candidates = [s for s in (*CORE, *TABLE1, *SELFTRAINING, *fraction_setups(fractions)) if s.group in sets]
    if args.only:
        wanted = [k.strip() for k in args.only.split(",") if k.strip()]
        missing = [k for k in wanted if k not in {s.key for s in candidates}]
        if missing:
            raise SystemExit(f"--only: unknown set-up(s) {missing}; known: {[s.key for s in candidates]}")
        candidates = [s for s in candidates if s.key in wanted]
    jobs, skipped = [], {}
    for setup in candidates:
        try:
            job = resolve(setup, args.setting, common)
        except LookupError as reason:
            skipped[setup.key] = str(reason)
            say(f"skipping {setup.label}: {reason}")
            continue
        job.seeds = seeds
        jobs.append(job)
    if not jobs:
        raise SystemExit("nothing to run: every set-up was skipped")
    try:
        from dada.config import load_config

        if args.reading is not None and not args.reading.is_file():
            raise DadaError(f"--reading {args.reading}: no such file")
        if args.report_only:
            jobs, the_plan = finished_only(jobs, out, common, skipped), {"report_only": True}
        else:
            _prepare_benchmark(load_config(jobs[0].preset, common))
            the_plan = plan(jobs, out, common, args.measure_steps, skipped)
        if not jobs:
            raise DadaError("nothing to run: every set-up was skipped" if not args.report_only else
                            f"nothing to report: no set-up has a trained and evaluated run in {out}")
        if args.report_only:
            say("report of the finished runs: " + ", ".join(f"{j.setup.key} (seeds {j.seeds})" for j in jobs))
        else:
            print_plan(the_plan, skipped, args.jobs, args.threads)
        if args.plan_only:
            return 0
        if not args.report_only:
            run_all(jobs, common, out, args.device, args.jobs, args.threads)
        summary = write_report(doc, out, jobs, skipped, the_plan, args, common, started)
    except DadaError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    say(f"done in {(time.perf_counter() - started) / 60:.1f} min: {doc} and {out / 'ablation.json'}")
    for line in summary["comparisons"]["beats"]:
        print(f"  beats: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
