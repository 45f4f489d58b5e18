"""Data-parallel training: the distributed, resumable sampler, loader settings, the launcher's checks."""

import itertools
import json

import pytest
import torch
from omegaconf import OmegaConf

from dada import DadaError
from dada.config import load_config
from dada.engine import distributed
from dada.engine.data import ResumableSampler, loader_options


def take(sampler, count):
    return list(itertools.islice(iter(sampler), count))


@pytest.mark.parametrize("world,batch", [(2, 1), (3, 2)])
def test_ranks_read_disjoint_blocks_that_make_up_the_single_process_order(world, batch):
    length, iterations = 7, 9  # epochs do not divide into global batches: blocks straddle epochs
    single = take(ResumableSampler(length, 5, 0, batch_size=world * batch), iterations * world * batch)
    ranks = [take(ResumableSampler(length, 5, 0, rank=r, world_size=world, batch_size=batch),
                  iterations * batch) for r in range(world)]
    for k in range(iterations):  # iteration k: rank r holds the r-th block of the global batch
        global_batch = single[k * world * batch:(k + 1) * world * batch]
        assert sum((ranks[r][k * batch:(k + 1) * batch] for r in range(world)), []) == global_batch
    assert take(ResumableSampler(length, 5, 0, world_size=1), 20) == \
        take(ResumableSampler(length, 5, 0), 20)  # one process: the sampler of before


def test_resuming_a_rank_at_the_consumed_count_continues_its_stream():
    world, batch, done = 2, 2, 3  # 3 iterations consumed: 3·2·2 = 12 items over all ranks
    for rank in range(world):
        full = take(ResumableSampler(5, 1, 1, rank=rank, world_size=world, batch_size=batch), 20)
        resumed = take(ResumableSampler(5, 1, 1, done * world * batch, rank=rank, world_size=world,
                                        batch_size=batch), 20 - done * batch)
        assert resumed == full[done * batch:]
    with pytest.raises(ValueError, match="global batches"):
        ResumableSampler(5, 1, 1, 3, rank=0, world_size=2, batch_size=1)
    with pytest.raises(ValueError, match="outside world size"):
        ResumableSampler(5, 1, 1, rank=2, world_size=2)
    other_seed = take(ResumableSampler(50, 2, 1, rank=1, world_size=2), 10)
    assert other_seed != take(ResumableSampler(50, 1, 1, rank=1, world_size=2), 10)


def test_loader_settings_come_from_the_config():
    cfg = load_config("benchmark_dada", ["data.num_workers=3", "data.prefetch_factor=4",
                                         "data.persistent_workers=false", "data.pin_memory=true"])
    assert loader_options(cfg, torch.device("cpu")) == {"num_workers": 3, "pin_memory": True,
                                                        "prefetch_factor": 4, "persistent_workers": False}
    cfg = load_config("benchmark_dada", ["data.num_workers=0"])
    assert loader_options(cfg, torch.device("cuda")) == {"num_workers": 0, "pin_memory": True}
    assert loader_options(cfg, torch.device("cpu"))["pin_memory"] is False
    with pytest.raises(DadaError, match="data.prefetch_factor"):
        loader_options(load_config("benchmark_dada", ["data.num_workers=1", "data.prefetch_factor=0"]),
                       torch.device("cpu"))
    with pytest.raises(DadaError, match="train.precision"):
        load_config("benchmark_dada", ["train.precision=fp8"])


