"""Issue 28: never destroy, mix up or silently substitute a user's results (each test reproduces one
failure seen before the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dada import DadaError, cli


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DADA_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------ 1: validate before deleting
def _previous_demo(root: Path) -> Path:
    out = root / "demo"
    (out / "seed0" / "S1_s1").mkdir(parents=True)
    (out / "demo.txt").write_text("dada demo output folder; safe to delete\n")
    (out / "seed0" / "S1_s1" / "results.json").write_text("{}")
    return out


@pytest.mark.parametrize("extra", [["train.max_iterz=5"], ["--jobs", "0"], ["--device", "nonsense"],
                                   ["--seeds", "0"], ["seed=-1"]])
def test_demo_overwrite_with_a_bad_argument_keeps_the_previous_demo(tmp_path, extra, capsys):
    out = _previous_demo(tmp_path)
    assert cli.main(["demo", "--quick", "--overwrite", "--out", str(out), *extra]) == 2
    assert "error" in capsys.readouterr().err
    assert (out / "seed0" / "S1_s1" / "results.json").is_file()


def test_overwrite_never_replaces_the_working_folder_or_its_parents(tmp_path, monkeypatch, capsys):
    work = _previous_demo(tmp_path)
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path)):
        assert cli.main(["demo", "--quick", "--overwrite", "--out", target]) == 2
        assert "working folder" in capsys.readouterr().err
    assert (work / "seed0" / "S1_s1" / "results.json").is_file()
    (work / "bench").mkdir()
    monkeypatch.chdir(work / "bench")
    assert cli.main(["make-benchmark", str(work), "--force", "--num-source", "10"]) == 2
    assert (work / "seed0" / "S1_s1" / "results.json").is_file()


def test_a_failing_demo_overwrite_puts_the_previous_folder_back(tmp_path, monkeypatch):
    import dada.demo as demo

    out = _previous_demo(tmp_path)

    def fail(*args, **kwargs):
        assert not (out / "seed0" / "S1_s1" / "results.json").exists()  # moved aside, not deleted
        (out / "partial").mkdir(parents=True)
        raise DadaError("simulated failure")

    monkeypatch.setattr(demo, "_run_demo", fail)
    with pytest.raises(DadaError, match="simulated"):
        demo.run_demo(out, quick=True, overwrite=True)
    assert (out / "seed0" / "S1_s1" / "results.json").is_file() and not (out / "partial").exists()
    assert not list(tmp_path.glob(".demo.replaced-*"))


# --------------------------------------------------------------- 3: intermediate results named, stale flagged
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny run trained to the end (final.pt and two iter_*.pt snapshots)."""
    from dada.config import load_config
    from dada.engine import Trainer
    from test_reliability import FAST
    from test_train_data import tiny_overrides

    data = tmp_path_factory.mktemp("rel2-data")
    cfg = load_config("benchmark_dada", [*tiny_overrides(data, "tiny", "cityscapes"), *FAST,
                                         f"output.root={data / 'runs'}", "output.name=run",
                                         "train.max_iters=4", "train.checkpoint_every=2"])
    return Trainer(cfg).fit()


def _unfinished_copy(run: Path, where: Path) -> tuple[Path, Path]:
    """A copy of ``run`` as it was before its end: no final.pt (returned, kept aside)."""
    import shutil

    copy = where / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("results.*", "report.html", "figures"))
    aside = where / "final.pt"
    (copy / "checkpoints" / "final.pt").rename(aside)
    return copy, aside


