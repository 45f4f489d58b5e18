"""Training runs end to end on tiny generated data: every preset, outputs, resume after SIGKILL, CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dada import DadaError
from dada.cli import main
from dada.config import SELECTION_POLICIES, list_presets, load_config, methods, split_preset
from dada.engine import Trainer
from dada.engine.checkpoint import iteration_checkpoints, load_checkpoint
from test_train_data import tiny_overrides

# tests count items and iterations with one source and one target image per iteration (the official
# batch), whatever a preset (e.g. the CPU-sized benchmark) chooses
FAST = ["method.ndf=8", "train.image_every=0", "train.log_every=1", "data.source.batch_size=1",
        "data.target.batch_size=1"]
ALIASES = {"source_only", "advent", "dada"}  # the same set-ups as s1, s2, s7 (checked in test_config)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train-data")
    tiny_overrides(folder, "tiny", "cityscapes")
    tiny_overrides(folder, "tiny", "mapillary")
    return folder


def overrides(data: Path, preset: str, run_root: Path, *extra: str) -> list[str]:
    target = "mapillary" if "mapillary" in preset else "cityscapes"
    return [*tiny_overrides(data, "tiny", target), *FAST, f"output.root={run_root}", *extra]


#: the paper's comparison systems run end to end in tests/test_methods_engine.py (one setting each)
COMPARISON = {"clan", "adaptpatch", "spigan", "spigan_nopi", "oracle"}
# self-training variants: tests of their own
VARIANTS = {"dacs_paper", "dast_class", "dast_nofusion", "dast_adv", "dast_corda"}


def _every_preset() -> list:
    """Every preset but the aliases and the comparison systems; the fast tier (``-m "not slow"``) keeps
    every method on the ``benchmark`` setting and S7 on every setting."""
    presets = [p for p in list_presets() if split_preset(p)[1] not in ALIASES | COMPARISON | VARIANTS
               and split_preset(p)[0] != "benchmark2camvid"]  # CamVid files: tests/test_camvid_eval.py
    return [pytest.param(p, marks=() if split_preset(p)[0] == "benchmark" or split_preset(p)[1] == "s7"
                         else pytest.mark.slow) for p in presets]


@pytest.mark.parametrize("preset", _every_preset())
def test_every_preset_runs_two_iterations(preset, data, tmp_path):
    cfg = load_config(preset, overrides(data, preset, tmp_path, "train.max_iters=2"))
    run = Trainer(cfg).fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [0, 1]
    adversarial = set(cfg.method.get("adversarial", []))  # the adversarial methods' key
    expected = {"seg_src"} | {f"adv_trg_{k}" for k in adversarial}
    assert expected <= set(train[0]["loss"]) and all(v == v for v in train[0]["loss"].values())
    final = load_checkpoint(run / "checkpoints" / "final.pt")
    extra = final["method"]["extra_modules"]
    discriminators = {k.split(".")[1] for k in extra if k.startswith("discriminators.")}
    assert final["iteration"] == 2 and discriminators == adversarial
    if cfg.method.name in ("dacs", "dast"):  # the EMA teacher travels in every checkpoint
        assert any(k.startswith("teacher.") for k in extra) and "self_training" in final["method"]
    assert final["model_spec"]["num_classes"] == cfg.model.num_classes


def test_run_folder_outputs_and_checkpoint_format(data, tmp_path):
    cfg = load_config("benchmark_dada", overrides(data, "x", tmp_path, "train.max_iters=6",
                                                  "train.checkpoint_every=2", "train.keep_last=2",
                                                  "train.image_every=3", "train.log_every=2",
                                                  "output.name=outputs"))
    run = Trainer(cfg).fit()
    assert run == tmp_path / "outputs"
    assert load_config(run / "config.yaml").train.max_iters == 6
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["final.pt", "iter_0000004.pt", "iter_0000006.pt"]
    final = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    assert final["format"] == "dada-seg/2" and final["iteration"] == 6
    assert set(final) >= {"config", "model_spec", "model", "method", "rng", "data", "selection"}
    assert set(final["method"]["optimizers"]) == {"segmenter", "discriminator"}
    assert final["method"]["optimizers"]["segmenter"]["param_groups"][0]["repeats"][:2] == [1, 3]
    assert final["selection"]["policy"] == "last" and final["data"] == {"source": 6, "target": 6}
    assert set(final["rng"]) >= {"python", "numpy", "torch"}
    assert final["config"]["preset"] == "benchmark_dada"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 3, 5]
    assert set(records[0]["lr"]) == {"seg_group0", "seg_group1", "discriminator"}
    assert records[-1]["kind"] == "final"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert {"loss/seg_src", "loss/depth_src", "loss/adv_trg_depth_aware", "lr/seg_group0",
            "time/seconds_per_iter"} <= set(tags["scalars"])
    assert {"source/prediction", "target/prediction", "target/self_information", "target/depth",
            "target/depth_aware"} <= set(tags["images"])
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["iterations"] == 6 and summary["selection"]["label"] == SELECTION_POLICIES["last"]
    from dada.models import load_segmenter

    model, info = load_segmenter(run)
    assert info["iteration"] == 6 and info["model_spec"]["arch"] == "tiny"
    assert all(torch.equal(v, final["model"][k]) for k, v in model.state_dict().items())


def test_rerunning_continues_and_a_changed_config_is_refused(data, tmp_path):
    args = overrides(data, "x", tmp_path, "train.checkpoint_every=2", "output.name=again")
    Trainer(load_config("benchmark_s4", [*args, "train.max_iters=4"])).fit()
    first = load_checkpoint(tmp_path / "again" / "checkpoints" / "final.pt")
    trainer = Trainer(load_config("benchmark_s4", [*args, "train.max_iters=4"]))
    trainer.fit()
    assert trainer.iteration == 4  # nothing left to do: loaded, not retrained
    again = load_checkpoint(tmp_path / "again" / "checkpoints" / "final.pt")
    assert all(torch.equal(first["model"][k], again["model"][k]) for k in first["model"])
    with pytest.raises(DadaError, match="different config.*train.lr"):
        Trainer(load_config("benchmark_s4", [*args, "train.max_iters=4", "train.lr=1e-3"])).fit()


def test_nan_stops_the_run_and_keeps_the_last_checkpoint(data, tmp_path):
    from dada.engine.data import build_part

    cfg = load_config("benchmark_dada", overrides(data, "x", tmp_path, "train.max_iters=6",
                                                  "train.checkpoint_every=2"))

    class PoisonedAfter:  # the 4th item read carries a NaN depth
        def __init__(self, dataset):
            self.dataset, self.reads = dataset, 0

        def __len__(self):
            return len(self.dataset)

        def __getitem__(self, index):
            item, self.reads = self.dataset[index], self.reads + 1
            if self.reads == 4:
                item["depth"][0, 0, 0] = float("nan")
            return item

    with pytest.raises(DadaError, match="iteration 3: non-finite loss.*depth_src"):
        Trainer(cfg).fit(datasets={"source": PoisonedAfter(build_part(cfg, "source"))})
    checkpoints = tmp_path / "benchmark_dada" / "checkpoints"
    assert [i for i, _ in iteration_checkpoints(checkpoints)] == [2]
    assert load_checkpoint(checkpoints / "iter_0000002.pt")["iteration"] == 2
    assert not (checkpoints / "final.pt").exists()


def test_source_fraction_subsets_the_source(data, tmp_path):
    from dada.engine.data import build_part

    cfg = load_config("benchmark_dada", overrides(data, "x", tmp_path, "data.source.fraction=0.5"))
    assert len(build_part(cfg, "source")) == 2


def _train_command(data: Path, runs: Path, name: str, preset: str = "benchmark_dada") -> list[str]:
    args = overrides(data, "x", runs, "train.max_iters=10", "train.checkpoint_every=1", "train.keep_last=2",
                     "train.deterministic=true", f"output.name={name}",
                     *(["method.ndf=16"] if preset.endswith("dada") else []))
    return [sys.executable, "-m", "dada.cli", "train", preset, *args]


def _run_until(command: list[str], path: Path, env: dict) -> None:
    """Start ``command`` and SIGKILL it as soon as ``path`` exists (mid-run)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("preset, optimizers", [("benchmark_dada", {"segmenter", "discriminator"}),
                                               ("benchmark_dast", {"segmenter"})])  # with its EMA teacher
