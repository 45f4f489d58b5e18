"""``dada demo``: the whole method on the built-in benchmark, in minutes on a laptop CPU.

1. generate (or reuse) the built-in benchmark (``dada.benchmark``);
2. train S1 (source only), S2 (AdvEnt) and S7 (DADA) with the presets ``<setting>_s1|s2|s7`` (default
   setting ``benchmark_v2_7``: the benchmark's version 2 and the paper's 7-class protocol; ``--setting
   benchmark_lite0`` is the version-1 demo of earlier results), and any ``--also`` method's preset: same
   seed, same schedule, same data order;
3. evaluate each on the target validation images; S2 and S7 against S1 (negative transfer rate), S7
   against S2 (D-Gain);
4. print one table (mIoU, per-class IoU, negative transfer, D-Gain), a training-health table (the
   discriminators' losses over the last half of training against chance, ln 2, and the depth branch's
   AbsRel on the source validation images) and the paths of the figures.

Everything lands in one output folder; rerunning the same command reuses finished runs and resumes
unfinished ones (``--overwrite`` starts afresh).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from dada.errors import DadaError
from dada.evaluation.figures import STAT_PANELS
from dada.evaluation.stats import mean_std, pm

#: The demo's setting: the benchmark's version 2 with the paper's 7-class headline (issue 26; the recipe
#: and why each value in configs/settings.yaml, `benchmark_v2`). ``benchmark_lite0`` is version 1's demo.
DEFAULT_SETTING = "benchmark_v2_7"

#: The demo's three set-ups of the paper's Table 3: (label, method suffix of the preset).
CORE_SETUPS = (("S1", "s1"), ("S2", "s2"), ("S7", "s7"))


def demo_setups(setting: str = DEFAULT_SETTING, also: Sequence[str] = ()) -> tuple[tuple[str, str], ...]:
    """(label, preset) of the demo's runs: S1, S2 and S7 of ``setting``, then each ``also`` method
    (``<setting>_<method>``, labelled by the method, e.g. ``dacs``), evaluated against S1."""
    from dada.config import list_presets, settings

    known = set(list_presets())
    setups = [(label, f"{setting}_{suffix}") for label, suffix in CORE_SETUPS]
    for method in also:
        method = method.strip()
        if not method or method in {"s1", "s2", "s7", "source_only", "advent", "dada"} \
                or f"{setting}_{method}" in {p for _, p in setups}:
            raise DadaError(f"--also {method!r}: name a method beside S1, S2 and S7 (e.g. dacs), once")
        setups.append((method, f"{setting}_{method}"))
    missing = [preset for _, preset in setups if preset not in known]
    if missing:
        raise DadaError(f"demo: no preset {', '.join(missing)}; --setting takes one of "
                        f"{', '.join(settings())} and --also "
                        f"a method with a <setting>_<method> preset (dada train --list)")
    return tuple(setups)

#: ``quick`` is a smoke test (about 2 minutes): a smaller benchmark, a short schedule. Its numbers say
#: nothing about the method; the full demo's do.
PROFILES = {
    "full": [],
    "quick": ["data.benchmark.num_source=48", "data.benchmark.num_target_train=48",
              "data.benchmark.num_target_val=12", "data.benchmark.size=[64,128]",
              "train.max_iters=20", "train.checkpoint_every=10", "train.image_every=10"],
}


def _say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _prepare_benchmark(cfg) -> None:
    """Generate (or find) the benchmark of ``cfg.data.benchmark`` with a progress bar, so the first
    training does not sit silently while it is made."""
    from dada.benchmark import ensure_benchmark
    from dada.config import to_dict
    from dada.io import progress_bar

    params = {k: v for k, v in to_dict(cfg.data.benchmark).items() if v is not None}
    _say("generating (or reusing) the built-in benchmark")
    with progress_bar(unit="img", desc="benchmark", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        folder = ensure_benchmark(progress=progress, **params)
    _say(f"benchmark: {folder} (preview: {folder / 'preview.png'})")


def training_health(run_dir: Path) -> dict[str, float | None]:
    """What says whether a run adapted at all: the mean of each discriminator and fooling loss over the
    last half of its iterations (``metrics.jsonl``; chance is ln 2 = 0.693), the same mean of the
    self-training statistics of :data:`STAT_PANELS` it logged (the pseudo-label weight: a teacher that is
    never confident gives the mixed loss no weight) and the depth AbsRel on the source validation images
    (``results.json``; None without a depth head)."""
    from dada.evaluation.figures import read_metrics

    metrics = Path(run_dir) / "metrics.jsonl"
    records = [r for r in read_metrics(metrics) if r.get("kind") == "train"] if metrics.is_file() else []
    health: dict[str, float | None] = {}
    if records:
        half = records[-1]["iteration"] / 2
        late = [r["loss"] for r in records if r["iteration"] >= half]
        for name in sorted({k for loss in late for k in loss if k.startswith(("d_", "adv_"))}):
            health[name] = statistics.fmean(loss[name] for loss in late if name in loss)
        stats = [r.get("stats") or {} for r in records if r["iteration"] >= half]
        for name in STAT_PANELS:
            values = [s[name] for s in stats
                      if isinstance(s.get(name), (int, float)) and math.isfinite(s[name])]
            if values:
                health[name] = statistics.fmean(values)
    results = Path(run_dir) / "results.json"
    quality = None
    if results.is_file():
        quality = json.loads(results.read_text(encoding="utf-8")).get("depth_quality")
    health["depth_abs_rel"] = quality.get("abs_rel") if quality else None
    return health


def health_table(runs: dict[str, list[Path]]) -> str:
    """Markdown: per set-up, the last-half discriminator losses and the source depth AbsRel, mean ± std
    over seeds."""
    def cell(values: list[float]) -> str:
        values = [v for v in values if v is not None and math.isfinite(v)]
        if not values:
            return "-"
        return pm(*mean_std(values))

    rows = []
    for label, run_dirs in runs.items():
        healths = [training_health(run) for run in run_dirs]
        for name in sorted({k for h in healths for k in h if k != "depth_abs_rel"}):
            shown = f"{name} (last half)" if name in STAT_PANELS else name
            rows.append(f"| {label} | {shown} | {cell([h.get(name) for h in healths])} |")
        rows.append(f"| {label} | depth AbsRel (source val) | "
                    f"{cell([h.get('depth_abs_rel') for h in healths])} |")
    return "\n".join(["", "Training health: adversarial losses over the last half of training (chance: "
                       f"ln 2 = {math.log(2):.3f}), self-training's pseudo-label weight over the same half "
                       "and the depth branch on the source validation images",
                       "", "| set-up | quantity | value |", "|---|---|---|", *rows, ""])


def _train_one(preset: str, overrides: list[str], folder: str, threads: int) -> str:
    """One training in a worker process of ``run_demo(jobs>1)`` (module level, so that it pickles)."""
    torch.set_num_threads(threads)
    from dada.config import load_config
    from dada.engine import Trainer

    return str(Trainer(load_config(preset, overrides)).fit(Path(folder)))


def default_jobs(device: str = "auto") -> int:
    """Parallel trainings for ``run_demo``: one single-thread process per core, at most 3 (S1, S2, S7 of
    one seed); 1 on a GPU, where runs share one device."""
    from dada.devices import resolve_device

    if resolve_device(device, "device").type != "cpu":
        return 1
    return max(1, min(3, os.cpu_count() or 1))


def _train_all(tasks: list[tuple[str, str, list[str], Path]], jobs: int, threads: int | None) -> None:
    """Train ``tasks`` ((label, preset, overrides, folder)) in ``jobs`` processes, longest first (S7, S2,
    then any --also method, then S1: the order that finishes soonest on 2 cores); a failure stops the demo
    with its error."""
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    cost = {"S7": 0, "S2": 1, "S1": 3}  # an --also method: 2, between S2 and S1
    ordered = sorted(tasks, key=lambda t: cost.get(t[0], 2))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {pool.submit(_train_one, preset, [*overrides, "train.progress=false"], str(folder),
                               threads): label for label, preset, overrides, folder in ordered}
        _say(f"training {len(tasks)} runs in {jobs} parallel processes of {threads} thread(s) each "
             f"(progress: each run's metrics.jsonl; --jobs 1 trains one at a time with a progress bar)")
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise future.exception()
        for future, label in futures.items():  # all finished: report in the order they were given
            _say(f"finished {label}: {future.result()}")


def run_demo(out_dir: str | os.PathLike = "runs/demo", *, quick: bool = False, seeds: int | Sequence[int] = 1,
             overwrite: bool = False, device: str = "auto", threads: int | None = None,
             extra_overrides: Sequence[str] = (), jobs: int | None = None, setting: str = DEFAULT_SETTING,
             also: Sequence[str] = ()) -> dict:
    """Run the demo into ``out_dir`` and return the comparison (``{"groups", "markdown", "files"}``).

    ``seeds``: a count (seeds 0..n-1) or explicit seeds; with several, the table shows mean ± std.
    ``extra_overrides`` are applied to every run (e.g. ``train.max_iters=500``).
    ``setting``: the presets ``<setting>_s1|s2|s7`` (default version 2's 7-class ``benchmark_v2_7``);
    ``also``: more methods of that setting (e.g. ``("dacs",)``), each evaluated against S1.
    ``jobs``: trainings run in parallel, each in its own process with ``threads`` threads (default
    cores/jobs); default ``default_jobs``: one single-thread process per core on a CPU, at most 3; 1 on a
    GPU. A run's result does not depend on ``jobs``, only on the thread count it trains with.
    """
    from dada.config import load_config, split_preset

    profile = PROFILES["quick" if quick else "full"]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise DadaError("--seeds must be at least 1")
    if jobs is not None and jobs < 1:
        raise DadaError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise DadaError(f"threads must be at least 1, got {threads}")
    for item in extra_overrides:
        if str(item).split("=", 1)[0].strip() in ("seed", "output.root", "output.name"):
            raise DadaError(f"override {item!r}: the demo sets this itself (seeds with --seeds, the folder "
                            f"with --out)")
    setups = demo_setups(setting, also)
    out = Path(out_dir)
    common = [*profile, f"train.device={device}", f"output.root={out}", *extra_overrides]
    # every setting is checked before anything is deleted or written: a typo never costs a previous demo
    configs = {}
    for seed in seed_list:
        for label, preset in setups:
            name = f"seed{seed}/{label}_{split_preset(preset)[1]}"
            overrides = [*common, f"seed={seed}", f"output.name={name}"]
            configs[(seed, label)] = (preset, name, overrides, load_config(preset, overrides))
    default_jobs(device)  # a bad --device fails here too
    from dada.io import check_replaceable

    check_replaceable(out, "--out")
    if out.exists() and not out.is_dir():
        raise DadaError(f"{out} exists and is not a folder: choose another --out")
    if not overwrite and out.exists() and not (out / "demo.txt").is_file() and any(out.iterdir()):
        raise DadaError(f"{out} exists and is not a demo folder: choose another --out, or pass "
                        f"--overwrite to replace it")
    aside = None
    if overwrite and out.exists():
        # the previous folder is moved aside, not deleted, until this demo has finished: a failure puts it
        # back, a kill leaves it under its new name (printed)
        aside = out.parent / f".{out.name}.replaced-{os.getpid()}"
        os.replace(out, aside)
        _say(f"--overwrite: the previous {out} is kept as {aside} until this demo finishes")
    try:
        comparison = _run_demo(out, setups, configs, seed_list, device, threads, jobs)
    except BaseException:
        if aside is not None:
            shutil.rmtree(out, ignore_errors=True)
            os.replace(aside, out)
            _say(f"the demo failed: the previous {out} is back in place")
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return comparison


def _run_demo(out: Path, setups: tuple[tuple[str, str], ...], configs: dict, seed_list: list[int],
              device: str, threads: int | None, jobs: int | None) -> dict:
    """The demo's work once every setting has been checked (see :func:`run_demo`)."""
    from dada.engine import Trainer
    from dada.evaluation import compare_runs, evaluate_run

    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.txt").write_text("dada demo output folder; safe to delete\n")
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()

    _prepare_benchmark(configs[(seed_list[0], setups[0][0])][3])
    runs: dict[str, list[Path]] = {label: [] for label, _ in setups}
    total = len(setups) * len(seed_list)
    jobs = min(jobs or default_jobs(device), total)
    tasks = []
    for seed in seed_list:
        for label, _ in setups:
            preset, name, overrides, cfg = configs[(seed, label)]
            _say(f"training {label} ({cfg.method.name}), seed {seed} [{len(tasks) + 1}/{total}]: "
                 f"{cfg.train.max_iters} iterations of {cfg.model.arch} -> {out / name}")
            if jobs == 1:
                Trainer(cfg).fit(out / name)
            tasks.append((label, preset, overrides, out / name))
            runs[label].append(out / name)
    if jobs > 1:
        _train_all(tasks, jobs, threads)

    # S2 and S7 are evaluated against S1 (negative transfer), S7 also against S2 (D-Gain), so that S7's
    # folder holds the paper's Figure 3-4 grid (image, ground truth, S1, S2, S7)
    for seed_index in range(len(seed_list)):
        s1, s2, s7 = (runs[label][seed_index] for label, _ in CORE_SETUPS)
        base = {"baseline": s1, "baseline_label": "S1 (source only)"}
        extra = [(label, runs[label][seed_index], base) for label, _ in setups[len(CORE_SETUPS):]]
        s7_refs = {**base, "counterpart": s2, "counterpart_label": "S2 (AdvEnt)"}
        for label, run, references in (("S1", s1, {}), ("S2", s2, base), ("S7", s7, s7_refs), *extra):
            _say(f"evaluating {label} on the target validation images: {run}")
            evaluate_run(run, overwrite=True, device=device, **references)

    title = "dada demo: S1 source only, S2 AdvEnt, S7 DADA" + "".join(f", {m}" for m, _ in setups[3:])
    comparison = compare_runs([p for label, _ in setups for p in runs[label]], out / "comparison",
                              overwrite=True, title=f"{title} ({setups[0][1].rsplit('_', 1)[0]})",
                              baseline=runs["S1"], counterpart=runs["S2"])
    minutes = (time.perf_counter() - started) / 60
    print()
    print(comparison["markdown"])
    print(health_table({label: runs[label] for label, _ in setups}))
    print(f"Demo finished in {minutes:.1f} min ({jobs} parallel training process(es)). Files:")
    for kind, path in comparison["files"].items():
        print(f"  {kind:6s} {path}")
    for label, _ in setups:
        for run in runs[label]:
            print(f"  {label:6s} {run}/results.md (figures beside it)")
    return comparison
