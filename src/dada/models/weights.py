"""State-dict checks shared by every weight converter: the key-by-key comparison with a model's layout.

Nothing is ever loaded partially: a converter checks the whole result against the exact key set and
shapes of its target module and raises :class:`~dada.DadaError` naming the first offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from dada.errors import DadaError

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SHOW_KEYS = 5  # offending keys named in an error message


def as_state_dict(state_dict: object, kind: str) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise DadaError(f"expected a non-empty state dict (mapping of names to tensors) for kind {kind!r}, "
                        f"got {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise DadaError(f"not a state dict: entries {bad[:SHOW_KEYS]} are not tensors; give a plain state "
                        f"dict (kind {kind!r})")
    return dict(state_dict)


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    sd = dict(state_dict)
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def layout(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Key → shape of a module's state dict (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_layout(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                 what: str) -> dict[str, torch.Tensor]:
    """Return ``state_dict`` ordered as ``expected``; raise DadaError on missing, unexpected or
    wrongly shaped keys. A missing ``num_batches_tracked`` (checkpoints older than PyTorch 0.4.1) is
    filled with 0: it is a counter that no computation here reads."""
    sd = dict(state_dict)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.tensor(0, dtype=torch.long)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {expected[k]})" for k in expected
             if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first: {missing[:SHOW_KEYS]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[:SHOW_KEYS]}")
    if wrong:
        problems.append(f"{len(wrong)} key(s) with a wrong shape, first: {wrong[:SHOW_KEYS]}")
    if problems:
        raise DadaError(f"the weights do not fit {what}: " + "; ".join(problems)
                        + ". Check that the file and the kind/architecture/num_classes match.")
    return {k: sd[k] for k in expected}
