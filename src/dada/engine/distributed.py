"""Data-parallel training over processes: ``torchrun`` (or ``dada train --nproc N``) starts one process per
device; each reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from its
environment (``env://``) and joins one process group: ``gloo`` on CPU, ``nccl`` on CUDA.

What each rank does (the engine calls these):

* :func:`setup` joins the group and picks the rank's device (``cuda:LOCAL_RANK`` on GPUs);
  :func:`teardown` leaves it.
* :func:`broadcast_module` makes every rank start from rank 0's weights and buffers.
* :func:`all_reduce_gradients` averages the gradients of every trained module over the ranks, once per
  iteration after all backward passes and before any optimizer step: the update is the one of a single
  process whose loss is the mean of the ranks' losses (each rank's batch is its own images).
* BN layers keep per-rank batch statistics (as the official batch of 1 does); their running statistics
  are rank 0's in checkpoints. ``model.sync_bn=true`` converts them to ``SyncBatchNorm`` (CUDA only).
* Only rank 0 writes (logs, TensorBoard, checkpoints, summaries): :attr:`Dist.is_main`.
* A run may only be resumed at the world size it was trained with: :func:`check_world_size`.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dada.errors import DadaError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Gradients are all-reduced in flat buckets of at most this many bytes (fewer, larger messages).
BUCKET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = Dist()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DadaError(f"environment variable {name}={value!r} is not an integer; torchrun sets it, "
                        f"do not set it by hand") from None


def from_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as torchrun sets them; ``(0, 1, 0)`` outside torchrun."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise DadaError(f"RANK={rank} / WORLD_SIZE={world} from the environment are inconsistent "
                        f"(0 <= RANK < WORLD_SIZE): start the processes with torchrun or dada train --nproc")
    return rank, world, local_rank


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group described by the environment; returns this rank's place and device.

    Outside torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) nothing is initialised and ``device`` is
    returned unchanged. On CUDA each rank takes ``cuda:LOCAL_RANK`` (``train.device=cuda`` or ``auto``).
    """
    rank, world, local_rank = from_env()
    if world == 1:
        return SINGLE, device
    if dist.is_initialized():  # a caller (a test, a notebook) set the group up itself
        if dist.get_world_size() != world:
            raise DadaError(f"the initialised process group has {dist.get_world_size()} ranks but "
                            f"WORLD_SIZE={world}")
        return Dist(dist.get_rank(), world, local_rank, dist.get_backend()), _rank_device(device, local_rank)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise DadaError(f"WORLD_SIZE={world} but {key} is not set: start the processes with torchrun "
                            f"(it sets the rendezvous) or with dada train --nproc N")
    device = _rank_device(device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
    timeout = datetime.timedelta(minutes=30)
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # torchrun (or dada train --nproc): its agent has the peers
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=timeout,
                                **kwargs)
    else:  # variables set by hand: meet the peers within RENDEZVOUS_SECONDS or say why not
        store = rendezvous(rank, world)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout, **kwargs)
    return Dist(rank, world, local_rank, backend), device


#: How long processes started by hand (RANK/WORLD_SIZE/MASTER_* set without torchrun) wait for each other.
RENDEZVOUS_SECONDS = 60.0


