"""Fault campaign: kill, corrupt, fill and race ``dada train`` runs, and fuzz the readers; a table and JSON.

Scenarios (each on a tiny built-in benchmark, ``model.arch=tiny``):

* ``sigkill``: ``dada train`` SIGKILLed at ``--kills`` moments (default 24), in turn: during a training
  step (a random delay after a random iteration's log record), the moment a checkpoint write starts (its
  temporary file appears), during an evaluation, and during the final selection (``final.pt``'s
  temporary file); ``random`` (a uniformly random time) is available with ``--strategies``. Each run is
  then resumed by rerunning the same command and its ``final.pt`` compared bit for bit (every tensor and
  value but the config's run name and the log's timings) and its logged losses with an uninterrupted
  run. The moment is classified from the run folder as the kill left it.
* ``step-kills``: ``--step-kills`` (default 20) SIGKILLs inside training steps (a random fraction of one
  step after a random iteration's log record, away from checkpoint writes), DADA and DACS (with its EMA
  teacher) in turn; each resumed run bit-identical to an uninterrupted run of its preset.
* ``sigterm``: SIGTERM mid-run: exit 143, a checkpoint at the current iteration, "stopped by SIGTERM",
  bit-identical after resuming.
* ``truncated`` / ``bitflip`` / ``empty``: the newest ``iter_*.pt`` of a killed run damaged; the resume
  falls back to the one before (saying so) and ends bit-identical.
* ``disk-full``: output on a small tmpfs filled mid-run (root only; otherwise skipped with a message):
  exit 2 with one "no space left" message, no traceback, every checkpoint on disk loads; after freeing
  space the rerun ends bit-identical.
* ``concurrent``: two ``dada train`` on one run folder started together (seeds 7 and 8): one refuses
  naming the holder, the other finishes, and ``config.yaml`` and ``final.pt`` agree on the seed.
* ``fuzz``: ``--fuzz`` byte mutations (default 10,000) of real PNG/JPEG/list files through the readers
  (``tests/reader_fuzz.py``): only DadaError or a well-formed item.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/faults.py [--kills 24] [--fuzz 10000] [--only sigkill,fuzz]

Writes ``benchmarks/results/faults.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "faults.json"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

MAX_ITERS = 8
EVAL_EVERY = 4


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def train_command(bench: Path, root: Path, name: str, *extra: str,
                  preset: str = "benchmark_dada") -> list[str]:
    ndf = ["method.ndf=8"] if preset.endswith(("dada", "advent")) else []
    return [sys.executable, "-m", "dada.cli", "train", preset,
            f"data.source.root={bench}/source", f"data.target.root={bench}/target",
            f"data.val.root={bench}/target", f"train.max_iters={MAX_ITERS}", "train.checkpoint_every=2",
            "train.keep_last=3", "train.log_every=1", "train.image_every=0", "train.progress=false",
            "train.deterministic=true", "data.num_workers=0", "model.arch=tiny", *ndf,
            f"eval.every={EVAL_EVERY}", "eval.max_images=4", f"output.root={root}", f"output.name={name}",
            "seed=7", *extra]


def run(command, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env(), capture_output=True, text=True, **kw)


def fingerprint(run_dir: Path) -> tuple[str, list]:
    """The digest of ``final.pt`` without the run name and timings, and the logged losses."""
    from dada.engine import checkpoint as ckpt

    final = ckpt.load_checkpoint(run_dir / "checkpoints" / "final.pt")
    body = {k: v for k, v in final.items() if k not in ("config", "log")}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["iteration"], r["loss"]) for r in records if r.get("kind") == "train"]
    evals = [(r["iteration"], r["miou"]) for r in records if r.get("kind") == "eval"]
    return ckpt.content_digest(body), losses + evals


def phase(run_dir: Path) -> str:
    """What the run was doing when it was killed, from what it left."""
    checkpoints = run_dir / "checkpoints"
    temporary = [p.name for p in checkpoints.glob(".*.tmp*")] if checkpoints.is_dir() else []
    if any(name.startswith((".final.", ".best.")) for name in temporary) or (
            (checkpoints / f"iter_{MAX_ITERS:07d}.pt").exists()
            and not (run_dir / "train_summary.json").exists()):
        return "final selection"
    if temporary:
        return "checkpoint write"
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists() or not metrics.read_text().strip():
        return "start-up"
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip().endswith("}")]
    last = records[-1] if records else {}
    if last.get("kind") == "train" and (last["iteration"] + 1) % EVAL_EVERY == 0:
        return "evaluation"
    return "training step"


def kill_when(command, condition, delay: float, deadline: float = 300.0) -> tuple[str, int | None]:
    """Start ``command``; SIGKILL it ``delay`` s after ``condition()`` holds; ('killed'|'finished', rc)."""
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while process.poll() is None and time.monotonic() - start < deadline:
        if condition(time.monotonic() - start):
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
            return "killed", None
        time.sleep(0.0005)
    process.wait()
    return "finished", process.returncode


STRATEGIES = ("training step", "checkpoint write", "evaluation", "final selection", "random")


def scenario_sigkill(bench: Path, work: Path, kills: int, reference: tuple, ref_seconds: float, rng,
                     strategies=STRATEGIES[:4]) -> list:
    rows = []
    for k in range(kills):
        strategy = strategies[k % len(strategies)]
        name = f"kill{k:02d}"
        run_dir = work / name
        command = train_command(bench, work, name)
        checkpoints = run_dir / "checkpoints"
        if strategy == "training step":  # a random iteration's record is written, then a random delay
            target = rng.randrange(MAX_ITERS - 1)

            def condition(t, target=target, metrics=run_dir / "metrics.jsonl"):
                return metrics.exists() and f'"iteration": {target}, "loss"' in metrics.read_text()
            delay = rng.uniform(0.0, 0.4)
        elif strategy == "random":
            at = rng.uniform(0.3, ref_seconds)
            condition = lambda t, at=at: t >= at  # noqa: E731
            delay = 0.0
        elif strategy == "checkpoint write":
            target = rng.choice([2, 4, 6])

            def condition(t, target=target, folder=checkpoints):
                prefix = f".iter_{target:07d}"
                return folder.is_dir() and any(p.name.startswith(prefix) for p in folder.iterdir())
            delay = rng.uniform(0.0, 0.003)
        elif strategy == "evaluation":
            target = rng.choice([EVAL_EVERY - 1, 2 * EVAL_EVERY - 1])

            def condition(t, target=target, metrics=run_dir / "metrics.jsonl"):
                return metrics.exists() and f'"iteration": {target}, "loss"' in metrics.read_text()
            delay = rng.uniform(0.0, 0.05)
        else:
            def condition(t, folder=checkpoints):
                return folder.is_dir() and any(p.name.startswith(".final.") for p in folder.iterdir())
            delay = rng.uniform(0.0, 0.003)
        started = time.monotonic()
        outcome, rc = kill_when(command, condition, delay)
        moment = phase(run_dir) if outcome == "killed" else "(finished before the kill)"
        resumed = run(command)
        ok = resumed.returncode == 0 and fingerprint(run_dir) == reference
        rows.append({"scenario": "sigkill", "strategy": strategy, "moment": moment, "ok": ok,
                     "resume_rc": resumed.returncode, "seconds": round(time.monotonic() - started, 1),
                     "stderr": resumed.stderr[-300:] if not ok else ""})
        print(f"  kill {k:2d} ({strategy}): killed during {moment}; resumed "
              f"{'bit-identical' if ok else 'DIFFERENT: ' + resumed.stderr[-200:]}", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return rows


def scenario_step_kills(bench: Path, work: Path, kills: int, rng, presets=("benchmark_dada", "benchmark_dacs")
                        ) -> list:
    """SIGKILL inside training steps: after iteration i's log record (i drawn at random) and a random
    fraction of one step's measured time, so the kill lands inside step i + 1, away from checkpoint
    writes, evaluations and the final selection; in turn on DADA and on DACS (its EMA teacher, its EMA
    step and mixing streams must come back too). Each resumed run's ``final.pt`` and logged losses are
    compared with an uninterrupted run of the same preset."""
    references, step_seconds = {}, {}
    for preset in presets:
        name = f"reference-{preset}"
        t0 = time.monotonic()
        done = run(train_command(bench, work, name, "eval.every=0", preset=preset))
        if done.returncode != 0:
            raise SystemExit(f"{preset}: the reference run failed: {done.stderr[-500:]}")
        references[preset] = fingerprint(work / name)
        records = [json.loads(x) for x in (work / name / "metrics.jsonl").read_text().splitlines()]
        step_seconds[preset] = sorted(r["seconds_per_iter"] for r in records if r.get("kind") == "train")[
            MAX_ITERS // 2]
        print(f"reference {preset}: {time.monotonic() - t0:.1f} s, {step_seconds[preset]:.3f} s/step",
              flush=True)
    rows = []
    for k in range(kills):
        preset = presets[k % len(presets)]
        name = f"step{k:02d}"
        run_dir = work / name
        command = train_command(bench, work, name, "eval.every=0", preset=preset)
        # the next step writes no checkpoint
        target = rng.choice([i for i in range(MAX_ITERS - 1) if (i + 1) % 2])

        def condition(t, target=target, metrics=run_dir / "metrics.jsonl"):
            return metrics.exists() and f'"iteration": {target}, "loss"' in metrics.read_text()
        delay = rng.uniform(0.05, 0.6) * step_seconds[preset]  # well before the step ends
        started = time.monotonic()
        outcome, _ = kill_when(command, condition, delay)
        moment = phase(run_dir) if outcome == "killed" else "(finished before the kill)"
        resumed = run(command)
        ok = resumed.returncode == 0 and fingerprint(run_dir) == references[preset]
        rows.append({"scenario": "sigkill", "strategy": f"inside a step ({preset})", "moment": moment,
                     "ok": ok,
                     "resume_rc": resumed.returncode, "seconds": round(time.monotonic() - started, 1),
                     "stderr": resumed.stderr[-300:] if not ok else ""})
        print(f"  step kill {k:2d} ({preset}, after iteration {target} + {delay:.3f} s): killed during "
              f"{moment}; resumed {'bit-identical' if ok else 'DIFFERENT: ' + resumed.stderr[-200:]}",
              flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return rows


def _kill_after_checkpoint(bench, work, name, iteration) -> Path:
    run_dir = work / name
    checkpoints = run_dir / "checkpoints"
    kill_when(train_command(bench, work, name),
              lambda t: (checkpoints / f"iter_{iteration:07d}.pt").exists(), 0.0)
    return run_dir


def scenario_damage(bench: Path, work: Path, reference: tuple) -> list:
    from dada.engine import checkpoint as ckpt

    rows = []
    for damage in ("truncated", "bitflip", "empty"):
        run_dir = _kill_after_checkpoint(bench, work, f"damage-{damage}", 6)
        found = ckpt.iteration_checkpoints(run_dir / "checkpoints")
        newest = found[-1][1]
        data = bytearray(newest.read_bytes())
        if damage == "truncated":
            data = data[: len(data) // 2]
        elif damage == "bitflip":
            rng = random.Random(1)
            for position in rng.sample(range(len(data) // 3, len(data) // 3 + 4096), 64):
                data[position] ^= 0xFF
        else:
            data = bytearray()
        newest.write_bytes(bytes(data))
        resumed = run(train_command(bench, work, f"damage-{damage}"))
        said = "instead" in resumed.stderr and newest.name in resumed.stderr
        ok = resumed.returncode == 0 and said and fingerprint(run_dir) == reference
        rows.append({"scenario": damage, "ok": ok, "newest": newest.name, "said_fallback": said,
                     "message": next((x for x in resumed.stderr.splitlines() if "warning" in x), "")})
        verdict = "fell back, bit-identical" if ok else "FAILED " + resumed.stderr[-300:]
        print(f"  {damage} {newest.name}: {verdict}", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return rows


def scenario_sigterm(bench: Path, work: Path, reference: tuple) -> list:
    run_dir = work / "term"
    process = subprocess.Popen(train_command(bench, work, "term"), env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    while process.poll() is None and not (metrics.exists()
                                          and '"iteration": 2, "loss"' in metrics.read_text()):
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate()
    said = "stopped by SIGTERM" in err
    resumed = run(train_command(bench, work, "term"))
    ok = process.returncode == 143 and said and resumed.returncode == 0 and fingerprint(run_dir) == reference
    line = next((x for x in err.splitlines() if "SIGTERM" in x), err[-200:])
    print(f"  SIGTERM: rc {process.returncode}, {line!r}; resumed {'bit-identical' if ok else 'FAILED'}",
          flush=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return [{"scenario": "sigterm", "ok": ok, "rc": process.returncode, "message": line}]


def scenario_disk_full(bench: Path, work: Path, reference: tuple) -> list:
    from dada.engine import checkpoint as ckpt

    if os.geteuid() != 0 or shutil.which("mount") is None:
        print("  disk full: skipped (needs root to mount a small tmpfs)", flush=True)
        return [{"scenario": "disk-full", "ok": None, "skipped": "needs root to mount a small tmpfs"}]
    mount = Path(tempfile.mkdtemp(prefix="dada-tmpfs-"))
    probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        mount.rmdir()
        print(f"  disk full: skipped (cannot mount a tmpfs: {probe.stderr.strip()})", flush=True)
        return [{"scenario": "disk-full", "ok": None, "skipped": f"mount failed: {probe.stderr.strip()}"}]
    try:
        command = train_command(bench, mount, "full")
        filler = mount / "filler"
        # leave room for the config, logs and two checkpoints, then the disk is full
        free = shutil.disk_usage(mount).free
        checkpoint_size = 5_500_000
        with open(filler, "wb") as handle:
            handle.write(b"\0" * max(0, free - int(2.6 * checkpoint_size)))
        full = run(command)
        message = full.stderr.strip().splitlines()[-1] if full.stderr.strip() else ""
        found = ckpt.iteration_checkpoints(mount / "full" / "checkpoints")
        loads = all(ckpt.load_checkpoint(p)["iteration"] == i for i, p in found)
        clear = full.returncode == 2 and "no space left" in message and "Traceback" not in full.stderr
        filler.unlink()
        resumed = run(command)
        ok = (clear and loads and bool(found) and resumed.returncode == 0
              and fingerprint(mount / "full") == reference)
        verdict = "bit-identical" if ok else "FAILED " + resumed.stderr[-200:]
        print(f"  disk full: rc {full.returncode}, {message!r}; checkpoints left {[i for i, _ in found]} "
              f"(all load: {loads}); after freeing space: {verdict}", flush=True)
        return [{"scenario": "disk-full", "ok": ok, "rc": full.returncode, "message": message,
                 "checkpoints_left": [i for i, _ in found], "traceback": "Traceback" in full.stderr}]
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()


def scenario_concurrent(bench: Path, work: Path) -> list:
    from dada.engine import checkpoint as ckpt

    rows = []
    for trial in range(2):
        name = f"race{trial}"
        processes = [subprocess.Popen(train_command(bench, work, name, f"seed={seed}"), env=env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for seed in (7, 8)]
        results = [(p.wait(), p.stderr.read()) for p in processes]
        codes = sorted(rc for rc, _ in results)
        refusal = next((err.strip().splitlines()[-1] for rc, err in results if rc == 2), "")
        import yaml

        config_seed = yaml.safe_load((work / name / "config.yaml").read_text())["seed"]
        final_seed = ckpt.load_checkpoint(work / name / "checkpoints" / "final.pt")["config"]["seed"]
        ok = codes == [0, 2] and "in use by process" in refusal and config_seed == final_seed
        rows.append({"scenario": "concurrent", "ok": ok, "exit_codes": codes, "message": refusal,
                     "config_seed": config_seed, "final_seed": final_seed})
        print(f"  concurrent {trial}: exit codes {codes}; {refusal!r}; config seed {config_seed}, "
              f"final.pt seed {final_seed}", flush=True)
        shutil.rmtree(work / name, ignore_errors=True)
    return rows


def scenario_fuzz(work: Path, cases: int) -> list:
    from reader_fuzz import fuzz

    started = time.perf_counter()
    report = fuzz(work / "fuzz", cases=cases, seed=12345)
    seconds = time.perf_counter() - started
    print(f"  fuzz: {report.cases} cases in {seconds:.0f} s: {report.errors} DadaError, {report.decoded} "
          f"well-formed items, {len(report.findings)} findings; slowest case {report.slowest * 1000:.0f} ms "
          f"({report.slowest_case})",
          flush=True)
    return [{"scenario": "fuzz", "ok": not report.findings, "cases": report.cases,
             "dada_errors": report.errors, "decoded": report.decoded, "findings": report.findings[:20],
             "seconds": round(seconds, 1),
             "slowest_ms": round(report.slowest * 1000, 1), "slowest_case": report.slowest_case,
             "per_target": report.per_target}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--step-kills", type=int, default=20,
                        help="kills inside training steps, DADA and DACS in turn (scenario step-kills)")
    parser.add_argument("--fuzz", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated scenarios: sigkill, step-kills, sigterm, damage, "
                        "disk-full, concurrent, fuzz")
    parser.add_argument("--work", help="working folder (default a temporary one, removed at the end)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES[:4]),
                        help=f"kill moments, in turn (default: the first four of {', '.join(STRATEGIES)})")
    parser.add_argument("--out", default=str(RESULTS),
                        help="JSON results (default benchmarks/results/faults.json)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    wanted = lambda name: only is None or name in only  # noqa: E731
    rng = random.Random(args.seed)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dada-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.monotonic()
    try:
        if any(wanted(n) for n in ("sigkill", "step-kills", "sigterm", "damage", "disk-full", "concurrent")):
            bench = work / "B"
            if not bench.exists():
                subprocess.run([sys.executable, "-m", "dada.cli", "make-benchmark", str(bench),
                                "--num-source", "40", "--num-target-train", "40", "--num-target-val", "10",
                                "--size", "64", "128", "--workers", "1"], env=env(), check=True,
                               capture_output=True)
            t0 = time.monotonic()
            done = run(train_command(bench, work, "reference"))
            ref_seconds = time.monotonic() - t0
            if done.returncode != 0:
                print(done.stderr)
                return 1
            reference = fingerprint(work / "reference")
            print(f"reference run: {ref_seconds:.1f} s", flush=True)
            if wanted("sigkill"):
                rows += scenario_sigkill(bench, work, args.kills, reference, ref_seconds, rng,
                                         args.strategies.split(","))
            if wanted("step-kills"):
                rows += scenario_step_kills(bench, work, args.step_kills, rng)
            if wanted("sigterm"):
                rows += scenario_sigterm(bench, work, reference)
            if wanted("damage"):
                rows += scenario_damage(bench, work, reference)
            if wanted("disk-full"):
                rows += scenario_disk_full(bench, work, reference)
            if wanted("concurrent"):
                rows += scenario_concurrent(bench, work)
        if wanted("fuzz"):
            rows += scenario_fuzz(work, args.fuzz)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    table = {}
    for row in rows:
        key = row["scenario"] if row["scenario"] != "sigkill" else f"sigkill during {row['moment']}"
        entry = table.setdefault(key, {"trials": 0, "passed": 0, "skipped": 0})
        entry["trials"] += 1
        entry["passed"] += row["ok"] is True
        entry["skipped"] += row["ok"] is None
    print("\n| scenario | trials | passed |\n|---|---|---|")
    for key, entry in table.items():
        shown = "skipped" if entry["skipped"] == entry["trials"] else f"{entry['passed']}/{entry['trials']}"
        print(f"| {key} | {entry['trials']} | {shown} |")
    failed = [r for r in rows if r["ok"] is False]
    print(f"\n{len(rows)} trials, {len(failed)} failed, {time.monotonic() - started:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"machine": platform.platform(), "python": platform.python_version(),
               "command": " ".join(sys.argv),
               "max_iters": MAX_ITERS, "table": table, "rows": rows,
               "seconds": round(time.monotonic() - started, 1)}
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
