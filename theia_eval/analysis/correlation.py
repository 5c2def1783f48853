"""Pearson and Spearman correlation with percentile-bootstrap intervals, and a plain-words verdict."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MIN_FOR_ANY = 3  # a correlation of fewer points is undefined or trivially +-1


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; nan when either variable is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((xc * xc).sum() * (yc * yc).sum()))
    return float((xc * yc).sum() / denom) if denom > 0 else math.nan


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties get their average rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x), np.float64)
    r[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        r[tied] = r[tied].mean()
    return r


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho = Pearson r of the (tie-averaged) ranks."""
    return pearson(ranks(x), ranks(y))


CORRELATIONS = {"pearson": pearson, "spearman": spearman}


@dataclass(frozen=True)
class Correlation:
    method: str
    value: float
    ci95: tuple[float, float]
    n: int
    resamples: int  # bootstrap resamples with a defined value

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap(x, y, method: str = "pearson", resamples: int = 2000, seed: int = 0) -> Correlation:
    """The correlation and its 95 % percentile-bootstrap interval over resampled (x, y) pairs."""
    fn = CORRELATIONS[method]
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    if n < MIN_FOR_ANY:
        return Correlation(method, math.nan, (math.nan, math.nan), n, 0)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        v = fn(x[idx], y[idx])
        if not math.isnan(v):
            values.append(v)
    ci = (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))) if values else (math.nan, math.nan)
    return Correlation(method, fn(x, y), ci, n, len(values))


def verdict(results: list[Correlation], min_encoders: int) -> str:
    """What the numbers allow one to say, in plain words."""
    n = results[0].n if results else 0
    if n < MIN_FOR_ANY:
        return (f"Only {n} encoder(s) have both an entropy and a score: a correlation needs at least "
                f"{MIN_FOR_ANY} points (and many more to mean anything). No conclusion can be drawn.")
    spans = "; ".join(f"{c.method} {c.value:+.2f}, 95% CI [{c.ci95[0]:+.2f}, {c.ci95[1]:+.2f}]" for c in results)
    if n < min_encoders:
        return (f"Too few encoders to conclude anything: n = {n} (this report asks for at least {min_encoders}). "
                f"The numbers ({spans}) are shown for completeness only.")
    if any(math.isnan(c.value) for c in results):
        return f"A correlation is undefined (constant entropy or score across encoders): {spans}."
    signs = {np.sign(c.ci95[0]) for c in results} | {np.sign(c.ci95[1]) for c in results}
    if signs == {1.0}:
        return f"Higher entropy goes with higher scores across these {n} encoders ({spans})."
    if signs == {-1.0}:
        return f"Higher entropy goes with lower scores across these {n} encoders ({spans})."
    return f"No clear relation across these {n} encoders: the intervals include 0 ({spans})."
