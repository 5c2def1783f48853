"""Intervals and paired tests of leaderboard scores (0-100), reproducible from a fixed seed.

- One task, success outcomes: the success count k/n and its Wilson 95 % interval.
- A mean over tasks (a suite, the MuJoCo subset, a claim pooled over tasks): a percentile bootstrap that
  resamples, with replacement, the levels named in `Resampling.levels`: tasks within each suite, training
  seeds (runs) within each task, evaluation episodes within each run. Suites are never resampled (a mean over
  suites averages suite replicates). Works for binary successes (0/100) and for per-episode scores in
  [0, 100] (DMC's normalized return) alike.
- Two entries on the same episodes: the per-episode differences a - b (episode i of one run paired with
  episode i of the other: the same task, training seed and evaluation seed), their mean with the same
  bootstrap, and an exact two-sided sign test on the non-zero differences (for success/failure outcomes
  this is McNemar's exact test on the discordant pairs).

A forest is {suite: [task, ...]}, a task is [run, ...] (one per training seed) and a run is a 1-d array of
per-episode scores (or differences). Every statistic is a mean over suites of means over tasks of means
over runs of means over episodes: with equal episode counts, the leaderboard's "mean over tasks and seeds".
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from theia_eval.errors import InputError
from theia_eval.settings import LeaderboardUncertaintySection

LEVELS = ("tasks", "seeds", "episodes")
_UNCERTAINTY = LeaderboardUncertaintySection()  # the `leaderboard` verb's defaults (theia_eval.settings)
LEVEL_TEXT = {"tasks": "tasks within each suite", "seeds": "training seeds within each task",
              "episodes": "evaluation episodes within each run"}
Forest = Mapping[str, Sequence[Sequence[np.ndarray]]]


@dataclass(frozen=True)
class Resampling:
    """How bootstrap intervals are drawn: resamples, the generator seed and the levels resampled."""

    resamples: int = _UNCERTAINTY.resamples
    seed: int = _UNCERTAINTY.seed
    levels: tuple[str, ...] = tuple(_UNCERTAINTY.resample)

    def __post_init__(self):
        unknown = [lv for lv in self.levels if lv not in LEVELS]
        if unknown or self.resamples < 100:
            raise InputError(f"bootstrap: levels must be among {list(LEVELS)} (got {list(self.levels)}) and "
                             f"resamples >= 100 (got {self.resamples}).")

    def describe(self) -> str:
        """The footnote sentence that says how intervals were drawn."""
        drawn = [LEVEL_TEXT[lv] for lv in LEVELS if lv in self.levels]
        fixed = [LEVEL_TEXT[lv].split(" within")[0] for lv in LEVELS if lv not in self.levels]
        text = (f"95% percentile bootstrap ({self.resamples} resamples, generator seed {self.seed}) resampling "
                + (", then ".join(drawn) if drawn else "nothing") + " with replacement")
        return text + (f"; {' and '.join(fixed)} held fixed" if fixed else "")


@dataclass(frozen=True)
class Estimate:
    """A mean score with its 95 % interval and what it was computed from."""

    mean: float
    lo: float
    hi: float
    tasks: int
    runs: int
    episodes: int

    def format(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


@dataclass(frozen=True)
class Paired:
    """The mean difference a - b over paired episodes, its 95 % interval and an exact sign test."""

    diff: float
    lo: float
    hi: float
    p: float  # exact two-sided sign test (McNemar's exact test for success outcomes)
    pairs: int  # paired episodes
    a_better: int  # pairs where a scored higher
    b_better: int
    tasks: int

    @property
    def distinguishable(self) -> bool:
        """The 95 % interval of the difference excludes 0."""
        return self.pairs > 0 and (self.lo > 0 or self.hi < 0)

    def format(self, digits: int = 1) -> str:
        return f"{self.diff:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


def wilson_percent(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95 % interval of successes/n in percent: policies.stats.wilson_interval (the formula the eval
    JSONs use; importing it does not load torch)."""
    from theia_eval.policies.stats import wilson_interval

    lo, hi = wilson_interval(successes, n, z)
    return 100.0 * lo, 100.0 * hi


def prune(forest: Forest) -> dict[str, list[list[np.ndarray]]]:
    """The forest without empty runs, tasks and suites; suites in name order."""
    out = {}
    for suite in sorted(forest):
        tasks = [[np.asarray(r, np.float64) for r in task if len(r)] for task in forest[suite]]
        tasks = [t for t in tasks if t]
        if tasks:
            out[suite] = tasks
    return out


