"""Synthetic data for the policy tests: linear experts over random embeddings."""
from __future__ import annotations

import numpy as np
import torch
import pytest

from theia_eval.policies.bc import WindowDataset



def linear_expert(kind: str, grid=(7, 7), dim: int = 4, demos: int = 8, length: int = 64, proprio: int = 4,
                  action: int = 3, expert: str = "full", seed: int = 0) -> WindowDataset:
    """Random float16 embeddings; actions = W_e @ features(e_t) + W_p @ proprio_t (exactly linear).

    features: the flattened embedding ("full") or, for token maps, the token mean ("mean").
    """
    rng = np.random.default_rng(seed)
    n = demos * length
    shape = (n, *grid, dim) if kind == "tokens" else (n, dim)
    emb = rng.standard_normal(shape).astype(np.float16)
    x = emb.astype(np.float32)
    feats = x.reshape(n, -1) if kind == "summary" or expert == "full" else x.mean((1, 2))
    w_e = rng.standard_normal((action, feats.shape[1])) / np.sqrt(feats.shape[1] * feats.var())
    w_p = rng.standard_normal((action, proprio)) / np.sqrt(max(proprio, 1))
    prop = rng.standard_normal((n, proprio)).astype(np.float32)
    actions = (feats @ w_e.T + prop @ w_p.T).astype(np.float32)
    return WindowDataset(emb, actions, prop, [length] * demos, kind)


@pytest.fixture
def make_data():
    return linear_expert


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is as fast as two and immune to a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
