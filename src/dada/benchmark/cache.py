"""The benchmark behind ``@benchmark`` dataset roots: generated once per parameter set into a cache
folder and reused (:func:`ensure_benchmark`); :func:`resolve_root` turns a configured root into a folder."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from dada.benchmark import writer
from dada.benchmark.writer import (
    DEFAULTS,
    DEFAULTS_V2,
    GENERATOR_VERSION,
    check_params,
    version_options,
)
from dada.errors import DadaError


def benchmark_params(**params) -> dict:
    """The full parameter set (defaults filled in) that identifies a generated benchmark. Version 1's
    (the default) has the keys it always had, so its cache folders keep their names; version 2's adds
    ``version``, ``shift`` and ``fog`` and takes its own defaults (:data:`DEFAULTS_V2`); ``generator`` (None:
    the version's current one) is its ``generator_version``, so a generator's folders keep their names."""
    opts = version_options(params.pop("version", None) or 1, params.pop("shift", None),
                           params.pop("fog", None), params.pop("generator", None))
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        known = sorted([*DEFAULTS, "version", "shift", "fog", "generator"])
        raise DadaError(f"unknown benchmark parameter(s) {sorted(unknown)}; known: {known}")
    base = DEFAULTS_V2 if opts else DEFAULTS
    p = {**{k: base[k] for k in DEFAULTS}, **params}
    p["size"] = list(check_params(p["num_source"], p["num_target_train"], p["num_target_val"], p["size"]))
    p = {k: (int(v) if k != "size" else v) for k, v in p.items()}
    if not opts:
        return {**p, "generator_version": GENERATOR_VERSION}
    generator = opts.pop("generator")  # the key names the generator as it always has: generator_version
    return {**p, **opts, "generator_version": generator}


def default_cache_dir() -> Path:
    """``$DADA_CACHE``, else ``~/.cache/dada-seg``; an empty or relative HOME (which would put the cache
    at the file-system root or in the working folder) is an error saying what to set."""
    env = os.environ.get("DADA_CACHE")
    if env:
        return Path(env)
    home = os.environ.get("HOME", None)
    if home is not None and not os.path.isabs(home):
        raise DadaError(f"HOME is {home!r}, so the benchmark cache has no home folder: "
                        f"set DADA_CACHE=/some/dir "
                        f"(or data.benchmark.cache_dir=/some/dir)")
    return Path.home() / ".cache" / "dada-seg"


def default_workers() -> int:
    """Generator processes when none are asked for: one per CPU this process may use, at most 8 (the
    images do not depend on the number: tests/test_benchmark.py)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, available))


def ensure_benchmark(
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **params,
) -> Path:
    """The benchmark for ``params`` (see :data:`DEFAULTS`) in ``cache_dir`` (default ``$DADA_CACHE`` or
    ``~/.cache/dada-seg``), folder ``benchmark-<hash of the parameters>``: generated when missing, reused
    when present (complete folders only: they appear by an atomic rename). ``workers``: generator
    processes (default :func:`default_workers`)."""
    if workers is None:
        workers = default_workers()
    p = benchmark_params(**params)
    key = hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / f"benchmark-{key}"
    if (out / "benchmark.json").is_file():
        return out
    args = {k: v for k, v in p.items() if k != "generator_version"}
    if "version" in p:  # version 2 on: the generator is a choice (version 1 has one)
        args["generator"] = p["generator_version"]
    try:
        writer.make_benchmark(out, workers=workers, progress=progress, overwrite=False, **args)
    except DadaError:
        if (out / "benchmark.json").is_file():  # another process finished it first
            return out
        raise
    except OSError:
        if (out / "benchmark.json").is_file():
            return out
        raise
    return out


def resolve_root(root: str | os.PathLike | None, part: str, config: Mapping | None = None) -> Path:
    """The folder of a configured dataset root ``data.<part>.root``: ``@benchmark`` stands for the
    built-in benchmark with the parameters of ``config``'s ``data.benchmark`` (the run's config, a dict or
    a DictConfig; None values keep the defaults), generated on first use: its SYNTHIA-format ``source/``
    folder when ``data.<part>.name`` is ``synthia`` (without a config: when ``part`` is ``source``), else
    its Cityscapes-format ``target/`` (so an oracle's Cityscapes "source" trains on ``target/``). Any other
    root is returned as is; None is an error."""
    from omegaconf import DictConfig, OmegaConf

    from dada.config import BENCHMARK_ROOT

    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    data = (config or {}).get("data") or {}
    if root is None:
        name = (data.get(part) or {}).get("name") or "dataset"
        raise DadaError(f"data.{part}.root is not set: give the {name} folder, e.g. "
                        f"data.{part}.root=/data/{name}, or {BENCHMARK_ROOT} for the built-in benchmark")
    if str(root) != BENCHMARK_ROOT:
        return Path(root)
    chosen = {k: v for k, v in (data.get("benchmark") or {}).items() if v is not None}
    name = (data.get(part) or {}).get("name")
    synthia = name == "synthia" if name else part == "source"
    return Path(ensure_benchmark(**chosen)) / ("source" if synthia else "target")
