"""The built-in benchmark: procedural street scenes written as a miniature SYNTHIA→Cityscapes.

* :mod:`~dada.benchmark.world`: class ids, camera, primitives, exact per-pixel geometry;
* :mod:`~dada.benchmark.styles`: the two domains' worlds (camera, statistics, colours);
* :mod:`~dada.benchmark.scene`: scene sampling, one function per kind of object;
* :mod:`~dada.benchmark.shading`: the two renderings (source flat, target photographic);
* :mod:`~dada.benchmark.writer`: ``make_benchmark`` through the datasets' writers;
* :mod:`~dada.benchmark.cache`: ``ensure_benchmark`` (generated once per parameter set) and
  ``resolve_root`` (``@benchmark`` dataset roots).

``dada make-benchmark OUT`` is the command (see ``docs/benchmark.md``).
"""

from dada.benchmark.cache import benchmark_params, default_cache_dir, ensure_benchmark, resolve_root
from dada.benchmark.writer import DEFAULTS, GENERATOR_VERSION, generate_sample, make_benchmark

__all__ = ["DEFAULTS", "GENERATOR_VERSION", "benchmark_params", "default_cache_dir", "ensure_benchmark",
           "generate_sample", "make_benchmark", "resolve_root"]
