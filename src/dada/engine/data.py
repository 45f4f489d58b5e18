"""Training data: datasets from the config and an infinite, seeded, resumable sampling order.

The order is a fresh permutation per epoch, drawn from (run seed, domain, epoch); the position in it is
the number of items consumed so far (by all ranks together), which the trainer stores in its checkpoints.
A resumed run thus reads exactly the items the uninterrupted run would have read, whatever the number of
workers.

With several processes (``torchrun``), iteration k reads the ``world_size × batch_size`` items at
positions ``[k·W·B, (k+1)·W·B)`` of that same order, and rank r takes the r-th block of ``B`` of them: the
ranks read disjoint images, and together exactly the items one process with a batch of ``W·B`` reads.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from dada.config import to_dict
from dada.errors import DadaError
from dada.methods import method_class

DOMAINS = {"source": 0, "target": 1}


class ResumableSampler(Sampler[int]):
    """Endless indices: epoch e is a permutation seeded by (seed, domain, e); starts at item ``start`` of
    that stream (counted over all ranks). Rank ``rank`` of ``world_size`` yields only its blocks of
    ``batch_size`` items: positions p with ``(p // batch_size) % world_size == rank``."""

    def __init__(self, length: int, seed: int, domain: int, start: int = 0, *, rank: int = 0,
                 world_size: int = 1, batch_size: int = 1, order=None):
        self.length, self.seed, self.domain, self.start = int(length), int(seed), int(domain), int(start)
        self._order = order  # a method's epoch → indices (rare-class sampling), else a permutation
        self.rank, self.world_size, self.batch_size = int(rank), int(world_size), int(batch_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if self.start % (self.world_size * self.batch_size):
            raise ValueError(f"start {start} is not a whole number of global batches "
                             f"({self.world_size} ranks × {self.batch_size})")

    def order(self, epoch: int) -> np.ndarray:
        if self._order is not None:
            return np.asarray(self._order(epoch))
        return np.random.default_rng([self.seed, self.domain, epoch]).permutation(self.length)

    def __iter__(self) -> Iterator[int]:
        epoch, position = divmod(self.start, self.length)
        stream = self.start  # the global position of order[position]
        block, ranks = self.batch_size, self.world_size
        while True:
            order = self.order(epoch)
            for index in order[position:]:
                if (stream // block) % ranks == self.rank:
                    yield int(index)
                stream += 1
            epoch, position = epoch + 1, 0


def build_part(cfg: DictConfig, part: str) -> Dataset:
    """The dataset of ``data.<part>`` (source: labels and depth; target: images only; val: native labels)."""
    from dada.benchmark import resolve_root
    from dada.data import build_dataset
    from dada.data.transforms import check_augment

    spec = cfg.data[part]
    source_depth = method_class(cfg.method.name).needs_source_depth(cfg.method)  # the method says
    options = {"source": dict(depth=source_depth, labels=True, label_size="input"),
               "target": dict(depth=False, labels=False, label_size="input"),
               "val": dict(depth=False, labels=True, label_size="native")}[part]
    chosen = {k: v for k, v in to_dict(spec.augment).items() if v is not None and v is not False}
    augment = check_augment(chosen, f"data.{part}.augment")
    if augment and part == "val":
        raise DadaError("data.val.augment is set, but augmentations are for training (source, target): "
                        "remove it")
    return build_dataset(spec.name, resolve_root(spec.root, part, cfg), spec.split, cfg.model.num_classes,
                         size=list(spec.size) if spec.size is not None else None,
                         preprocess=cfg.data.preprocess, fraction=spec.fraction, seed=cfg.seed,
                         list_file=spec.list_file, spec=spec.spec, augment=augment, **options)


def loader_options(cfg: DictConfig, device: torch.device) -> dict:
    """DataLoader keyword arguments from ``data.num_workers``, ``data.pin_memory`` (null: on CUDA),
    ``data.prefetch_factor`` (batches each worker keeps ready; null: PyTorch's 2) and
    ``data.persistent_workers``."""
    data = cfg.data
    workers = int(data.num_workers)
    if workers < 0:
        raise DadaError(f"data.num_workers must be >= 0, got {workers}")
    options = {"num_workers": workers,
               "pin_memory": device.type == "cuda" if data.pin_memory is None else bool(data.pin_memory)}
    if workers > 0:
        if data.prefetch_factor is not None:
            if data.prefetch_factor < 1:
                raise DadaError(f"data.prefetch_factor must be >= 1 (or null), got {data.prefetch_factor}")
            options["prefetch_factor"] = int(data.prefetch_factor)
        options["persistent_workers"] = bool(data.persistent_workers)
    return options


def infinite_loader(dataset: Dataset, cfg: DictConfig, part: str, start_item: int,
                    device: torch.device, rank: int = 0, world_size: int = 1, order=None) -> Iterator[dict]:
    """Endless batches of ``data.<part>.batch_size`` items for ``rank``, starting ``start_item`` items
    (counted over all ranks) into the order; ``order(epoch)`` (a method's, e.g. rare-class sampling)
    replaces the seeded permutation of each epoch and must be a function of the epoch alone (resume)."""
    if len(dataset) == 0:
        raise DadaError(f"the {part} dataset is empty")
    batch_size = int(cfg.data[part].batch_size)
    sampler = ResumableSampler(len(dataset), cfg.seed, DOMAINS[part], start_item, rank=rank,
                               world_size=world_size, batch_size=batch_size, order=order)
    # its own generator: creating the loader (again, on resume) draws nothing from the global RNG, so a
    # resumed run's random state is the uninterrupted run's
    generator = torch.Generator().manual_seed(int(cfg.seed) * 1000 + DOMAINS[part])
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=generator,
                        collate_fn=functools.partial(checked_collate, part=part),
                        **loader_options(cfg, device))
    return _clean_worker_errors(iter(loader))


def checked_collate(items: list[dict], part: str) -> dict:
    """``default_collate`` after checking that the items' tensors have one shape per key: items of
    different sizes are a DadaError naming them and the keys that fix it (not torch.stack's traceback)."""
    for key, value in items[0].items():
        if isinstance(value, torch.Tensor):
            shapes = [tuple(item[key].shape) for item in items]
            if len(set(shapes)) > 1:
                listed = ", ".join(f"{item.get('name', '?')} {tuple(s)}" for item, s in zip(items, shapes,
                                                                                          strict=True))
                raise DadaError(f"data.{part}: the items of one batch differ in {key} size ({listed}); set "
                                f"data.{part}.size to resize every item to one size, or data.{part}.augment."
                                f"crop, or batch_size 1 (`dada doctor` lists the sizes)")
    return default_collate(items)


def _clean_worker_errors(batches: Iterator[dict]) -> Iterator[dict]:
    """Batches from a DataLoader, with a DadaError raised in a worker process re-raised as its own
    message (the DataLoader wraps it in the worker's traceback)."""
    while True:
        try:
            batch = next(batches)
        except DadaError as error:
            text = str(error)
            if "Original Traceback" not in text:
                raise
            marker = text.rfind("DadaError: ")
            raise DadaError(text[marker + len("DadaError: "):].strip() if marker >= 0 else text) from None
        yield batch
