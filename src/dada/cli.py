"""The ``dada`` command. Thin: parses arguments, loads a config, calls the library.

Each command has one ``_add_<command>`` function (its parser) and one ``_run_<command>`` function (its
body). Errors a user can cause are :class:`dada.DadaError`: printed without a traceback, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from dada.config import SELECTION_POLICIES
from dada.errors import DadaError


# ------------------------------------------------------------------------------------- option checks
def _at_least(value: int | None, option: str, low: int) -> None:
    """An integer option below ``low`` (e.g. ``--batch-size 0``) is an error naming it, before any work."""
    if value is not None and value < low:
        raise DadaError(f"{option} must be at least {low}, got {value}")


def _seed(value: int | None, option: str = "--seed") -> None:
    from dada.config import MAX_SEED

    if value is not None and not 0 <= value <= MAX_SEED:
        raise DadaError(f"{option} must be an integer from 0 to {MAX_SEED}, got {value}")


# ---------------------------------------------------------------------------------------------- doctor
def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check a dataset folder before training on it")
    p.add_argument("dataset", help="synthia, cityscapes, mapillary, camvid or folder")
    p.add_argument("root", help="the dataset's root folder")
    p.add_argument("--spec", help="folder datasets: the YAML spec (default ROOT/dataset.yaml)")
    p.add_argument("--samples", type=int, default=3, help="items fully decoded per split (default 3)")
    p.add_argument("--all", action="store_true", help="decode every item (slow; finds truncated files)")
    p.set_defaults(func=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from dada.data.doctor import run_doctor

    _at_least(args.samples, "--samples", 1)
    return run_doctor(args.dataset, args.root, spec=args.spec, samples=None if args.all else args.samples)


# ------------------------------------------------------------------------------------- make-benchmark
def _add_make_benchmark(sub: argparse._SubParsersAction) -> None:
    from dada.benchmark import DEFAULTS, DEFAULTS_V2, SHIFTS

    def default(key: str) -> str:
        return f"default {DEFAULTS[key]}, version 2: {DEFAULTS_V2[key]}"

    p = sub.add_parser("make-benchmark", help="generate the built-in SYNTHIA→Cityscapes-like benchmark")
    p.add_argument("out", help="output folder (must not exist or be empty, unless --force)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed (default 0)")
    p.add_argument("--version", type=int, default=1,
                   help="benchmark version: 1 (default, the earlier results' generator) or 2 "
                        "(docs/benchmark.md)")
    p.add_argument("--shift", default="full", choices=SHIFTS,
                   help="version 2's ladder of shifts: none (both domains rendered as the target), "
                        "appearance (the target's world, the source's rendering), content (each domain's "
                        "world, the target's rendering) or full (default)")
    p.add_argument("--fog", type=float, default=0, metavar="METRES",
                   help="version 2: fog in the target, its visibility in metres (default 0: clear day)")
    p.add_argument("--generator", default=None, metavar="G",
                   help="version 2: the generator, 4 (default, the same images on every CPU) or 3 (the one "
                        "the published study used; docs/benchmark.md 'Machine independence')")
    p.add_argument("--num-source", type=int, default=None, metavar="N",
                   help=f"source (SYNTHIA-like) images; every 10th is listed in val.txt "
                        f"({default('num_source')})")
    p.add_argument("--num-target-train", type=int, default=None, metavar="N",
                   help=f"target (Cityscapes-like) train images ({default('num_target_train')})")
    p.add_argument("--num-target-val", type=int, default=None, metavar="N",
                   help=f"labelled target val images ({default('num_target_val')})")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="image size (default 128 256, version 2: 256 512)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default one per usable CPU, at most 8; the outputs do not depend on it)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_run_make_benchmark)


def _run_make_benchmark(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from dada.benchmark import DEFAULTS, DEFAULTS_V2, make_benchmark
    from dada.io import check_replaceable

    base = DEFAULTS_V2 if args.version == 2 else DEFAULTS
    for key in ("num_source", "num_target_train", "num_target_val", "size"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])

    if args.workers is None:
        from dada.benchmark.cache import default_workers

        args.workers = default_workers()
    _at_least(args.workers, "--workers", 1)
    _seed(args.seed)
    if args.force:
        check_replaceable(args.out, "--force")
    start = time.perf_counter()
    total = args.num_source + args.num_target_train + args.num_target_val
    from dada.io import progress_bar

    with progress_bar(total=total, unit="img", desc="make-benchmark") as bar:
        out = make_benchmark(Path(args.out), seed=args.seed, num_source=args.num_source,
                             num_target_train=args.num_target_train, num_target_val=args.num_target_val,
                             size=tuple(args.size), workers=args.workers, overwrite=args.force,
                             version=args.version, shift=args.shift, fog=args.fog,
                             generator=args.generator, progress=lambda done, _total: bar.update(done - bar.n))
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
    p.add_argument("--nproc", type=int, metavar="N", help="train with N processes on this machine through "
                   "torchrun: one per GPU (nccl), or N CPU processes (gloo); see docs/training.md")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from dada.config import load_config, methods, settings
    from dada.engine import Trainer
    from dada.engine.runs import parse_seeds, resume, train_seeds

    if args.list:
        # each preset with its method's note; settings() and methods() parse YAML: once, not per preset
        presets = [(f"{s}_{m}", _unverified(fragment["method"]["name"]))
                   for s in settings() for m, fragment in methods().items()]
        width = max(len(p) for p, _ in presets)
        print("\n".join(f"{p:{width}s}  {note}" if note else p for p, note in presets))
        return 0
    overrides = list(args.overrides)
    _at_least(args.nproc, "--nproc", 1)
    if args.nproc is not None and args.nproc != 1 and "WORLD_SIZE" not in os.environ:
        from dada.engine.distributed import launch

        if args.seeds:
            raise DadaError("--nproc trains one run; with --seeds, run one seed at a time (seed=N)")
        forwarded = ["train", *([args.preset] if args.preset else []), *overrides,
                     *(["--resume", args.resume] if args.resume else [])]
        return launch(args.nproc, forwarded)
    if args.seeds and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise DadaError("--seeds trains one run after the other in one process: under torchrun, run one "
                        "seed at a time (seed=N)")
    if args.resume:
        if args.seeds:
            raise DadaError("--resume continues one run; to continue a --seeds run, rerun the same command")
        if args.preset:  # with --resume, every positional argument is an override
            overrides.insert(0, args.preset)
        from dada.engine.distributed import teardown

        try:
            run_dir = resume(args.resume, overrides)
        finally:
            teardown()
        if os.environ.get("RANK", "0") == "0":
            print(f"run folder: {run_dir}")
        return 0
    if not args.preset:
        raise DadaError("give a preset (dada train --list shows them) or a YAML file, or --resume RUN_DIR")
    cfg = load_config(args.preset, overrides)
    if (note := _unverified(cfg.method.name)) and os.environ.get("RANK", "0") == "0":
        print(f"note: {args.preset}: {note}", file=sys.stderr)
    if args.seeds:
        summary = train_seeds(args.preset, overrides, parse_seeds(args.seeds))
        print(f"mIoU over seeds {[r['seed'] for r in summary['runs']]}: "
              f"{100 * summary['miou_mean']:.2f} ± {100 * summary['miou_std']:.2f} ({summary['selection']})")
        return 0
    from dada.engine.distributed import teardown
    from dada.engine.runs import warn_precision

    warn_precision(cfg)
    try:
        run_dir = Trainer(cfg).fit()
    finally:
        teardown()
    if os.environ.get("RANK", "0") == "0":
        print(f"run folder: {run_dir}")
    return 0


def _unverified(method_name: str) -> str | None:
    """What the method ``method_name`` has not checked against its paper (its class's ``unverified``)."""
    from dada.methods import METHODS

    return getattr(METHODS.get(method_name), "unverified", None)


# ----------------------------------------------------------------------------------------------- eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run or checkpoint on the target validation set",
                       description="Evaluate with the official protocol (logits upsampled bilinearly, "
                       "align_corners=True, to the full label resolution; 255 ignored) and write "
                       "results.json, results.md and figures (see docs/evaluation.md).")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="run folder, our checkpoint (.pt) or an official DADA state dict (.pth)")
    p.add_argument("--data", metavar="ROOT", help="evaluation dataset folder (default: the config's "
                   "data.val.root; @benchmark for the built-in benchmark)")
    p.add_argument("--dataset", metavar="NAME",
                   help="cityscapes, mapillary, camvid, synthia or folder (default: config)")
    p.add_argument("--split", help="split to evaluate (default: the config's data.val.split)")
    p.add_argument("--size", metavar="H,W",
                   help="input size, or 'native' (default: the config's data.val.size)")
    p.add_argument("--num-classes", type=int,
                   help="the dataset's class count (checked against the checkpoint)")
    p.add_argument("--baseline", metavar="RUN_OR_CHECKPOINT",
                   help="the source-only model: negative transfer rate (and D-Gain when it has no depth)")
    p.add_argument("--counterpart", metavar="RUN_OR_CHECKPOINT",
                   help="the no-depth counterpart for the D-Gain (e.g. AdvEnt for DADA)")
    p.add_argument("--label", help="the model's name in the reports and figures (default: preset and seed)")
    p.add_argument("--baseline-label", metavar="LABEL", help="the baseline's name (default: preset and seed)")
    p.add_argument("--counterpart-label", metavar="LABEL",
                   help="the counterpart's name (default: preset and seed)")
    p.add_argument("--all-snapshots", action="store_true",
                   help="evaluate every checkpoints/iter_*.pt of the run")
    p.add_argument("--select", choices=tuple(SELECTION_POLICIES), default="last",
                   help="with --all-snapshots: which snapshot is reported (default last; best-on-val is the "
                   "official protocol and selects on the evaluation set)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the run folder, or "
                   "<checkpoint folder>/eval_<name> for a file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing evaluation")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--max-images", type=int, help="evaluate the first N images only")
    p.add_argument("--depth-bins", metavar="M1,M2",
                   help="depth range edges in metres (near < M1 <= middle < M2 <= far), or 'off' "
                   "(default 10,30)")
    p.add_argument("--no-source-depth", action="store_true",
                   help="skip the depth quality on the source validation images")
    p.add_argument("--figures", type=int, default=4,
                   help="images in the qualitative grid (default 4, random)")
    p.add_argument("--figure-images", metavar="NAME", nargs="+", help="images of the grid, by item name")
    p.add_argument("--seed", type=int, default=0, help="seed for the random choice of figure images")
    p.set_defaults(func=_run_eval)