def point(forest: Forest) -> float:
    """Mean over suites of the mean over tasks of the mean over runs of the mean over episodes."""
    forest = prune(forest)
    if not forest:
        return math.nan
    return float(np.mean([np.mean([np.mean([r.mean() for r in task]) for task in tasks])
                          for tasks in forest.values()]))


def _picks(rng: np.random.Generator, rows: int, k: int, resample: bool) -> np.ndarray:
    """Indices (rows, k): k draws with replacement per row, or 0..k-1 in every row."""
    if resample and k > 1:
        return rng.integers(0, k, (rows, k))
    return np.broadcast_to(np.arange(k), (rows, k))


def task_replicates(runs: Sequence[np.ndarray], m: int, levels: tuple[str, ...], rng: np.random.Generator):
    """m independent bootstrap replicates of one task's mean (runs, then episodes within each pick)."""
    pick = _picks(rng, m, len(runs), "seeds" in levels)
    out = np.empty(pick.shape)
    for j, x in enumerate(runs):
        mask = pick == j
        c = int(mask.sum())
        if c == 0:
            continue
        if "episodes" in levels and len(x) > 1:
            out[mask] = x[rng.integers(0, len(x), (c, len(x)))].mean(1)
        else:
            out[mask] = x.mean()
    return out.mean(1)


def suite_replicates(tasks: Sequence[Sequence[np.ndarray]], r: Resampling, rng: np.random.Generator):
    """Bootstrap replicates of a suite's mean over tasks (every picked task gets its own inner resample)."""
    pick = _picks(rng, r.resamples, len(tasks), "tasks" in r.levels)
    out = np.empty(pick.shape)
    for k, runs in enumerate(tasks):
        mask = pick == k
        if mask.any():
            out[mask] = task_replicates(runs, int(mask.sum()), r.levels, rng)
    return out.mean(1)


def replicates(forest: Forest, r: Resampling) -> np.ndarray:
    """Bootstrap replicates of `point(forest)`; the same seed gives the same replicates."""
    forest = prune(forest)
    if not forest:
        return np.full(r.resamples, math.nan)
    rng = np.random.default_rng(r.seed)
    return np.mean([suite_replicates(tasks, r, rng) for tasks in forest.values()], axis=0)


def counts(forest: Forest) -> tuple[int, int, int]:
    """(tasks, runs, episodes) of a forest."""
    forest = prune(forest)
    tasks = [t for ts in forest.values() for t in ts]
    return len(tasks), sum(len(t) for t in tasks), sum(len(r) for t in tasks for r in t)


def estimate(forest: Forest, r: Resampling) -> Estimate | None:
    """The mean of a forest with its bootstrap interval (None when it holds no episode)."""
    n_tasks, n_runs, n_eps = counts(forest)
    if n_eps == 0:
        return None
    lo, hi = np.percentile(replicates(forest, r), [2.5, 97.5])
    return Estimate(point(forest), float(lo), float(hi), n_tasks, n_runs, n_eps)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of wins vs losses under p = 1/2 (ties dropped); 1.0 with no pairs."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def paired(diffs: Forest, r: Resampling) -> Paired:
    """Paired comparison from a forest of per-episode differences a - b."""
    n_tasks, _, n_pairs = counts(diffs)
    flat = np.concatenate([x for ts in prune(diffs).values() for t in ts for x in t]) if n_pairs else np.zeros(0)
    wins, losses = int((flat > 0).sum()), int((flat < 0).sum())
    if n_pairs == 0:
        return Paired(math.nan, math.nan, math.nan, 1.0, 0, 0, 0, 0)
    lo, hi = np.percentile(replicates(diffs, r), [2.5, 97.5])
    return Paired(point(diffs), float(lo), float(hi), sign_test(wins, losses), n_pairs, wins, losses, n_tasks)


def pair_runs(a_seeds: Sequence[int], a: np.ndarray, b_seeds: Sequence[int], b: np.ndarray) -> np.ndarray:
    """Differences a - b over the evaluation seeds both runs have, in seed order."""
    ia = {int(s): i for i, s in enumerate(a_seeds)}
    ib = {int(s): i for i, s in enumerate(b_seeds)}
    shared = sorted(set(ia) & set(ib))
    return np.asarray([a[ia[s]] - b[ib[s]] for s in shared], np.float64)
