"""Statistics over seeds (dada.evaluation.stats): the project's one definition of mean ± std, pairing by
seed and "resolved"."""

import math

from dada.evaluation.stats import mean_std, paired, pm, verdict


def test_mean_std_drops_missing_values_and_uses_ddof_1():
    mean, std = mean_std([1.0, None, 3.0, float("nan")])
    assert mean == 2.0 and math.isclose(std, math.sqrt(2.0))
    assert mean_std([5.0]) == (5.0, None)
    assert math.isnan(mean_std([None])[0])


def test_pairing_and_the_bar_for_resolved():
    assert paired({0: 3.0, 1: 5.0, 2: 1.0}, {0: 1.0, 1: 2.0}) == {0: 2.0, 1: 3.0}
    assert verdict(2.5, 0.5) == "resolved: higher" and verdict(-2.5, 0.5) == "resolved: lower"
    assert verdict(1.0, 0.5) == "not resolved"  # |mean| = 2·std is not beyond twice the spread
    assert verdict(1.0, None) == "one seed"
    assert pm(1.23456, 0.1, 2) == "1.23 ± 0.10" and pm(1.0, None, 1) == "1.0"