def _parse_floats(text: str, option: str, count: int | None = None) -> list[float]:
    import math

    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DadaError(f"{option} takes numbers separated by commas, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise DadaError(f"{option} takes finite numbers, got {text!r}")
    if not values or (count is not None and len(values) != count):
        raise DadaError(f"{option} takes {count or 'one or more'} numbers separated by commas, got {text!r}")
    return values


def _parse_size(text: str | None) -> object:
    """``--size``: "H,W" → [H, W] (positive integers); "native" → None (keep each image's size); absent →
    "config"."""
    if not text:
        return "config"
    if text == "native":
        return None
    values = _parse_floats(text, "--size", 2)
    if any(v != int(v) or v < 1 for v in values):
        raise DadaError(f"--size takes two positive integers H,W (or 'native'), got {text!r}")
    return [int(v) for v in values]


def _parse_depth_bins(text: str | None) -> list[float] | None:
    """``--depth-bins``: increasing positive edges in metres, or 'off' (None); absent → the default."""
    from dada.evaluation.metrics import DEFAULT_DEPTH_BINS

    if not text:
        return DEFAULT_DEPTH_BINS
    if text == "off":
        return None
    bins = _parse_floats(text, "--depth-bins")
    if bins[0] <= 0 or any(b <= a for a, b in zip(bins, bins[1:], strict=False)):
        raise DadaError(f"--depth-bins takes increasing positive depths in metres, e.g. 10,30, got {text!r}")
    return bins


def _run_eval(args: argparse.Namespace) -> int:
    import os

    from dada.evaluation.pipeline import evaluate_run
    from dada.evaluation.reports import pct

    size = _parse_size(args.size)
    bins = _parse_depth_bins(args.depth_bins)
    for value, option, low in ((args.batch_size, "--batch-size", 1), (args.max_images, "--max-images", 1),
                               (args.figures, "--figures", 0), (args.num_classes, "--num-classes", 1)):
        _at_least(value, option, low)
    _seed(args.seed)
    results = evaluate_run(args.checkpoint, out_dir=args.out, overwrite=args.overwrite,
                           dataset=args.dataset, root=args.data, split=args.split, size=size,
                           num_classes=args.num_classes, baseline=args.baseline, counterpart=args.counterpart,
                           label=args.label, baseline_label=args.baseline_label,
                           counterpart_label=args.counterpart_label, all_snapshots=args.all_snapshots,
                           select=args.select, device=args.device,
                           batch_size=args.batch_size, max_images=args.max_images, depth_bins=bins,
                           source_depth=not args.no_source_depth, figures=args.figures,
                           figure_images=args.figure_images, seed=args.seed)
    result = results["result"]
    line = f"{results['model']['label']}: mIoU {pct(result['miou'], 2)}"
    if result.get("miou13") is not None:
        line += f", mIoU* {pct(result['miou13'], 2)}"
    if results.get("d_gain") is not None:
        line += f", D-Gain {pct(results['d_gain'], 2)}"
    if results.get("negative_transfer"):
        line += f", negative transfer {pct(results['negative_transfer']['rate'], 1)} %"
    print(line + f" ({result['num_images']} images)")
    print(f"results: {os.path.join(results['out_dir'], 'results.md')}")
    return 0


# -------------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment and estimate depth on your own images and videos")
    p.add_argument("checkpoint", help="run folder, our checkpoint (.pt), an official DADA state dict (.pth) "
                   "or an ONNX model written by `dada export`")
    p.add_argument("inputs", nargs="+", help="image or video (mp4, avi, mkv) files, folders or globs")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder for the PNGs and videos")
    p.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty folder")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--size", metavar="H,W", help="input size, or 'native' (default: the checkpoint's "
                   "data.val.size; 512,1024 for official state dicts)")
    p.add_argument("--preprocess", help="caffe, imagenet or lite (EfficientNet-Lite); default: the "
                   "checkpoint's")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="torch, or onnxruntime for a model written by `dada export` (auto: onnxruntime for "
                   ".onnx files)")
    p.add_argument("--depth", action="store_true",
                   help="videos: the predicted depth map side by side with the overlay")
    p.add_argument("--classes", metavar="SET",
                   help="draw the prediction merged into another class set, as the evaluation merges it: "
                   "camvid11 draws a 16-class model's prediction as CamVid's 11 classes (docs/camvid.md)")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from dada.deploy.predict import predict_checkpoint

    size = _parse_size(args.size)
    _at_least(args.batch_size, "--batch-size", 1)
    result = predict_checkpoint(args.checkpoint, args.inputs, args.out, batch_size=args.batch_size,
                                device=args.device, size=size, preprocess=args.preprocess,
                                overwrite=args.overwrite, backend=args.backend, depth_video=args.depth,
                                classes=args.classes)
    print(f"{result['images']} images → {args.out}" + (f"; {len(result['skipped'])} skipped: "
          + ", ".join(s["path"] for s in result["skipped"]) if result["skipped"] else ""))
    for video in result["videos"]:
        bad = video["undecodable"]
        print(f"{video['path']}: {video['frames']} frames → {video['output']} ({video['fps']:.1f} frames/s)"
              + (f"; {len(bad)} undecodable frames skipped" if bad else ""))
    return 0