def test_environment_and_world_size_checks(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, device = distributed.setup(torch.device("cpu"))
    assert info == distributed.SINGLE and info.is_main and not info.enabled and device.type == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(DadaError, match="RANK=2 / WORLD_SIZE=2"):
        distributed.setup(torch.device("cpu"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(DadaError, match="MASTER_ADDR is not set"):
        distributed.setup(torch.device("cpu"))
    distributed.check_world_size(2, distributed.Dist(1, 2), "run r")
    distributed.check_world_size(None, distributed.SINGLE, "run r")  # checkpoints from before: 1 process
    with pytest.raises(DadaError,
                       match=r"run r was trained with 2 process\(es\) but this run has 1.*--nproc 2"):
        distributed.check_world_size(2, distributed.SINGLE, "run r")
    with pytest.raises(DadaError, match="sync_bn"):
        distributed.convert_sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"))
    assert OmegaConf.select(load_config("benchmark_dada"), "model.sync_bn") is False


# ------------------------------------------------------------------------ two gloo processes, end to end
RUN = ["train.max_iters=3", "train.checkpoint_every=1", "train.keep_last=3", "train.deterministic=true",
       "model.bn_mode=frozen", "train.lr=0.0025", "method.ndf=8", "train.log_every=1",
       "train.image_every=0"]


def run_args(data, runs, name, batch=1):
    from test_train_data import tiny_overrides

    return ["benchmark_advent", *tiny_overrides(data, "tiny"), *RUN, f"output.root={runs}",
            f"output.name={name}", f"data.source.batch_size={batch}", f"data.target.batch_size={batch}"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """A 3-iteration AdvEnt run of two CPU processes (``dada train --nproc 2``: torchrun, gloo)."""
    from dada.cli import main

    data, runs = tmp_path_factory.mktemp("dist-data"), tmp_path_factory.mktemp("dist-runs")
    assert main(["train", "--nproc", "2", *run_args(data, runs, "reference")]) == 0
    return data, runs


@pytest.mark.slow
def test_two_processes_with_one_image_each_equal_one_process_with_both(two_ranks, tmp_path):
    from dada.engine import Trainer
    from dada.engine.checkpoint import load_checkpoint

    data, runs = two_ranks
    two = load_checkpoint(runs / "reference" / "checkpoints" / "iter_0000002.pt")
    assert two["world_size"] == 2 and two["data"] == {"source": 4, "target": 4} and len(two["rng_ranks"]) == 2
    one = Trainer(load_config("benchmark_advent", run_args(data, tmp_path, "one", batch=2)[1:]))
    initial = {k: v.clone() for k, v in one.model.state_dict().items()}
    one.fit()
    final = load_checkpoint(tmp_path / "one" / "checkpoints" / "iter_0000002.pt")  # the same poly LRs
    assert final["data"] == {"source": 4, "target": 4}
    moved = max((final["model"][k].float() - initial[k].float()).abs().max().item() for k in initial)
    assert moved > 1e-4  # the weights did change: the comparison below is not trivially true
    for key, value in final["model"].items():
        torch.testing.assert_close(two["model"][key], value, atol=1e-6, rtol=0)
    discriminators = final["method"]["extra_modules"]
    assert any(key.startswith("discriminators.") for key in discriminators)
    for key, value in discriminators.items():
        torch.testing.assert_close(two["method"]["extra_modules"][key], value, atol=1e-6, rtol=0)
    with pytest.raises(DadaError, match=r"trained with 2 process\(es\) but this run has 1"):
        Trainer(load_config("benchmark_advent", run_args(data, runs, "reference")[1:])).fit()


def _spawn_ranks(args, port, env):
    import subprocess
    import sys

    return [subprocess.Popen([sys.executable, "-m", "dada", "train", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True,
                             env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                  "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
            for r in range(2)]


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_run_killed_and_resumed_ends_bit_identical(two_ranks):
    import os
    import signal
    import time

    from dada.engine.checkpoint import load_checkpoint

    data, runs = two_ranks
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = run_args(data, runs, "killed")
    checkpoints = runs / "killed" / "checkpoints"
    processes = _spawn_ranks(args, _free_port(), env)  # env://, as torchrun starts them
    deadline = time.monotonic() + 120
    while not (checkpoints / "iter_0000001.pt").exists():
        assert all(p.poll() is None for p in processes), [p.stderr.read().decode() for p in processes]
        assert time.monotonic() < deadline
        time.sleep(0.002)
    for process in processes:  # the whole machine goes down: both ranks at once
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (checkpoints / "final.pt").exists()
    processes = _spawn_ranks(args, _free_port(), env)
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
    reference = load_checkpoint(runs / "reference" / "checkpoints" / "final.pt")
    resumed = load_checkpoint(checkpoints / "final.pt")
    assert resumed["iteration"] == reference["iteration"] == 3
    assert all(torch.equal(reference["model"][k], resumed["model"][k]) for k in reference["model"])
    extra = reference["method"]["extra_modules"]
    assert all(torch.equal(extra[k], resumed["method"]["extra_modules"][k]) for k in extra)
    for name, state in reference["method"]["optimizers"].items():
        for index, buffers in state["state"].items():
            for key, value in buffers.items():
                expected = resumed["method"]["optimizers"][name]["state"][index][key]
                assert torch.equal(value, expected), (name, key)
    lines = lambda run: [json.loads(x)["loss"]  # noqa: E731
                         for x in (runs / run / "metrics.jsonl").read_text().splitlines()
                         if '"train"' in x]
    assert lines("killed") == lines("reference") and len(lines("reference")) == 3
