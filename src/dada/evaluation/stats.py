"""Statistics over seeds, in one place: mean ± std, differences paired by seed, and the project's bar
for a difference: "resolved" only when its mean lies beyond twice the standard deviation of the per-seed
differences (at least two seeds). Used by ``dada train --seeds``, ``dada demo``, ``dada compare`` and
``benchmarks/ablation.py``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def mean_std(values: Iterable[float | None]) -> tuple[float, float | None]:
    """(mean, sample std with ddof=1) of the finite values; std None with one value, mean NaN with none."""
    array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    array = array[np.isfinite(array)]
    if not array.size:
        return float("nan"), None
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> dict[int, float]:
    """``a[seed] − b[seed]`` for every seed both have."""
    return {seed: float(a[seed]) - float(b[seed]) for seed in a if seed in b}


def verdict(mean: float, std: float | None) -> str:
    """The bar for a paired difference: resolved beyond twice the spread of the per-seed differences."""
    if std is None:
        return "one seed"
    if abs(mean) > 2 * std:
        return "resolved: " + ("higher" if mean > 0 else "lower")
    return "not resolved"


def pm(mean: float, std: float | None, digits: int = 3) -> str:
    """``mean ± std`` (just the mean with one value)."""
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