def test_resume_after_sigkill_is_bit_identical(data, tmp_path, preset, optimizers):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(_train_command(data, tmp_path, "reference", preset), env=env, check=True,
                   capture_output=True)
    command = _train_command(data, tmp_path, "killed", preset)
    checkpoints = tmp_path / "killed" / "checkpoints"
    _run_until(command, checkpoints / "iter_0000003.pt", env)
    _run_until(command, checkpoints / "iter_0000007.pt", env)
    assert not (checkpoints / "final.pt").exists()  # both kills landed before the end
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reference = load_checkpoint(tmp_path / "reference" / "checkpoints" / "final.pt")
    resumed = load_checkpoint(checkpoints / "final.pt")
    assert resumed["iteration"] == reference["iteration"] == 10
    for part in ("model",):
        assert all(torch.equal(reference[part][k], resumed[part][k]) for k in reference[part])
    method, method_resumed = reference["method"], resumed["method"]
    state = method["extra_modules"]
    assert state and all(torch.equal(state[k], method_resumed["extra_modules"][k]) for k in state)
    assert set(method["optimizers"]) == optimizers
    if "self_training" in method:  # the teacher (in extra_modules above), its EMA step, the mixing streams
        assert any(k.startswith("teacher.") for k in state)
        assert method["self_training"]["ema_steps"] == method_resumed["self_training"]["ema_steps"] == 10
        streams, resumed_streams = (method["self_training"]["streams"],
                                    method_resumed["self_training"]["streams"])
        assert streams.keys() == resumed_streams.keys() and all(
            torch.equal(streams[k], resumed_streams[k]) for k in streams)
    for name, state in method["optimizers"].items():
        assert state["state"], name  # momentum buffers (SGD), moments (Adam)
        for index, buffers in state["state"].items():
            for key, value in buffers.items():
                resumed_value = method_resumed["optimizers"][name]["state"][index][key]
                assert torch.equal(value, resumed_value), (name, key)
    lines = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["loss"] for r in lines("killed") if r["kind"] == "train"] == \
           [r["loss"] for r in lines("reference") if r["kind"] == "train"]