def rendezvous(rank: int, world: int) -> dist.Store:
    """The TCP store of a process group whose environment was set by hand: rank 0 serves it at MASTER_ADDR:
    MASTER_PORT and waits for the other ranks; each fails after :data:`RENDEZVOUS_SECONDS` with a message
    (instead of torch's silent 30-minute default)."""
    address, port = os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 0)
    wait = datetime.timedelta(seconds=RENDEZVOUS_SECONDS)
    try:
        store = dist.TCPStore(address, port, world, is_master=rank == 0, timeout=wait,
                              wait_for_workers=True)
    except (RuntimeError, OSError, ValueError) as error:  # TimeoutError/DistStoreError are RuntimeErrors
        who = (f"the other {world - 1} process(es) of WORLD_SIZE={world} did not join"
               if rank == 0 else f"no rank 0 answered at MASTER_ADDR={address} MASTER_PORT={port}")
        raise DadaError(f"rank {rank}: {who} within {RENDEZVOUS_SECONDS:g} s "
                        f"({str(error).splitlines()[0][:160]}); "
                        f"start every process (dada train --nproc N or torchrun does), or unset WORLD_SIZE "
                        f"and RANK to train in one process") from None
    store.set_timeout(datetime.timedelta(minutes=30))
    return store


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise DadaError(f"LOCAL_RANK={local_rank} but this machine has {count} CUDA device(s): start at most "
                        f"{count} processes per machine (torchrun --nproc-per-node {count})")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def teardown() -> None:
    """Leave the process group (after the last collective); a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


@torch.no_grad()
def broadcast_module(module: nn.Module, info: Dist) -> None:
    """Every rank takes rank 0's parameters and buffers (identical starting weights)."""
    if not info.enabled:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def _buckets(tensors: list[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    bucket: list[torch.Tensor] = []
    size = 0
    for tensor in tensors:
        if bucket and (size + tensor.numel() * tensor.element_size() > BUCKET_BYTES
                       or tensor.dtype != bucket[0].dtype or tensor.device != bucket[0].device):
            yield bucket
            bucket, size = [], 0
        bucket.append(tensor)
        size += tensor.numel() * tensor.element_size()
    if bucket:
        yield bucket


@torch.no_grad()
def all_reduce_gradients(parameters: Iterable[torch.Tensor], info: Dist) -> None:
    """Average ``.grad`` over the ranks, in place, in flat buckets. A parameter without a gradient on some
    ranks gets zeros there (every rank sends the same buckets); one without a gradient on every rank keeps
    ``grad=None``, as in one process (the optimizer then skips it)."""
    if not info.enabled:
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                            device=params[0].device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.SUM)
    params = [p for p, count in zip(params, has_grad.tolist(), strict=True) if count > 0]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(info.world_size)
        offset = 0
        for g in bucket:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


@torch.no_grad()
def all_reduce_mean(values: torch.Tensor, info: Dist) -> torch.Tensor:
    """The mean over the ranks of a tensor (e.g. the stacked losses of the iteration)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def all_gather_object(value: Any, info: Dist) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, info: Dist) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_world_size(saved: int | None, info: Dist, where: str) -> None:
    """A checkpoint holds each rank's data position and random state: resume only at its world size."""
    saved = 1 if saved is None else int(saved)
    if saved != info.world_size:
        raise DadaError(f"{where} was trained with {saved} process(es) but this run has {info.world_size}: "
                        f"resume with the same number (dada train --nproc {saved} ..., or torchrun "
                        f"--nproc-per-node/--nnodes giving {saved} ranks), or start a new run "
                        f"(another output.name)")


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``model.sync_bn=true``: BN statistics over all ranks' images (CUDA only, as PyTorch's SyncBN)."""
    if device.type != "cuda":
        raise DadaError("model.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only): "
                        "set model.sync_bn=false on CPU")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def launch(nproc: int, dada_args: list[str]) -> int:
    """``dada train --nproc N``: run ``dada <dada_args>`` as N processes on this machine through torchrun
    (``--standalone``: a local rendezvous on a free port); returns its exit status."""
    import subprocess
    import sys

    if nproc < 1:
        raise DadaError(f"--nproc must be at least 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "dada", *dada_args]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too, without its warning
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, errors="replace")
    errors = filter_launcher_errors(process.stderr, sys.stderr)
    code = process.wait()
    return 2 if errors and code != 0 else code


#: a rank's clear error line (``dada.cli``: ``dada <command>: error: ...``)
_ERROR_LINE = re.compile(r"^dada [\w-]+: error: ")


def filter_launcher_errors(lines, out) -> list[str]:
    """Copy the processes' stderr to ``out`` until a rank reports a clear error (``dada <cmd>: error:``);
    from then on only further distinct error lines pass: the other ranks' and the launcher's tracebacks
    (torch.distributed.elastic's ChildFailedError report) that follow add nothing. Returns the errors."""
    errors: list[str] = []
    for line in lines:
        if _ERROR_LINE.match(line):
            if line not in errors:
                errors.append(line)
                out.write(line)
                out.flush()
        elif not errors:
            out.write(line)
            out.flush()
    return errors
