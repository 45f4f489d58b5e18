"""The built-in benchmark: procedural street scenes written as a miniature SYNTHIA→Cityscapes.

* :mod:`~dada.benchmark.world`: class ids, camera, primitives, exact per-pixel geometry;
* :mod:`~dada.benchmark.styles`: the two domains' worlds (camera, statistics, colours);
* :mod:`~dada.benchmark.scene`: scene sampling, one function per kind of object;
* :mod:`~dada.benchmark.shading`: the two renderings (source flat, target photographic);
* :mod:`~dada.benchmark.writer`: ``make_benchmark`` through the datasets' writers (``version`` 1 or 2,
  version 2's shift ladder ``shift``: none | appearance | content | full);
* :mod:`~dada.benchmark.fingerprint`: class shares, horizon rows, object sizes and the colour probe;
* :mod:`~dada.benchmark.cache`: ``ensure_benchmark`` (generated once per parameter set) and
  ``resolve_root`` (``@benchmark`` dataset roots).

``dada make-benchmark OUT`` is the command (see ``docs/benchmark.md``).
"""

from dada.benchmark.cache import benchmark_params, default_cache_dir, ensure_benchmark, resolve_root
from dada.benchmark.writer import (
    DEFAULTS,
    DEFAULTS_V2,
    GENERATOR_VERSION,
    GENERATOR_VERSIONS,
    GENERATORS,
    SHIFTS,
    generate_sample,
    make_benchmark,
)

__all__ = ["DEFAULTS", "DEFAULTS_V2", "GENERATOR_VERSION", "GENERATOR_VERSIONS", "GENERATORS", "SHIFTS",
           "benchmark_params", "default_cache_dir", "ensure_benchmark", "generate_sample", "make_benchmark",
           "resolve_root"]
