"""The ``dada`` command. Thin: parses arguments, loads a config, calls the library.

Each command has one ``_add_<command>`` function (its parser) and one ``_run_<command>`` function (its
body). Errors a user can cause are :class:`dada.DadaError`: printed without a traceback, exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from dada.errors import DadaError


# ---------------------------------------------------------------------------------------------- doctor
def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check a dataset folder before training on it")
    p.add_argument("dataset", help="synthia, cityscapes, mapillary or folder")
    p.add_argument("root", help="the dataset's root folder")
    p.add_argument("--spec", help="folder datasets: the YAML spec (default ROOT/dataset.yaml)")
    p.add_argument("--samples", type=int, default=3, help="items fully decoded per split (default 3)")
    p.set_defaults(func=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from dada.data.doctor import run_doctor

    return run_doctor(args.dataset, args.root, spec=args.spec, samples=args.samples)


# ------------------------------------------------------------------------------------- make-benchmark
def _add_make_benchmark(sub: argparse._SubParsersAction) -> None:
    from dada.data.benchmark import DEFAULTS

    p = sub.add_parser("make-benchmark", help="generate the built-in SYNTHIA→Cityscapes-like benchmark")
    p.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed (default 0)")
    p.add_argument("--num-source", type=int, default=DEFAULTS["num_source"], metavar="N",
                   help=f"source (SYNTHIA-like) images; every 10th is listed in val.txt "
                   f"(default {DEFAULTS['num_source']})")
    p.add_argument("--num-target-train", type=int, default=DEFAULTS["num_target_train"], metavar="N",
                   help=f"target (Cityscapes-like) train images (default {DEFAULTS['num_target_train']})")
    p.add_argument("--num-target-val", type=int, default=DEFAULTS["num_target_val"], metavar="N",
                   help=f"labelled target val images (default {DEFAULTS['num_target_val']})")
    p.add_argument("--size", type=int, nargs=2, default=list(DEFAULTS["size"]), metavar=("H", "W"),
                   help="image size (default 128 256)")
    p.add_argument("--workers", type=int, default=2,
                   help="processes (default 2; the outputs do not depend on it)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_run_make_benchmark)


def _run_make_benchmark(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from tqdm import tqdm

    from dada.data.benchmark import make_benchmark

    start = time.perf_counter()
    total = args.num_source + args.num_target_train + args.num_target_val
    with tqdm(total=total, unit="img", desc="make-benchmark", file=sys.stderr) as bar:
        out = make_benchmark(Path(args.out), seed=args.seed, num_source=args.num_source,
                             num_target_train=args.num_target_train, num_target_val=args.num_target_val,
                             size=tuple(args.size), workers=args.workers, overwrite=args.force,
                             progress=lambda done, _total: bar.update(done - bar.n))
    seconds = time.perf_counter() - start
    print(f"benchmark: {total} images in {seconds:.1f} s ({total / seconds:.1f} img/s); "
          f"source {out / 'source'}, target {out / 'target'}, preview {out / 'preview.png'}, "
          f"summary {out / 'benchmark.json'}")
    return 0


# ---------------------------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset (source-only, AdvEnt, DADA, ablations S1-S7, ...)")
    p.add_argument("preset", nargs="?", help="preset <setting>_<method> (see --list) or a YAML file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_iters=2000")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (rerunning the same "
                   "command also continues)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2: one run each, then mean ± std")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from dada.config import list_presets
    from dada.engine import Trainer
    from dada.engine.runs import parse_seeds, resume, train_seeds

    if args.list:
        print("\n".join(list_presets()))
        return 0
    overrides = list(args.overrides)
    if args.resume:
        if args.seeds:
            raise DadaError("--resume continues one run; to continue a --seeds run, rerun the same command")
        if args.preset:  # with --resume, every positional argument is an override
            overrides.insert(0, args.preset)
        print(f"run folder: {resume(args.resume, overrides)}")
        return 0
    if not args.preset:
        raise DadaError("give a preset (dada train --list shows them) or a YAML file, or --resume RUN_DIR")
    if args.seeds:
        summary = train_seeds(args.preset, overrides, parse_seeds(args.seeds))
        print(f"mIoU over seeds {[r['seed'] for r in summary['runs']]}: "
              f"{100 * summary['miou_mean']:.2f} ± {100 * summary['miou_std']:.2f} ({summary['selection']})")
        return 0
    from dada.config import load_config

    print(f"run folder: {Trainer(load_config(args.preset, overrides)).fit()}")
    return 0


# ----------------------------------------------------------------------------------------------- eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run or checkpoint on the target validation set")
    p.add_argument("checkpoint", help="run folder or checkpoint file")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    raise DadaError("dada eval is not implemented yet (issue 6)")


# -------------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment and estimate depth on your own images")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    raise DadaError("dada predict is not implemented yet (issue 6)")


# -------------------------------------------------------------------------------------------- compare
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="one table and one chart over several runs")
    p.add_argument("runs", nargs="+")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    raise DadaError("dada compare is not implemented yet (issue 6)")


# ----------------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the built-in benchmark, train S1/S2/S7, evaluate, report")
    p.add_argument("--quick", action="store_true", help="a smoke-test sized demo (about 2 minutes)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    raise DadaError("dada demo is not implemented yet (issue 6)")


# ---------------------------------------------------------------------------------------------- main
COMMANDS = (_add_train, _add_eval, _add_predict, _add_compare, _add_demo, _add_doctor, _add_make_benchmark)


def build_parser() -> argparse.ArgumentParser:
    from dada import __version__

    parser = argparse.ArgumentParser(prog="dada", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dada-seg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DadaError as error:
        print(f"dada {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dada {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