# --------------------------------------------------------------------------------------------- export
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained segmenter to ONNX (parity checked with onnxruntime)",
                       description="Write one ONNX file: input 'image' (N×3×H×W, dynamic N, H, W), outputs "
                       "'logits', 'inverse_depth' (models with a depth head) and optionally 'class_map'; the "
                       "preprocessing, classes and palette in its metadata (see docs/deploy.md).")
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="run folder, our checkpoint (.pt) or an official DADA state dict (.pth)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument("--class-map", action="store_true",
                   help="also output the class map (logits upsampled to the input size, argmax)")
    p.add_argument("--size", metavar="H,W", help="input size stated in the metadata and used for the parity "
                   "check, or 'native' (default: the checkpoint's data.val.size; 512,1024 for official state "
                   "dicts)")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from dada.deploy.export import check_opset, export_onnx

    check_opset(args.opset)
    result = export_onnx(args.checkpoint, args.out, class_map=args.class_map, overwrite=args.overwrite,
                         opset=args.opset, size=_parse_size(args.size))
    parity = result["parity"]
    shapes = ", ".join("×".join(map(str, shape)) for shape in parity["shapes"])
    print(f"{result['path']}: outputs {', '.join(result['outputs'])}; opset {result['opset']}; "
          f"{result['bytes'] / 2**20:.1f} MiB")
    limits = parity["thresholds"]
    print(f"parity with PyTorch (onnxruntime, inputs {shapes}): max relative logit error "
          f"{parity['max_relative_error']:.2e} (≤ {limits['max_relative_error']:g}), argmax agreement "
          f"{100 * parity['argmax_agreement']:.4f} % (≥ {100 * limits['argmax_agreement']:g} %)"
          + (f", class map agreement {100 * parity['class_map_agreement']:.4f} %" if "class_map_agreement"
             in parity else ""))
    return 0


