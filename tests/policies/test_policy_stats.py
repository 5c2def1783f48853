"""Wilson score interval and mean +- standard error, against hand-computed values."""
import math

import pytest

from theia_eval.errors import InputError
from theia_eval.policies.stats import format_mean_sem, mean_sem, wilson_interval


def test_wilson_20_of_25_by_hand():
    # p = 0.8, z^2 = 3.8416, n = 25: denom = 1 + 3.8416/25 = 1.153664
    # center = (0.8 + 3.8416/50) / 1.153664 = 0.876832 / 1.153664 = 0.7600411
    # half = 1.96 * sqrt(0.8*0.2/25 + 3.8416/2500) / 1.153664 = 1.96 * sqrt(0.00793664) / 1.153664 = 0.1513545
    low, high = wilson_interval(20, 25)
    assert low == pytest.approx(0.7600411 - 0.1513545, abs=1e-6) and low == pytest.approx(0.608687, abs=1e-6)
    assert high == pytest.approx(0.911395, abs=1e-6)


def test_wilson_edges_stay_inside_zero_one():
    # 0/25: center = half = (3.8416/50) / 1.153664 = 0.0665983 -> (0, 0.1331965)
    assert wilson_interval(0, 25) == (0.0, pytest.approx(0.1331965, abs=1e-6))
    assert wilson_interval(25, 25) == (pytest.approx(1 - 0.1331965, abs=1e-6), 1.0)
    # 0/1: z^2 = 3.8416, denom = 4.8416, center = half = 1.9208 / 4.8416 = 0.3967283 -> (0, 0.7934567)
    assert wilson_interval(0, 1) == (0.0, pytest.approx(0.7934567, abs=1e-6))
    low, high = wilson_interval(12, 25, z=1.0)
    assert 0 < low < 12 / 25 < high < 1
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(InputError, match="0 <= successes <= n"):
            wilson_interval(*bad)


def test_mean_sem_by_hand():
    # [1, 2, 3, 4]: mean 2.5, sample var = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, s.e. = sqrt(5/3 / 4) = 0.6454972
    assert mean_sem([1, 2, 3, 4]) == (2.5, pytest.approx(0.6454972, abs=1e-7))
    mean, sem = mean_sem([88.0])
    assert mean == 88.0 and math.isnan(sem)
    assert format_mean_sem([1, 2, 3, 4]) == "2.5 +- 0.6" and format_mean_sem([7.25], 2) == "7.25"
    with pytest.raises(InputError, match="at least one value"):
        mean_sem([])
