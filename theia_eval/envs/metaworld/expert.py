"""Meta-World's scripted experts (metaworld.policies.ENV_POLICY_MAP[<task>-v3])."""
from __future__ import annotations

import warnings

import numpy as np


class MetaWorldExpert:
    """Meta-World's scripted policy for one task."""

    def __init__(self, upstream_id: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        # upstream warns on every policy with large gains; the env clips actions to [-1, 1] anyway
        warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
        self.policy = ENV_POLICY_MAP[upstream_id]()

    def get_action(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy.get_action(state), dtype=np.float64)
