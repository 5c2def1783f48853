"""Intervals and paired tests: Wilson against known values, the bootstrap's reproducibility and coverage of
hand-computable cases, the sign test against scipy, pairing by evaluation seed."""
import math

import numpy as np
import pytest
from scipy import stats

from theia_eval.analysis.uncertainty import (Resampling, estimate, pair_runs, paired, point, replicates, sign_test,
                                             wilson_percent)
from theia_eval.errors import InputError


def binary(k: int, n: int = 25) -> np.ndarray:
    return np.asarray([100.0] * k + [0.0] * (n - k))


def test_wilson_interval_of_18_of_25_matches_the_published_value():
    lo, hi = wilson_percent(18, 25)
    # Wilson score interval, z = 1.96: 0.5242 .. 0.8572 (e.g. statsmodels proportion_confint(18, 25, method="wilson"))
    assert lo == pytest.approx(52.42, abs=0.01) and hi == pytest.approx(85.72, abs=0.01)
    ref = stats.binomtest(18, 25).proportion_ci(confidence_level=0.95, method="wilson")
    assert lo == pytest.approx(100 * ref.low, abs=0.01) and hi == pytest.approx(100 * ref.high, abs=0.01)
    assert wilson_percent(0, 4)[0] == 0.0 and wilson_percent(4, 4)[1] == 100.0
    assert wilson_percent(0, 4)[1] == pytest.approx(48.99, abs=0.01)  # 0/4 is not "certainly 0"
    from theia_eval.policies.stats import wilson_interval  # the eval JSONs' success_ci95: the same formula

    for k, n in ((0, 4), (3, 4), (18, 25), (25, 25), (7, 75)):
        assert wilson_percent(k, n) == pytest.approx(tuple(100 * x for x in wilson_interval(k, n)))
    with pytest.raises(InputError):
        wilson_percent(5, 4)


def test_point_is_the_mean_over_suites_of_task_means_of_seed_means():
    forest = {"metaworld": [[binary(20), binary(10)], [binary(25)]],  # task 1: seeds 80 and 40 -> 60; task 2: 100
              "dmc": [[np.asarray([30.0, 50.0])]]}                     # 40
    assert point(forest) == pytest.approx(((60 + 100) / 2 + 40) / 2)
    assert math.isnan(point({})) and estimate({"x": [[np.zeros(0)]]}, Resampling()) is None


def test_bootstrap_is_reproducible_with_its_seed_and_changes_with_another():
    forest = {"metaworld": [[binary(18)], [binary(5)], [binary(12)]]}
    r = Resampling(resamples=500, seed=7)
    a, b = replicates(forest, r), replicates(forest, r)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, replicates(forest, Resampling(resamples=500, seed=8)))
    e1, e2 = estimate(forest, r), estimate(forest, r)
    assert e1 == e2 and e1.format() == e2.format()
    assert (e1.tasks, e1.runs, e1.episodes) == (3, 3, 75)


def test_bootstrap_levels_decide_the_width():
    # identical tasks: resampling tasks adds nothing; different tasks: it widens the interval
    same = {"s": [[binary(15)], [binary(15)]]}
    far = {"s": [[binary(2)], [binary(23)]]}
    episodes_only = Resampling(resamples=2000, seed=0, levels=("episodes",))
    everything = Resampling(resamples=2000, seed=0)
    def width(f, r):
        return estimate(f, r).hi - estimate(f, r).lo
    assert width(far, everything) > 2 * width(far, episodes_only)
    assert width(same, everything) == pytest.approx(width(same, episodes_only), rel=0.3)
    fixed = estimate(far, Resampling(resamples=200, levels=()))
    assert fixed.lo == fixed.hi == fixed.mean == pytest.approx(50.0)  # nothing resampled: no spread
    # one task of 25 episodes with 18 successes: the episode bootstrap is close to the Wilson interval
    one = estimate({"s": [[binary(18)]]}, everything)
    assert one.mean == pytest.approx(72.0) and 50 < one.lo < 58 and 85 < one.hi < 92


def test_bootstrap_handles_per_episode_scores_in_0_100():
    rng = np.random.default_rng(0)
    scores = rng.uniform(40, 80, size=10)  # e.g. DMC normalized returns
    est = estimate({"dmc": [[scores]]}, Resampling(resamples=2000, seed=0))
    assert est.mean == pytest.approx(scores.mean())
    assert scores.min() < est.lo < est.mean < est.hi < scores.max()
    sem = scores.std(ddof=1) / math.sqrt(len(scores))
    assert est.hi - est.lo == pytest.approx(2 * 1.96 * sem, rel=0.3)


def test_sign_test_is_the_exact_binomial_test():
    for wins, losses in ((9, 1), (5, 5), (0, 7), (12, 3), (1, 0)):
        assert sign_test(wins, losses) == pytest.approx(stats.binomtest(wins, wins + losses, 0.5).pvalue)
    assert sign_test(0, 0) == 1.0


def test_paired_comparison_detects_a_clear_difference_and_not_none():
    r = Resampling(resamples=2000, seed=0)
    a = [binary(22), binary(20), binary(23)]
    b = [binary(5), binary(4), binary(6)]
    clear = paired({"metaworld": [[x - y] for x, y in zip(a, b)]}, r)
    assert clear.distinguishable and clear.lo > 0 and clear.diff == pytest.approx(100 * (65 - 15) / 75)
    assert clear.pairs == 75 and clear.tasks == 3 and clear.b_better == 0 and clear.p < 1e-10
    same = paired({"metaworld": [[x - x] for x in a]}, r)
    assert not same.distinguishable and same.diff == 0 and same.p == 1.0
    # two policies with the same success rate, failing on different episodes: not told apart
    rng = np.random.default_rng(3)
    noisy = [rng.permutation(binary(12)) - rng.permutation(binary(12)) for _ in range(3)]
    assert not paired({"metaworld": [[d] for d in noisy]}, r).distinguishable
    empty = paired({}, r)
    assert empty.pairs == 0 and not empty.distinguishable and math.isnan(empty.diff)


def test_pairs_follow_evaluation_seeds_not_positions():
    a = np.asarray([100.0, 0.0, 100.0])
    b = np.asarray([0.0, 100.0])
    d = pair_runs([1002, 1000, 1001], a, [1001, 1000], b)  # shared seeds 1000, 1001
    assert list(d) == [0.0 - 100.0, 100.0 - 0.0]


def test_bad_resampling_is_refused():
    with pytest.raises(InputError, match="levels must be among"):
        Resampling(levels=("tasks", "episodez"))
    with pytest.raises(InputError, match="resamples >= 100"):
        Resampling(resamples=10)
    assert "tasks within each suite, then training seeds" in Resampling().describe()
    assert "tasks held fixed" in Resampling(levels=("seeds", "episodes")).describe()