def test_an_unfinished_run_is_named_recorded_and_its_results_flagged_stale(finished_run, tmp_path, capsys):
    import json

    from dada.evaluation.reports import load_results

    run, final = _unfinished_copy(finished_run, tmp_path)
    assert cli.main(["eval", str(run), "--figures", "0", "--no-source-depth"]) == 0
    err = capsys.readouterr().err
    assert "intermediate snapshot iter_0000004.pt (iteration 4 of 4)" in err and "unfinished" in err
    snapshot = json.loads((run / "results.json").read_text())["model"]["snapshot"]
    assert snapshot["intermediate"] and snapshot["run_finished"] is False and snapshot["iteration"] == 4
    assert "intermediate snapshot" in (run / "results.md").read_text()
    assert load_results(run)["stale"] is None

    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((16, 32, 3), 90, np.uint8))
    assert cli.main(["predict", str(run), str(image.parent), "--out", str(tmp_path / "pred")]) == 0
    assert "intermediate snapshot iter_0000004.pt" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "pred" / "predict.json").read_text())
    assert manifest["snapshot"]["intermediate"] and manifest["inputs"][0]["name"] == "a"

    final.rename(run / "checkpoints" / "final.pt")  # the run finishes
    assert "before the run finished" in load_results(run)["stale"]
    assert cli.main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr()
    assert "STALE" in out.err and "STALE" in (tmp_path / "cmp" / "comparison.md").read_text()
    # eval no longer refuses: the stale results are replaced (said so), and the new ones are final
    assert cli.main(["eval", str(run), "--figures", "0", "--no-source-depth"]) == 0
    assert "replacing" in capsys.readouterr().err
    results = load_results(run)
    assert results["stale"] is None and results["model"]["snapshot"]["file"] == "final.pt"
    # a fresh result is not stale, and eval still refuses to replace it without --overwrite
    assert cli.main(["eval", str(run), "--figures", "0", "--no-source-depth"]) == 2


# ------------------------------------------------------------------ 2: outputs never collide
def test_predict_gives_every_input_its_own_outputs(tmp_path):
    import cv2
    import numpy as np

    from conftest import save_tiny_checkpoint
    from dada.deploy.predict import predict_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path, (16, 32))
    images = tmp_path / "in"
    (images / "x").mkdir(parents=True)
    names = ["a.png", "a.jpg", "a_2.png", "A.png", "x__y.png", "x/y.png"]
    for k, name in enumerate(names):
        cv2.imwrite(str(images / name), np.full((16, 32, 3), 20 * k, np.uint8))
    result = predict_checkpoint(checkpoint, [images, images / "a.png"], tmp_path / "out", progress=False)
    assert result["images"] == len(names) + 1  # a.png given twice: two outputs, as asked
    outputs = [p for p in (tmp_path / "out").iterdir() if p.suffix == ".png"]
    assert len(outputs) == 3 * (len(names) + 1)  # seg, overlay, depth for every input, none overwritten
    assert len({name.casefold() for _, name in result["names"]}) == len(names) + 1


# ------------------------------------------------------------------ 5: config files and overrides
def test_a_yaml_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    from dada.config import load_config

    path = tmp_path / "run.yaml"
    path.write_text("preset: benchmark_lite0_s1\ntrain:\n  max_iters: 2\n  lr: 0.001\n  max_iters: 1200\n")
    with pytest.raises(DadaError, match=r"'max_iters' is given twice \(lines 3 and 5\)"):
        load_config(path)
    path.write_text("preset: benchmark_lite0_s1\nbase: &b {max_iters: 2}\n")  # a shared alias is fine
    with pytest.raises(DadaError, match="unknown key 'base'"):
        load_config(path)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    import time

    from dada.config import load_config

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, 10)]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\ntrain: {max_iters: *a9}\n")
    start = time.perf_counter()
    with pytest.raises(DadaError, match="aliases expand to more than"):
        load_config(path)
    assert time.perf_counter() - start < 5
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(DadaError, match="refers to the value that contains it"):
        load_config(path)


def test_overrides_are_accepted_after_options(tmp_path, monkeypatch):
    import dada.demo

    seen = {}
    monkeypatch.setattr(dada.demo, "run_demo", lambda out, **kw: seen.update(kw))
    assert cli.main(["demo", "--quick", "train.max_iters=3", "--jobs", "1", "eval.every=0"]) == 0
    assert seen["extra_overrides"] == ["train.max_iters=3", "eval.every=0"] and seen["jobs"] == 1
    with pytest.raises(SystemExit):  # a stray word that is not key=value is still refused
        cli.main(["demo", "--quick", "train.max_iters=3", "--jobs", "1", "oops"])


