"""Training data: datasets from the config and an infinite, seeded, resumable sampling order.

The order is a fresh permutation per epoch, drawn from (run seed, domain, epoch); the position in it is
the number of items consumed so far, which the trainer stores in its checkpoints. A resumed run thus
reads exactly the items the uninterrupted run would have read, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from dada.config import to_dict
from dada.errors import DadaError

DOMAINS = {"source": 0, "target": 1}


class ResumableSampler(Sampler[int]):
    """Endless indices: epoch e is a permutation seeded by (seed, domain, e); starts at item ``start``."""

    def __init__(self, length: int, seed: int, domain: int, start: int = 0):
        self.length, self.seed, self.domain, self.start = int(length), int(seed), int(domain), int(start)

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.domain, epoch]).permutation(self.length)

    def __iter__(self) -> Iterator[int]:
        epoch, position = divmod(self.start, self.length)
        while True:
            order = self.order(epoch)
            for index in order[position:]:
                yield int(index)
            epoch, position = epoch + 1, 0


def build_part(cfg: DictConfig, part: str) -> Dataset:
    """The dataset of ``data.<part>`` (source: labels and depth; target: images only; val: native labels)."""
    from dada.benchmark import resolve_root
    from dada.data import build_dataset
    from dada.data.transforms import check_augment

    spec = cfg.data[part]
    source_depth = cfg.method.depth_supervision or cfg.method.privileged  # SPIGAN's P regresses it
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


def infinite_loader(dataset: Dataset, cfg: DictConfig, part: str, start_item: int,
                    device: torch.device) -> Iterator[dict]:
    """Endless batches of ``data.<part>.batch_size`` items, starting ``start_item`` items into the order."""
    if len(dataset) == 0:
        raise DadaError(f"the {part} dataset is empty")
    sampler = ResumableSampler(len(dataset), cfg.seed, DOMAINS[part], start_item)
    workers = int(cfg.data.num_workers)
    loader = DataLoader(dataset, batch_size=cfg.data[part].batch_size, sampler=sampler,
                        num_workers=workers, pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=workers > 0)
    return iter(loader)
