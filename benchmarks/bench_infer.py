"""Inference latency, throughput and peak memory: PyTorch eager, ``torch.compile`` and onnxruntime.

For each arch (default: the ResNet-101 DeepLab of the paper and the demo's ``tiny`` backbone, plus
``efficientnet_lite0`` when the backbone registry has it), input size (default 512×1024 and 1024×2048),
batch size (1 and 8) and backend, on CPU (and CUDA when present): milliseconds per image, images per
second and peak memory. The model is the full DADA segmenter (16 classes, depth head, feature fusion),
random weights (speed does not depend on their values), in eval mode under ``torch.inference_mode``.

Each measurement runs in a fresh process, so that memory peaks and compile caches do not leak from one to
the next: after a warm-up (which for ``torch.compile`` includes the compilation, reported separately) the
median of ``--runs`` timed forward passes (wall time, and the process's CPU time, which on a shared machine
is closer to what an idle one would take; the 1-minute load average is recorded). Peak memory: on CPU the
process's peak resident set from the first forward pass to the last (``VmHWM``, reset once the model and the
input are loaded; for ``torch.compile`` it includes the compiler's own memory) and its increase over the
resident set at that reset; on CUDA ``torch.cuda.max_memory_allocated`` and its increase over the memory
allocated before. onnxruntime runs the file ``dada export`` would write (dynamo exporter, dynamic axes),
with as many intra-op threads as torch has (``OMP_NUM_THREADS``, default 1).

Results are merged into ``benchmarks/results/bench_infer.json`` (one entry per cell, so several
invocations build up the grid); the table of this invocation is printed. ``--table`` prints the whole
file as a Markdown table (for docs/deploy.md).

    .venv/bin/python benchmarks/bench_infer.py                      # the full grid (slow on a laptop CPU)
    .venv/bin/python benchmarks/bench_infer.py --quick              # tiny: every size/batch/backend;
                                                                    # resnet101: 512×1024, batch 1
    .venv/bin/python benchmarks/bench_infer.py --archs tiny --sizes 512x1024 --batches 1 --backends eager
    .venv/bin/python benchmarks/bench_infer.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_infer.json"
BACKENDS = ("eager", "compile", "onnxruntime")
DEMO_ARCH = "tiny"
LITE_ARCH = "efficientnet_lite0"


def default_archs() -> list[str]:
    from dada.models import build_segmenter

    archs = ["resnet101", DEMO_ARCH]
    try:
        with torch.device("meta"):
            build_segmenter(arch=LITE_ARCH, num_classes=16)
        archs.append(LITE_ARCH)
    except (ValueError, KeyError, TypeError):
        pass  # not in this version's backbone registry
    return archs


def build_model(arch: str, device: torch.device):
    from dada.models import build_segmenter

    torch.manual_seed(0)
    return build_segmenter(arch=arch, num_classes=16, depth_head=True, feature_fusion=True).eval().to(device)


# ------------------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the process's peak resident set (Linux ``clear_refs`` 5); returns the current RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kib("VmRSS")


# ------------------------------------------------------------------------------------------ one cell
def run_cell(arch: str, height: int, width: int, batch: int, backend: str, device_name: str, runs: int,
             onnx_path: str | None) -> dict:
    """Measure one configuration in this process; returns its row."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    image = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    if backend == "onnxruntime":
        from dada.deploy.export import onnx_session

        session = onnx_session(onnx_path, device=device)
        array = image.cpu().numpy()
        names = [o.name for o in session.get_outputs()]

        def forward():
            session.run(names, {"image": array})
    else:
        model = build_model(arch, device)
        if backend == "compile":
            model = torch.compile(model)

        def forward():
            with torch.inference_mode():
                out = model(image)
            return out

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = reset_peak_rss()
    start = time.perf_counter()
    forward()  # warm-up; compiles for torch.compile
    sync()
    first = time.perf_counter() - start
    if backend == "compile":
        forward()  # a second warm-up: the first call after compilation may still be slower
        sync()
    times, cpu_times = [], []
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        forward()
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    seconds = statistics.median(times)
    row = {"arch": arch, "size": [height, width], "batch": batch, "backend": backend, "device": device_name,
           "threads": torch.get_num_threads(), "runs": runs, "seconds_per_batch": seconds,
           "ms_per_image": 1000 * seconds / batch, "images_per_s": batch / seconds,
           "first_call_s": first,
           # CPU time of this process per image: on a shared machine, closer to what an idle one would take
           "cpu_ms_per_image": 1000 * statistics.median(cpu_times) / batch,
           "load_average": [load_before, os.getloadavg()[0]]}
    if cuda:
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        row["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
        row["memory_increase_mib"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        row["peak_memory_mib"] = _status_kib("VmHWM") / 1024
        row["peak_memory_kind"] = "process peak RSS (VmHWM) from the first call to the last run"
        row["memory_increase_mib"] = (_status_kib("VmHWM") - before) / 1024
    return row


# ------------------------------------------------------------------------------------------ driver
def export_for_bench(arch: str, folder: Path) -> str:
    from dada.deploy.export import ExportGraph, export_graph, output_names

    path = folder / f"{arch}.onnx"
    if not path.exists():
        model = build_model(arch, torch.device("cpu"))
        export_graph(ExportGraph(model), torch.randn(1, 3, 64, 128), path, output_names(True, False))
    return str(path)


def measure_in_subprocess(cell: dict, runs: int, onnx_path: str | None, timeout: float) -> dict:
    command = [sys.executable, __file__, "--cell", json.dumps(cell), "--runs", str(runs)]
    if onnx_path:
        command += ["--onnx", onnx_path]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**cell, "error": f"not measured: over the {timeout:.0f} s limit per cell"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**cell, "error": f"failed: {tail[:200]}"}
    return json.loads(lines[-1])


def cell_key(row: dict) -> str:
    return f"{row['arch']}|{row['size'][0]}x{row['size'][1]}|{row['batch']}|{row['backend']}|{row['device']}"


def load_results() -> dict:
    if RESULTS.is_file():
        return json.loads(RESULTS.read_text())
    return {"cells": {}}


def table(rows: list[dict]) -> str:
    lines = ["| arch | device | input (H×W) | batch | backend | ms / image | images / s | CPU ms / image "
             "| peak memory (MiB) | +inference (MiB) | first call (s) | load average |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {name: k for k, name in enumerate(BACKENDS)}
    for row in sorted(rows, key=lambda r: (r["arch"], r["device"], r["size"], r["batch"],
                                           order.get(r["backend"], 9))):
        common = (f"| {row['arch']} | {row['device']} | {row['size'][0]}×{row['size'][1]} | {row['batch']} | "
                  f"{row['backend']} |")
        if "error" in row:
            lines.append(common + f" {row['error']} | | | | | | |")
        else:
            cpu = f"{row['cpu_ms_per_image']:.1f}" if "cpu_ms_per_image" in row else "-"
            load = "–".join(f"{v:.1f}" for v in row["load_average"]) if "load_average" in row else "-"
            lines.append(common + f" {row['ms_per_image']:.1f} | {row['images_per_s']:.3g} | {cpu} | "
                         f"{row['peak_memory_mib']:.0f} | {row['memory_increase_mib']:.0f} | "
                         f"{row['first_call_s']:.1f} | {load} |")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",") if part]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", help="comma-separated (default: resnet101, tiny, efficientnet_lite0 if "
                        "registered)")
    parser.add_argument("--sizes", default="512x1024,1024x2048", help="HxW list (default 512x1024,1024x2048)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--devices", help="default: cpu, and cuda when available")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per cell (median; default 3)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per cell before giving up")
    parser.add_argument("--quick", action="store_true", help="the demo arch on the whole grid, resnet101 at "
                        "512x1024 batch 1 (eager, onnxruntime) only")
    parser.add_argument("--table", action="store_true", help="print the stored results as Markdown and exit")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.cell:  # child process: one measurement, one JSON line
        cell = json.loads(args.cell)
        row = run_cell(cell["arch"], *cell["size"], cell["batch"], cell["backend"], cell["device"], args.runs,
                       args.onnx)
        print(json.dumps(row), flush=True)
        return 0
    if args.table:
        print(table(list(load_results()["cells"].values())))
        return 0

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available()
                                                                      else [])
    sizes, batches = parse_sizes(args.sizes), [int(b) for b in args.batches.split(",")]
    backends = args.backends.split(",")
    archs = args.archs.split(",") if args.archs else default_archs()
    cells = []
    for arch in archs:
        for device in devices:
            for size in sizes:
                for batch in batches:
                    for backend in backends:
                        if backend == "onnxruntime" and device != "cpu":
                            continue  # the installed onnxruntime has no CUDA provider
                        if args.quick and arch == "resnet101" and (size != (512, 1024) or batch != 1
                                                                   or backend == "compile"):
                            continue
                        cells.append({"arch": arch, "size": list(size), "batch": batch, "backend": backend,
                                      "device": device})
    results = load_results()
    results["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "torch": torch.__version__,
                          "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as folder:
        for cell in cells:
            onnx_path = None
            if cell["backend"] == "onnxruntime":
                start = time.perf_counter()
                onnx_path = export_for_bench(cell["arch"], Path(folder))
                results.setdefault("export_s", {}).setdefault(cell["arch"], time.perf_counter() - start)
            row = measure_in_subprocess(cell, args.runs, onnx_path, args.timeout)
            row["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            results["cells"][cell_key(row)] = row
            from dada.io import write_json

            write_json(RESULTS, results)
    print()
    print(table(rows))
    print(f"\nwritten: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
