"""Device names from configs and command lines (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

from __future__ import annotations

import torch

from dada.errors import DadaError


def resolve_device(name: str | torch.device, setting: str = "--device") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for CUDA where there is none is an error
    that names ``setting`` (the config key or option the name came from)."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DadaError(f"{setting}={name} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DadaError(f"{setting}={name} but CUDA is not available here: use {setting}=cpu or auto")
    return device
