"""Data-parallel training: the distributed, resumable sampler, loader settings, the launcher's checks."""

import itertools

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
    with pytest.raises(DadaError, match=r"run r was trained with 2 process\(es\) but this run has 1.*--nproc 2"):
        distributed.check_world_size(2, distributed.SINGLE, "run r")
    with pytest.raises(DadaError, match="sync_bn"):
        distributed.convert_sync_batchnorm(torch.nn.BatchNorm2d(3), torch.device("cpu"))
    assert OmegaConf.select(load_config("benchmark_dada"), "model.sync_bn") is False
