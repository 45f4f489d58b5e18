"""Checkpoints and run folders, owned in one place: file names, the one guarded ``torch.load``, writing
and verifying training checkpoints, resuming from the newest good one, pruning.

A training checkpoint is one plain dict per file, written atomically, loadable with
``weights_only=True``: ``{"format": "dada-seg/2", "iteration", "config", "model_spec", "model", "method",
"rng", "data", "selection", "method_info"}``. ``iteration`` counts the completed iterations; ``method`` is
the method's ``state_dict()`` (its extra modules and every optimizer); ``rng`` holds the Python, NumPy and
torch (CPU and CUDA) generator states; ``data`` the number of items each domain has consumed. Files are
named by :func:`iteration_path`.

Integrity: each file also holds ``"sha256"``, a digest of its content (every tensor's bytes, dtype and
shape, and every other value), written by :func:`save_checkpoint` and verified by
:func:`load_checkpoint`, so a flipped byte or a truncated file is never loaded silently. A checkpoint
with a non-finite floating-point tensor is never written (the NaN guard's promise: the newest checkpoint
on disk is always good). :func:`load_latest` resumes from the newest good ``iter_*.pt``, skipping (and
renaming to ``*.corrupt``) newer ones that fail the check.

This module sits with :mod:`dada.io` below the models and the engine: ``dada.models.loading`` (reading
weights for inference) and ``dada.engine`` (training) both use it, and it imports neither.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch

from dada.errors import DadaError
from dada.io import display, os_errors, save_torch

#: the format of the training checkpoints this version writes; ``dada-seg/1`` (before the backbone was a
#: separate module: backbone keys without ``backbone.``) is still read for inference and fine-tuning
CHECKPOINT_FORMAT = "dada-seg/2"
READABLE_FORMATS = ("dada-seg/1", CHECKPOINT_FORMAT)
_ITER_FILE = re.compile(r"^iter_(\d+)\.pt$")


def iteration_path(folder: str | os.PathLike, iteration: int) -> Path:
    """Where a run keeps the checkpoint after ``iteration`` completed iterations."""
    return Path(folder) / f"iter_{iteration:07d}.pt"


def iteration_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the ``iter_*.pt`` files in ``folder``, oldest first."""
    if not Path(folder).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := _ITER_FILE.match(p.name))]
    return sorted(found)


