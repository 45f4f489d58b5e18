"""The ladder of shifts (docs/benchmark.md, ``data.benchmark.shift``): one table from its rungs' studies.

Each rung is a folder written by ``benchmarks/ablation.py`` (its ``ablation.json``), e.g. ::

    python benchmarks/ablation.py --setting benchmark_v2_7 --only S1,S2,S7,dacs --out runs/ladder_none \\
        --override data.benchmark.shift=none
    python benchmarks/ladder.py --rung none=runs/ladder_none --rung appearance=runs/ladder_appearance \\
        --rung content=runs/ladder_content --rung full=runs/v2_7 --out runs/ladder.json

prints (and writes as JSON, with ``--md`` as markdown) two tables: the target mIoU of every set-up on every
rung (mean ± std over seeds, n), and each set-up minus the baseline (``--baseline``, default S1) paired by
seed on each rung (mean ± std of the per-seed differences, resolved only when |mean| exceeds twice that std,
as the ablation's report). A set-up missing on a rung is "-". Nothing is trained here.

A rung may gather several studies, ``NAME=FOLDER,FOLDER:KEY+KEY,...`` (e.g. a study run with an override,
then the set-ups of another study that the override does not change, named after a colon): the first
folder that has a set-up gives it, and the JSON says which (``sources``). The columns need not be shifts:
``--rung "λ 10/92"=runs/v2_7 --rung "λ 1/92"=runs/v2_7_lambda,runs/v2_7:S1+dacs --baseline dacs``
compares two values of a key.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def load_rung(folders: Path | list[Path]) -> dict[str, dict]:
    """``{key: {"label", "by_seed": {seed: mIoU %}, "folder"}}`` of one study folder, or of several: the
    first folder that has a set-up gives it (a study run with an override first, then the study whose
    set-ups the override does not change)."""
    if isinstance(folders, list):
        merged: dict[str, dict] = {}
        for folder in folders:
            folder, _, only = str(folder).partition(":")
            setups = load_rung(Path(folder))
            keys = only.split("+") if only else list(setups)
            missing = [key for key in keys if key not in setups]
            if missing:
                raise SystemExit(f"ladder: {folder} has no set-up {', '.join(missing)}; it has "
                                 f"{', '.join(setups)}")
            for key in keys:
                merged.setdefault(key, setups[key])
        return merged
    folder = folders
    path = folder / "ablation.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        setups = data["setups"]
    except FileNotFoundError:
        raise SystemExit(f"ladder: {path} does not exist: run benchmarks/ablation.py with --out {folder} "
                         f"first") from None
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"ladder: {path} is not an ablation.json ({error})") from None
    return {key: {"label": s["label"], "by_seed": {int(r["seed"]): 100 * r["miou"] for r in s["runs"]},
                  "folder": str(folder)} for key, s in setups.items()}


def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f} (n=1)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} (n={len(values)})"


def paired(setup: dict, base: dict) -> dict | None:
    """Per-seed differences of ``setup`` − ``base`` (the baseline) over their common seeds, with the
    verdict."""
    seeds = sorted(set(setup["by_seed"]) & set(base["by_seed"]))
    if not seeds:
        return None
    diffs = [setup["by_seed"][s] - base["by_seed"][s] for s in seeds]
    mean = statistics.mean(diffs)
    std = statistics.stdev(diffs) if len(diffs) > 1 else None
    if std is None:
        verdict = "one seed"
    elif abs(mean) > 2 * std:
        verdict = "resolved: higher" if mean > 0 else "resolved: lower"
    else:
        verdict = "not resolved"
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "std": std, "verdict": verdict}


def ladder(rungs: dict[str, dict[str, dict]], baseline: str = "S1") -> dict:
    keys: list[str] = []
    for setups in rungs.values():
        keys += [k for k in setups if k not in keys]
    if baseline not in keys:
        raise SystemExit(f"ladder: the baseline {baseline!r} is on no rung; set-ups found: {', '.join(keys)}")
    labels = {k: next(r[k]["label"] for r in rungs.values() if k in r) for k in keys}
    table = {k: {name: sorted(r[k]["by_seed"].items()) if k in r else None for name, r in rungs.items()}
             for k in keys}
    gains = {k: {name: (paired(r[k], r[baseline]) if k in r and baseline in r else None)
                 for name, r in rungs.items()}
             for k in keys if k != baseline}
    # "minus_s1" is kept as the key's name for S1, the default, so that earlier readers keep working
    return {"rungs": list(rungs), "labels": labels, "miou": table, "baseline": baseline,
            "minus_baseline": gains, **({"minus_s1": gains} if baseline == "S1" else {})}


def markdown(result: dict) -> list[str]:
    rungs = result["rungs"]
    head = "| set-up | " + " | ".join(rungs) + " |"
    rule = "|---|" + "---|" * len(rungs)
    lines = ["Target validation mIoU (%) on each rung, mean ± std over seeds:", "", head, rule]
    for key, cells in result["miou"].items():
        lines.append(f"| {result['labels'][key]} | " + " | ".join(
            _pm([v for _, v in cell]) if cell else "-" for cell in cells.values()) + " |")
    base = result["labels"][result["baseline"]] if result["baseline"] != "S1" else "S1"
    lines += ["", f"Minus {base} of the same seed (points), mean ± std of the per-seed differences; resolved "
              "when |mean| > 2 std:", "", head, rule]
    for key, cells in result["minus_baseline"].items():
        row = []
        for cell in cells.values():
            if cell is None:
                row.append("-")
            elif cell["std"] is None:
                row.append(f"{cell['mean']:+.1f} (one seed)")
            else:
                mark = {"resolved: higher": " ▲", "resolved: lower": " ▼"}.get(cell["verdict"], "")
                row.append(f"{cell['mean']:+.1f} ± {cell['std']:.1f}{mark}")
        lines.append(f"| {result['labels'][key]} | " + " | ".join(row) + " |")
    lines += ["", f"▲ / ▼: resolved higher / lower than {base.rstrip('.')}."]
    return lines


def parse_rung(text: str) -> tuple[str, list[Path]]:
    name, sep, folders = text.partition("=")
    parts = [part for part in folders.split(",") if part]
    if not sep or not name or not parts:
        raise argparse.ArgumentTypeError(f"--rung {text!r}: write NAME=FOLDER (or NAME=FOLDER,FOLDER,...), "
                                         f"e.g. none=runs/ladder_none")
    return name, [Path(part) for part in parts]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rung", type=parse_rung, action="append", required=True, metavar="NAME=FOLDER",
                        help="a rung and its ablation.py output folder(s), comma-separated, in the ladder's "
                             "order (repeat)")
    parser.add_argument("--baseline", default="S1", help="the set-up every other is paired with (default S1)")
    parser.add_argument("--out", type=Path, help="write the tables as JSON here")
    parser.add_argument("--md", type=Path, help="write the tables as markdown here")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.rung]
    if len(set(names)) != len(names):
        parser.error(f"--rung: a rung named twice ({', '.join(names)})")
    rungs = {name: load_rung(folders) for name, folders in args.rung}
    result = ladder(rungs, args.baseline)
    result["folders"] = {name: [str(folder) for folder in folders] for name, folders in args.rung}
    result["sources"] = {name: {key: setup["folder"] for key, setup in setups.items()}
                         for name, setups in rungs.items()}
    lines = markdown(result)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