# -------------------------------------------------------------------------------------------- compare
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="one table and one chart over several runs")
    p.add_argument("runs", nargs="+", help="evaluated run folders (with results.json) or results.json files")
    p.add_argument("--out", metavar="DIR", default="comparison", help="output folder (default ./comparison)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing comparison")
    p.add_argument("--title", default="Comparison")
    p.add_argument("--baseline", nargs="+", metavar="RUN",
                   help="evaluated source-only run(s): negative transfer rate of every run against it")
    p.add_argument("--counterpart", nargs="+", metavar="RUN",
                   help="evaluated no-depth run(s): D-Gain of every depth-aware run against it")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from dada.evaluation.compare import compare_runs

    summary = compare_runs(args.runs, args.out, overwrite=args.overwrite, title=args.title,
                           baseline=args.baseline, counterpart=args.counterpart)
    print(summary["markdown"])
    print(f"table: {summary['files']['md']}; chart: {summary['files']['chart']}")
    return 0


# ----------------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the built-in benchmark, train S1/S2/S7, evaluate, report")
    p.add_argument("--quick", action="store_true", help="a smoke-test sized demo (about 2 minutes)")
    p.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 and report mean ± std")
    p.add_argument("--out", default=None, help="output folder (default runs/demo, runs/demo-quick)")
    p.add_argument("--overwrite", action="store_true", help="delete the output folder first")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--jobs", type=int, default=None, help="trainings in parallel, one process each (default: "
                   "one single-thread process per CPU core, at most 3; 1 on a GPU)")
    p.add_argument("--setting", default=None, help="the presets <setting>_s1|s2|s7 (default benchmark_v2_7: "
                   "version 2 of the benchmark, the paper's 7 classes; benchmark_lite0: version 1's demo)")
    p.add_argument("--also", default="", help="more methods of the setting, comma-separated, each evaluated "
                   "against S1, e.g. --also dacs")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every run, e.g. train.max_iters=500")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from dada.demo import run_demo

    out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    _at_least(args.seeds, "--seeds", 1)
    _at_least(args.jobs, "--jobs", 1)
    from dada.demo import DEFAULT_SETTING

    also = [m.strip() for m in args.also.split(",") if m.strip()]
    run_demo(out, quick=args.quick, seeds=args.seeds, overwrite=args.overwrite, device=args.device,
             extra_overrides=args.overrides, jobs=args.jobs, setting=args.setting or DEFAULT_SETTING,
             also=also)
    return 0