def read_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                 what: str | None = None, advice: str | None = None, show: str | None = None) -> object:
    """The one guarded ``torch.load(path, weights_only=True)`` of the package: every weights file (our
    checkpoints, official state dicts, packaged ImageNet weights, a method's cached statistics) is read
    through it, and a missing or unreadable file is a DadaError naming it, the cause and ``advice``
    (``what`` names the kind of file in the message; ``show`` how to print the path)."""
    path = Path(path)
    shown = show or str(path)
    if not path.is_file():
        raise DadaError(f"{shown}: no such file; give the path of a checkpoint (.pt) or state dict (.pth)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch.load raises many types (pickle, zip, runtime); all mean "unreadable"
        if what is None:
            raise DadaError(f"{shown}: cannot be read as PyTorch weights with weights_only=True "
                            f"({load_failure_reason(err)}); give a checkpoint or state dict saved by "
                            "torch.save that holds only tensors and plain containers") from err
        raise DadaError(f"{what} {shown} cannot be read ({load_failure_reason(err)}): {advice}") from None


def load_failure_reason(err: Exception) -> str:
    """The informative line of a torch.load failure, without its advice to switch weights_only off."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if "Unsupported" in line:  # "Unsupported global: GLOBAL x.y ...", "Unsupported operand 120"
            return line[line.index("Unsupported"):].split(". Please")[0]
    useful = [line for line in lines if "weights_only" not in line and "Weights only load failed" not in line]
    return useful[-1] if useful else type(err).__name__


def find_checkpoint(folder: str | os.PathLike) -> Path:
    """A run folder's ``checkpoints/final.pt``, else its newest ``checkpoints/iter_*.pt``."""
    folder = Path(folder)
    candidates = [folder / "checkpoints", folder]
    for ckpt_dir in candidates:
        if (ckpt_dir / "final.pt").is_file():
            return ckpt_dir / "final.pt"
        iters = iteration_checkpoints(ckpt_dir)
        if iters:
            return iters[-1][1]
    raise DadaError(f"{folder}: no checkpoints/final.pt or checkpoints/iter_*.pt in this folder; give a run "
                    "folder of a training run, or the path of a checkpoint file")


def remove_partial_files(folder: Path) -> None:
    """Temporary files of a write that a kill interrupted (``dada.io.atomic_path`` names)."""
    if Path(folder).is_dir():
        for path in Path(folder).glob(".*.tmp*"):
            path.unlink(missing_ok=True)


def content_digest(obj: Any) -> str:
    """sha256 of ``obj``'s content: tensors by dtype, shape and bytes; containers in order; other values
    by ``repr``. The same for a payload before ``torch.save`` and after ``torch.load``."""
    digest = hashlib.sha256()
    _digest(obj, digest)
    return digest.hexdigest()


def _digest(obj: Any, digest) -> None:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(obj.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _digest(key, digest)
            _digest(value, digest)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__[0]}{len(obj)}".encode())
        for value in obj:
            _digest(value, digest)
    else:
        digest.update(f"V{obj!r}".encode("utf-8", "backslashreplace"))


def non_finite_tensors(obj: Any, prefix: str = "") -> list[str]:
    """Names (dotted paths) of the floating-point tensors in ``obj`` holding NaN or infinity."""
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            return [prefix.rstrip(".") or "<tensor>"]
        return []
    if isinstance(obj, dict):
        return [name for key, value in obj.items() for name in non_finite_tensors(value, f"{prefix}{key}.")]
    if isinstance(obj, (list, tuple)):
        return [name for i, value in enumerate(obj) for name in non_finite_tensors(value, f"{prefix}{i}.")]
    return []


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with its content digest, atomically. A payload with a non-finite tensor is
    refused (DadaError naming them), so the newest checkpoint on disk is always a good one."""
    payload = {key: value for key, value in payload.items() if key not in ("format", "sha256")}
    bad = non_finite_tensors({k: v for k, v in payload.items() if k != "rng"})
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DadaError(f"not writing {display(path)}: {len(bad)} tensors hold NaN or infinity ({shown}); "
                        f"the training diverged. The checkpoints already written are intact: lower train.lr "
                        f"(or train.lr_d) and resume, or check the data")
    body = {"format": CHECKPOINT_FORMAT, **payload}
    save_torch(path, {**body, "sha256": content_digest(body)})


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and verify one checkpoint; every failure is a DadaError naming the file and the cause."""
    path = Path(path)
    shown = display(path)
    try:
        with os_errors(path, "read"):
            size = path.stat().st_size
    except DadaError:
        if not path.exists():
            raise DadaError(f"checkpoint {shown} not found") from None
        raise
    if size == 0:
        raise DadaError(f"checkpoint {shown} is empty (0 bytes): it was cut off while being written (a full "
                        f"disk or a crash); delete it (resuming uses the checkpoint before it)")
    checkpoint = read_weights(path, what="checkpoint", advice="it is truncated, corrupt or not a dada-seg "
                                                             "checkpoint", show=shown)
    if isinstance(checkpoint, dict) and checkpoint.get("format") == "dada-seg/1":
        raise DadaError(f"{shown} was written by an earlier dada-seg (format dada-seg/1), whose training "
                        f"state this version cannot resume. `dada eval` and `dada predict` read it as it is; "
                        f"to keep training from its weights, start a new run (another output.name) with "
                        f"model.pretrained={shown} model.pretrained_kind=segmenter")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise DadaError(f"{shown} is not a dada-seg training checkpoint (format {CHECKPOINT_FORMAT})")
    if "sha256" not in checkpoint:
        raise DadaError(f"checkpoint {shown} has no content digest (sha256): it was not written by this "
                        f"version of dada-seg or was altered; it cannot be verified")
    return verify_digest(checkpoint, path)


def verify_digest(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """``checkpoint`` without its ``sha256`` entry, after checking that entry against the content."""
    body = {key: value for key, value in checkpoint.items() if key != "sha256"}
    if content_digest(body) != checkpoint.get("sha256"):
        raise DadaError(f"checkpoint {display(path)} is corrupt: its content does not match its sha256 "
                        f"digest (a damaged disk, a copy error or an edited file)")
    return body


def load_latest(folder: Path, say=None) -> tuple[dict[str, Any] | None, Path | None]:
    """The newest ``iter_*.pt`` in ``folder`` that loads and verifies, and its path; (None, None) when
    there is none.

    A newer file that fails is renamed to ``<name>.corrupt`` (kept for inspection, never loaded again) and
    the fallback is reported through ``say`` (default: a line on stderr). If every checkpoint fails, a
    DadaError lists them.
    """
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    found = iteration_checkpoints(folder)
    problems = []
    for _, path in reversed(found):
        try:
            checkpoint = load_checkpoint(path)
        except DadaError as error:
            problems.append(str(error))
            continue
        for problem, (_, bad) in zip(problems, reversed(found), strict=False):
            aside = bad.with_name(bad.name + ".corrupt")
            with os_errors(bad, "rename"):
                bad.replace(aside)
            say(f"warning: {problem}\n  resuming from {display(path.name)} instead; the bad file is kept "
                f"as {display(aside.name)}")
        return checkpoint, path
    if problems:
        raise DadaError(f"no readable checkpoint in {display(folder)}: " + "; ".join(problems)
                        + ". Delete the folder (or choose another output.name) to train from scratch")
    return None, None


def complete_run(run_dir: Path, say=None) -> dict[str, Any] | None:
    """The verified ``checkpoints/final.pt`` of a finished run, or None when the run is not finished.

    A run is finished when ``final.pt`` verifies and either ``train_summary.json`` was written after it or
    no ``iter_*.pt`` remain to redo the final selection. A corrupt ``final.pt`` is renamed to
    ``final.pt.corrupt`` and redone from the ``iter_*.pt`` (said through ``say``); with none left it is
    a DadaError.
    """
    say = say or (lambda message: print(message, file=sys.stderr, flush=True))
    folder = Path(run_dir) / "checkpoints"
    final = folder / "final.pt"
    if not final.exists():
        return None
    remaining = iteration_checkpoints(folder)
    try:
        checkpoint = load_checkpoint(final)
    except DadaError as error:
        if not remaining:
            raise DadaError(f"{error}. No checkpoints/iter_*.pt remain to redo it: delete the run folder (or "
                            f"choose another output.name) to train again") from None
        aside = final.with_name("final.pt.corrupt")
        with os_errors(final, "rename"):
            final.replace(aside)
        say(f"warning: {error}\n  redoing the final selection from the iter_*.pt checkpoints; the bad file "
            f"is kept as {aside.name}")
        return None
    if (Path(run_dir) / "train_summary.json").is_file() or not remaining:
        return checkpoint
    return None  # killed between final.pt and the summary: redo the (deterministic) final selection


def prune(folder: Path, keep_last: int, protect: set[Path] = frozenset()) -> None:
    """Delete all but the newest ``keep_last`` ``iter_*.pt`` (never those in ``protect``)."""
    found = iteration_checkpoints(folder)
    stale = found[:-keep_last] if keep_last > 0 else found
    for _, path in stale:
        if path.resolve() not in {p.resolve() for p in protect}:
            path.unlink(missing_ok=True)
