"""Small statistics for reporting: Wilson score interval of a success rate, mean +- standard error."""
from __future__ import annotations

import math
from collections.abc import Sequence

from theia_eval.errors import InputError

Z95 = 1.96


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) for successes/n; z = 1.96 gives 95 %.

    center = (p + z^2 / 2n) / (1 + z^2 / n), half = z sqrt(p (1-p) / n + z^2 / 4n^2) / (1 + z^2 / n).
    Unlike the normal interval it stays inside [0, 1] and is not empty at 0/n or n/n.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise InputError(f"wilson_interval needs n >= 1 and 0 <= successes <= n; got {successes}/{n}.")
    p, z2 = successes / n, z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def mean_sem(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean = sample std (ddof 1) / sqrt(n)); the s.e. is nan for one value."""
    xs = [float(v) for v in values]
    if not xs:
        raise InputError("mean_sem needs at least one value.")
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, math.nan
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(var / len(xs))


def format_mean_sem(values: Sequence[float], digits: int = 1) -> str:
    """'mean +- s.e.' as the VC-1 model card prints it (just the mean for one value)."""
    mean, sem = mean_sem(values)
    return f"{mean:.{digits}f}" if math.isnan(sem) else f"{mean:.{digits}f} +- {sem:.{digits}f}"
