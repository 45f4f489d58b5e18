"""Checkpoints: one plain dict per file, written atomically, loadable with ``weights_only=True``.

``{"format": "dada-seg/2", "iteration", "config", "model_spec", "model", "method", "rng", "data",
"selection"}``. ``iteration`` counts the completed iterations; ``method`` is the method's
``state_dict()`` (its extra modules and every optimizer); ``rng`` holds the Python, NumPy and torch (CPU
and CUDA) generator states as plain lists and tensors; ``data`` the number of items each domain has
consumed (the position in the sampling order). Files are named by :func:`iteration_path`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dada.errors import DadaError
from dada.io import save_torch
from dada.models.loading import CHECKPOINT_FORMAT as FORMAT
from dada.models.loading import iteration_checkpoints, iteration_path

__all__ = ["FORMAT", "iteration_checkpoints", "iteration_path", "load_checkpoint", "prune",
           "remove_partial_files", "rng_state", "save_checkpoint", "set_rng_state"]


def remove_partial_files(folder: Path) -> None:
    """Temporary files of a write that a kill interrupted (``dada.io.atomic_path`` names)."""
    if Path(folder).is_dir():
        for path in Path(folder).glob(".*.tmp*"):
            path.unlink(missing_ok=True)


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


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    save_torch(path, {"format": FORMAT, **payload})


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DadaError(f"checkpoint {path} not found") from None
    except Exception as error:  # a truncated or foreign file
        raise DadaError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
                        f"delete it to resume from the one before") from None
    if isinstance(checkpoint, dict) and checkpoint.get("format") == "dada-seg/1":
        raise DadaError(f"{path} was written by an earlier dada-seg (format dada-seg/1), whose training "
                        f"state this version cannot resume. `dada eval` and `dada predict` read it as it is; "
                        f"to keep training from its weights, start a new run (another output.name) with "
                        f"model.pretrained={path} model.pretrained_kind=segmenter")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise DadaError(f"{path} is not a dada-seg training checkpoint (format {FORMAT})")
    return checkpoint


def prune(folder: Path, keep_last: int, protect: set[Path] = frozenset()) -> None:
    """Delete all but the newest ``keep_last`` ``iter_*.pt`` (never those in ``protect``)."""
    found = iteration_checkpoints(folder)
    stale = found[:-keep_last] if keep_last > 0 else found
    for _, path in stale:
        if path.resolve() not in {p.resolve() for p in protect}:
            path.unlink(missing_ok=True)
