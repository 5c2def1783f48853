"""Feature-norm entropy (the Theia paper's analysis), with the bin count and token set explicit.

For each image take the L2 norm of every spatial token, pool the norms over the dataset, histogram them
and take the Shannon entropy (natural log) of the normalized histogram. The paper never published its
bin count or token set, so both are parameters and are reported with every number.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from theia_eval.errors import InputError


@dataclass(frozen=True)
class NormEntropy:
    entropy: float  # nats
    bins: int
    max_entropy: float  # log(bins): the entropy of a uniform histogram
    range: tuple[float, float]
    num_tokens: int
    token_set: str

    def to_dict(self) -> dict:
        return asdict(self)


def token_norms(tokens: torch.Tensor | np.ndarray) -> np.ndarray:
    """L2 norm of every spatial token of (B, h, w, C) features, flattened to (B*h*w,) float64."""
    t = torch.as_tensor(tokens).float()
    if t.ndim != 4:
        raise InputError(f"tokens must be (B, h, w, C), got shape {tuple(t.shape)}.")
    return t.norm(dim=-1).flatten().double().numpy()


def histogram_entropy(values: np.ndarray, bins: int = 100, value_range: tuple[float, float] | None = None) -> float:
    """Shannon entropy (nats) of the normalized histogram of `values`; constant values give 0."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if bins < 1:
        raise InputError(f"bins must be >= 1, got {bins}.")
    if values.size == 0:
        raise InputError("no values to histogram: encode at least one image.")
    if not np.all(np.isfinite(values)):
        raise InputError("token norms contain NaN or inf: check the encoder output.")
    lo, hi = value_range if value_range is not None else (values.min(), values.max())
    if hi <= lo:
        return 0.0
    counts, _ = np.histogram(values, bins=bins, range=(lo, hi))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def norm_entropy(norms: np.ndarray, bins: int = 100, token_set: str = "all spatial tokens") -> NormEntropy:
    """Feature-norm entropy with its parameters recorded."""
    norms = np.asarray(norms, dtype=np.float64)
    h = histogram_entropy(norms, bins)
    rng = (float(norms.min()), float(norms.max())) if norms.size else (0.0, 0.0)
    return NormEntropy(h, bins, float(np.log(bins)), rng, int(norms.size), token_set)


def bin_sensitivity(norms: np.ndarray, bins_list=(10, 25, 50, 100, 200)) -> dict[int, float]:
    """Entropy at several bin counts: a conclusion that flips with the bin count is not a conclusion."""
    return {b: histogram_entropy(norms, b) for b in bins_list}
