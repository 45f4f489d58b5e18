"""The GPU session's scripts, on what a CPU can check: the batch shapes each preset trains on, the
profiler script on a small step, the parity script's refusal without CUDA, the generator's worker count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_selftraining import batch_size_of  # noqa: E402
from dada.benchmark.cache import default_workers  # noqa: E402
from dada.config import load_config  # noqa: E402


@pytest.mark.parametrize("preset,source,target", [
    ("synthia2cityscapes_dada", (760, 1280), (512, 1024)),  # DADA: full images, resized
    ("synthia2cityscapes_dacs", (512, 512), (512, 512)),  # DACS's recipe: random crops
    ("benchmark_v2_7_dacs", (256, 512), (256, 512)),  # the built-in benchmark: its own image size
    ("benchmark_lite0_s7", (128, 256), (128, 256)),
])
def test_batch_shapes_are_the_presets(preset, source, target):
    cfg = load_config(preset, ["model.pretrained=null"])
    assert batch_size_of(cfg, "source") == source
    assert batch_size_of(cfg, "target") == target


def test_batch_shape_of_an_unsized_folder_is_an_error():
    cfg = load_config("synthia2cityscapes_dada", ["model.pretrained=null", "data.source.size=null",
                                                  "data.source.root=/data/synthia"])
    with pytest.raises(SystemExit, match="data.source.size"):
        batch_size_of(cfg, "source")


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_profile_step_reports_where_the_time_goes(tmp_path):
    out = tmp_path / "profile.json"
    done = run_script("benchmarks/profile_step.py", "--preset", "benchmark_dada", "--steps", "1",
                      "--warmup", "1", "--top", "5", "--out", str(out), "model.arch=tiny")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and len(result["top"]) == 5
    assert result["busy_ms"] > 0 and result["wall_ms"] > 0
    assert any("conv" in row["op"] for row in result["top"])  # a conv net spends its time in convolutions
    shares = [row["self_ms_per_step"] for row in result["top"]]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= result["busy_ms"] * 1.001
    assert "ms/step" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
def test_cuda_parity_says_it_needs_a_gpu():
    done = run_script("benchmarks/cuda_parity.py", "--methods", "dada")
    assert done.returncode != 0 and "no CUDA device" in done.stderr


@pytest.mark.parametrize("cpus,workers", [(1, 1), (2, 2), (16, 8)])
def test_generator_workers_default_to_the_usable_cpus_at_most_8(monkeypatch, cpus, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_workers() == workers