def test_cli_train_resume_list_and_errors(data, tmp_path, capsys):
    args = overrides(data, "x", tmp_path, "train.max_iters=2", "output.name=cli")
    assert main(["train", "benchmark_s5", *args]) == 0
    assert (tmp_path / "cli" / "checkpoints" / "final.pt").exists()
    assert main(["train", "--resume", str(tmp_path / "cli"), "train.device=cpu"]) == 0
    assert main(["train", "--list"]) == 0
    assert "synthia2mapillary7_320_s6" in capsys.readouterr().out
    assert main(["train", "benchmark_s5", "train.max_iterz=3"]) == 2
    assert "train.max_iters" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert main(["train", "benchmark_dada", "data.source.root=null", "data.num_workers=0",
                 f"output.root={tmp_path}"]) == 2
    assert "data.source.root" in capsys.readouterr().err
    # S1–S7, 3 aliases, MinEnt, AdaptSegNet, 5 comparison presets, 6 self-training (dacs, dast and its
    # ladder: dast_class, dast_nofusion, dast_adv, dast_corda)
    assert len(methods()) == 23


def test_presets_with_unverified_constants_say_so(tmp_path, capsys):
    assert main(["train", "--list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["benchmark_adaptpatch"].endswith("K, λ_d, λ_adv and the patch grid not verified against the "
                                                  "paper (docs/methods.md)")
    for preset in ("benchmark_spigan", "synthia2cityscapes_spigan_nopi"):
        assert "α–δ not verified against the paper" in lines[preset]
    assert lines["benchmark_dada"] == "benchmark_dada" and lines["benchmark_clan"] == "benchmark_clan"
    # a run of such a preset says it when it starts (here one that then stops at its unknown device)
    assert main(["train", "benchmark_spigan", "train.device=nonsense", f"output.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "note: benchmark_spigan: α–δ not verified" in err and "train.device" in err


def test_best_on_val_selects_on_the_validation_set_and_says_so(data, tmp_path):
    cfg = load_config("benchmark_s2", overrides(data, "x", tmp_path, "train.max_iters=4", "eval.every=2",
                                                "eval.selection=best-on-val", "train.checkpoint_every=2",
                                                "train.keep_last=1", "train.lr=0.02"))
    run = Trainer(cfg).fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert [r["iteration"] for r in evaluations] == [1, 3]
    best = max(evaluations, key=lambda r: r["miou"])
    final = load_checkpoint(run / "checkpoints" / "final.pt")
    assert final["selection"]["policy"] == "best-on-val" and final["iteration"] == best["iteration"] + 1
    assert final["selection"]["best_miou"] == pytest.approx(best["miou"])
    assert "selects on the evaluation set" in final["selection"]["label"]
    chosen = load_checkpoint(run / "checkpoints" / "best.pt")
    assert all(torch.equal(chosen["model"][k], final["model"][k]) for k in final["model"])
    assert [p.name for p in sorted((run / "checkpoints").glob("iter_*"))] == ["iter_0000004.pt"]


def test_seeds_make_sibling_runs_and_a_summary(data, tmp_path, capsys):
    args = overrides(data, "x", tmp_path, "train.max_iters=2", "output.name=seeds")
    assert main(["train", "benchmark_s1", *args, "--seeds", "0,1"]) == 0
    assert "±" in capsys.readouterr().out
    summary = json.loads((tmp_path / "seeds" / "seeds_summary.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [0, 1] and summary["selection"] == "last"
    mious = [r["miou"] for r in summary["runs"]]
    assert summary["miou_mean"] == pytest.approx(sum(mious) / 2)
    assert summary["miou_std"] == pytest.approx(abs(mious[0] - mious[1]) / 2 ** 0.5)
    first, second = (load_checkpoint(tmp_path / "seeds" / f"seed_{s}" / "checkpoints" / "final.pt")
                     for s in (0, 1))
    assert first["config"]["seed"] == 0 and second["config"]["seed"] == 1
    assert not torch.equal(first["model"]["backbone.conv1.weight"], second["model"]["backbone.conv1.weight"])
    assert (tmp_path / "seeds" / "seeds_summary.md").read_text().count("|") > 8
    assert main(["train", "benchmark_s1", *args, "--seeds", "0,x"]) == 2


def test_benchmark_presets_read_the_built_in_benchmark(tmp_path):
    small = ["data.benchmark.num_source=4", "data.benchmark.num_target_train=4",
             "data.benchmark.num_target_val=2", "data.benchmark.size=[32,64]",
             f"data.benchmark.cache_dir={tmp_path / 'cache'}"]
    cfg = load_config("benchmark_dada", [*small, *FAST, "model.arch=tiny", "train.max_iters=2",
                                         "eval.every=2", "train.progress=false", "train.device=cpu",
                                         f"output.root={tmp_path / 'runs'}"])
    run = Trainer(cfg).fit()
    generated = list((tmp_path / "cache").glob("benchmark-*/source/RGB/*.png"))
    assert len(generated) == 4
    evaluations = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert len(evaluations) == 1 and 0.0 <= evaluations[0]["miou"] <= 1.0


def test_dacs_with_daformer_rare_class_sampling_trains_through_the_engine(data, tmp_path):
    cfg = load_config("benchmark_dacs", overrides(data, "x", tmp_path, "train.max_iters=2",
                                                   "method.rcs_temperature=0.01", "method.rcs_min_pixels=1",
                                                   "method.warmup_iters=2"))
    run = Trainer(cfg).fit()
    assert (run / "rcs_stats.json").is_file() and (run / "checkpoints" / "final.pt").is_file()