# ---------------------------------------------------------------------------------------------- main
COMMANDS = (_add_train, _add_eval, _add_predict, _add_export, _add_compare, _add_demo, _add_doctor,
            _add_make_benchmark)


def build_parser() -> argparse.ArgumentParser:
    from dada import __version__

    parser = argparse.ArgumentParser(prog="dada", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dada-seg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _closed(stream) -> bool:
    """Whether ``stream``'s file descriptor is closed (``>&-``); a stream without one (in memory) is not."""
    import errno

    try:
        fd = stream.fileno()
    except Exception:  # noqa: BLE001 - io.UnsupportedOperation, or a test capture's own type
        return False
    try:
        os.fstat(fd)
    except OSError as error:
        return error.errno == errno.EBADF
    return False


def main(argv: list[str] | None = None) -> int:
    for name in ("stdout", "stderr"):  # a closed descriptor (`dada ... >&-`): output goes nowhere, no crash
        stream = getattr(sys, name)
        if stream is None or _closed(stream):
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \udcXX, never crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # dotted overrides may follow options (`dada train PRESET --nproc 4 key=value`): argparse leaves those
    # after an option unparsed; they join the command's overrides, anything else is still an error
    strays = [item for item in extra if item.startswith("-") or "=" not in item]
    if strays or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(strays or extra)}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # `dada train --list | head -1`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except DadaError as error:
        print(f"dada {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a read-only folder, a full disk, ... not wrapped where it happened
        from dada.io import os_error

        print(f"dada {args.command}: error: {os_error(error, error.filename or '?', 'access')}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        from dada.engine.lock import Interrupted

        if isinstance(interrupt, Interrupted):
            print(f"dada {args.command}: {interrupt.message}", file=sys.stderr)
            return interrupt.exit_code
        print(f"dada {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