# ------------------------------------------------------------------ 7: option values
@pytest.mark.parametrize("argv, option", [
    (["eval", "RUN", "--max-images", "0"], "--max-images"),
    (["eval", "RUN", "--max-images", "-3"], "--max-images"),
    (["eval", "RUN", "--figures", "-1"], "--figures"),
    (["eval", "RUN", "--depth-bins", "nan,30"], "--depth-bins"),
    (["eval", "RUN", "--depth-bins=-5,30"], "--depth-bins"),
    (["eval", "RUN", "--depth-bins", "30,10"], "--depth-bins"),
    (["eval", "RUN", "--batch-size", "0"], "--batch-size"),
    (["eval", "RUN", "--seed", "-1"], "--seed"),
    (["eval", "RUN", "--size", "0,10"], "--size"),
    (["eval", "RUN", "--size", "nan,10"], "--size"),
    (["predict", "RUN", "x.png", "--out", "o", "--size=-4,8"], "--size"),
    (["predict", "RUN", "x.png", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["export", "RUN", "--out", "m.onnx", "--opset", "99"], "--opset"),
    (["export", "RUN", "--out", "m.onnx", "--opset", "0"], "--opset"),
    (["export", "RUN", "--out", "m.onnx", "--size", "0,0"], "--size"),
    (["train", "benchmark_lite0_s1", "--seeds", "0,-1"], "--seeds"),
    (["train", "benchmark_lite0_s1", "--seeds", "4294967296"], "--seeds"),
    (["train", "benchmark_lite0_s1", "seed=-2"], "seed"),
    (["train", "benchmark_lite0_s1", "eval.max_images=0"], "eval.max_images"),
    (["train", "benchmark_lite0_s1", "output.name=../../x"], "output.name"),
    (["train", "benchmark_lite0_s1", "output.name=/tmp/x"], "output.name"),
    (["train", "benchmark_lite0_s1", "--nproc", "0"], "--nproc"),
    (["demo", "--seeds", "0"], "--seeds"),
    (["doctor", "folder", "ROOT", "--samples", "0"], "--samples"),
    (["make-benchmark", "OUT", "--seed", "-1"], "--seed"),
])
def test_every_option_value_is_checked_up_front_naming_the_option(tmp_path, monkeypatch, capsys, argv,
                                                                  option):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_closed_stdout_is_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(f"{sys.executable} -m dada train --list >&-", shell=True, capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr


# ----------------------------------------------------------- 8: an evaluation is replaced whole or not at all
def test_a_failed_or_killed_eval_overwrite_never_mixes_old_and_new(finished_run, tmp_path, monkeypatch):
    import json
    import shutil

    import dada.evaluation.pipeline as pipeline
    import dada.evaluation.report_html as report_html
    from dada.evaluation.reports import load_results

    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("results.*", "report.html", "figures"))
    assert cli.main(["eval", str(run), "--no-source-depth", "--figures", "2", "--seed", "0"]) == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()
              and "checkpoints" not in p.parts}
    old_figures = set(json.loads((run / "results.json").read_text())["figures"].values())

    def broken_report(*args, **kwargs):  # the report fails after the figures were drawn
        raise DadaError("simulated failure while writing the report")

    monkeypatch.setattr(report_html, "write_eval_report", lambda *a, **k: broken_report())
    assert cli.main(["eval", str(run), "--no-source-depth", "--figures", "2", "--seed", "1",
                     "--overwrite"]) == 2
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()
             and "checkpoints" not in p.parts}
    assert after == before  # the previous evaluation, untouched; no staging folder left
    monkeypatch.undo()

    # a kill in the middle of the swap: the folder reads as not evaluated, never as old results + new figures
    def killed(staging, out_dir, previous):
        (out_dir / "results.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "commit_evaluation", killed)
    assert cli.main(["eval", str(run), "--no-source-depth", "--figures", "2", "--seed", "1",
                     "--overwrite"]) == 130
    with pytest.raises(DadaError, match="no results.json"):
        load_results(run)
    assert not list(run.glob(".eval-tmp-*"))
    monkeypatch.undo()
    assert cli.main(["eval", str(run), "--no-source-depth", "--figures", "2", "--seed", "1"]) == 0
    new_figures = set(json.loads((run / "results.json").read_text())["figures"].values())
    assert all((run / f).is_file() for f in new_figures)
    assert not any((run / f).exists() for f in old_figures - new_figures)

    (run / "results.md").unlink()  # a report lost afterwards: the evaluation is incomplete, not accepted
    with pytest.raises(DadaError, match="incomplete evaluation"):
        load_results(run)


# ------------------------------------------------------------ 4: comparisons refuse or separate unlike things
def test_compare_separates_evaluation_sets_and_refuses_the_same_run_twice(finished_run, tmp_path, capsys):
    import json
    import shutil

    from dada.evaluation.compare import compare_runs

    common = ["--no-source-depth", "--figures", "0"]
    all_images, one_image = tmp_path / "all", tmp_path / "one"
    assert cli.main(["eval", str(finished_run), "--out", str(all_images), *common]) == 0
    assert cli.main(["eval", str(finished_run), "--out", str(one_image), "--max-images", "1", *common]) == 0
    fingerprints = {json.loads((d / "results.json").read_text())["dataset"]["fingerprint"]
                    for d in (all_images, one_image)}
    assert len(fingerprints) == 2
    summary = compare_runs([all_images, one_image])
    assert len(summary["groups"]) == 2 and all(len(g["runs"]) == 1 for g in summary["groups"])
    assert "## Evaluation sets" in summary["markdown"]

    with pytest.raises(DadaError, match="given twice"):
        compare_runs([all_images, all_images / "results.json"])
    copy = tmp_path / "copy"
    shutil.copytree(all_images, copy)
    with pytest.raises(DadaError, match="same seed"):
        compare_runs([all_images, copy])
    with pytest.raises(DadaError, match="cannot be paired"):
        compare_runs([all_images], baseline=[one_image])


# -------------------------------------------------------------- 9: distributed variables set by hand, no peer
@pytest.mark.parametrize("rank", [0, 1])
def test_distributed_variables_without_a_peer_fail_quickly_with_a_message(monkeypatch, rank):
    import socket
    import time

    import torch

    from dada.engine import distributed

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key, value in {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(distributed, "RENDEZVOUS_SECONDS", 3.0)
    start = time.perf_counter()
    with pytest.raises(DadaError, match="within 3 s"):
        distributed.setup(torch.device("cpu"))
    assert time.perf_counter() - start < 30


# ------------------------------------------------------------------ 12: half precision without native support
def test_bf16_on_a_cpu_without_native_support_is_warned_loudly(monkeypatch, capsys):
    import dada.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: {"sse4_2", "avx2", "fma"})  # an AVX2-only EPYC
    assert devices.native_precision("cpu", "bf16")[0] is False
    assert devices.check_precision("cpu", "bf16") is False
    err = capsys.readouterr().err
    assert "WARNING: train.precision=bf16" in err and "no native bf16" in err
    assert devices.check_precision("cpu", "fp32") and capsys.readouterr().err == ""
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512_bf16", "amx_bf16"})  # Sapphire Rapids
    assert devices.check_precision("cpu", "bf16") and capsys.readouterr().err == ""
    assert devices.native_precision("cpu", "fp16")[0] is False


def test_bf16_on_a_gpu_before_ampere_is_warned(monkeypatch):
    import torch

    import dada.devices as devices

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    native, basis = devices.native_precision(torch.device("cuda", 0), "bf16")
    assert native is False and "Tesla T4" in basis and "7.5" in basis
    assert devices.native_precision(torch.device("cuda", 0), "fp16")[0] is True
