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


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; elsewhere the vector extension torch reports)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "")()
    return {capability.lower()} if capability else set()


#: CPU flags of native half-precision matrix arithmetic (Intel AMX, AVX-512 BF16/FP16; ARM bf16/fphp).
NATIVE_CPU_FLAGS = {"bf16": {"amx_bf16", "avx512_bf16", "bf16"}, "fp16": {"amx_fp16", "avx512_fp16", "fphp"}}


def native_precision(device: str | torch.device, precision: str) -> tuple[bool | None, str]:
    """Whether ``device`` computes ``precision`` (fp32, bf16, fp16) natively, and what that is judged from.
    None: unknown (a device type this does not know). Without native support PyTorch emulates the type, at
    a cost of up to 25× the fp32 step (bf16 on an AVX2-only CPU, docs/performance.md)."""
    if precision == "fp32":
        return True, "fp32"
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        needed = (8, 0) if precision == "bf16" else (7, 0)  # bf16 tensor cores: Ampere; fp16: Volta
        return (major, minor) >= needed, (f"{torch.cuda.get_device_name(device)}, compute capability "
                                          f"{major}.{minor} (native {precision} "
                                          f"from {needed[0]}.{needed[1]})")
    if device.type == "cpu":
        flags = cpu_flags()
        if not flags:
            return None, "CPU flags unknown"
        found = sorted(flags & NATIVE_CPU_FLAGS[precision])
        return bool(found), (f"CPU flags {', '.join(found)}" if found else
                             f"CPU without {' / '.join(sorted(NATIVE_CPU_FLAGS[precision]))}")
    return None, device.type


def check_precision(device: str | torch.device, precision: str, setting: str = "train.precision") -> bool:
    """Warn loudly (stderr) when ``precision`` is emulated on ``device``; returns whether it is native
    (True when unknown)."""
    import sys

    native, basis = native_precision(device, precision)
    if native is False:
        print(f"WARNING: {setting}={precision} but this device has no native {precision} arithmetic "
              f"({basis}): "
              f"PyTorch emulates it, which can make each step many times slower than fp32 (25x reported for "
              f"bf16 on an AVX2-only CPU). Use {setting}=fp32 here unless you have measured otherwise.",
              file=sys.stderr, flush=True)
    return native is not False
