"""The engine's side of checkpoints: the random generators' state. Files, formats, digests, resuming and
pruning are owned by :mod:`dada.checkpoints` (re-exported here for the engine's callers)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from dada.checkpoints import CHECKPOINT_FORMAT as FORMAT
from dada.checkpoints import (
    complete_run,
    content_digest,
    iteration_checkpoints,
    iteration_path,
    load_checkpoint,
    load_latest,
    non_finite_tensors,
    prune,
    remove_partial_files,
    save_checkpoint,
    verify_digest,
)

__all__ = ["FORMAT", "complete_run", "content_digest", "iteration_checkpoints", "iteration_path",
           "load_checkpoint", "load_latest", "non_finite_tensors", "prune", "remove_partial_files",
           "rng_state", "save_checkpoint", "set_rng_state", "verify_digest"]


def rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
                       float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


