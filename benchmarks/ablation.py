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
- ``--doc`` (default the setting's: ``docs/results-benchmark.md`` for version 2's ``benchmark_v2_7``,
  ``docs/results-benchmark-v1.md`` for ``benchmark_lite0``, ``docs/results-camvid.md`` for
  ``benchmark2camvid``, else ``docs/results-<setting>.md``; ``<out>/results-benchmark.md`` with
  ``--quick``) in
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
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when loaded by path
from ablation_report import write_report  # noqa: E402
from ablation_setups import (  # noqa: E402
    BENCHMARK_TITLE,
    CORE,
    DEFAULT_FRACTIONS,
    QUICK_ITERS,
    REPO,
    SELFTRAINING,
    SETTING_REPORTS,
    TABLE1,
    Job,
    config_of,
    fraction_setups,
    is_evaluated,
    is_trained,
    logged_seconds_per_iter,
    resolve,
    run_dir,
    say,
)


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
    parser.add_argument("--doc", default=None, help="the markdown report (default the setting's, e.g. "
                        "docs/results-benchmark.md for benchmark_v2_7; "
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
    default_doc = report.get("doc", f"results-{args.setting}.md")
    doc = Path(args.doc) if args.doc else (out / "results-benchmark.md" if args.quick
                                             else REPO / "docs" / default_doc)
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
        raise SystemExit(f"--sets: unknown {sorted(unknown)}; "
                         f"choose among core, table1, table4, selftraining")
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
