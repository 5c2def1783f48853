"""Simulator state vectors: MuJoCo's full physics state plus the model parameters an episode draws.

Some tasks draw their episode by editing the *model* (dm_control reacher moves its target geom,
Adroit pen rotates its target body, relocate places the ball and the target site), so qpos/qvel
alone cannot restore an episode. Such tasks append these values to their state vector:
state = [mjSTATE_FULLPHYSICS vector, parameters in `ModelParam` order].
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelParam:
    """Some columns of one named row of an MjModel array (e.g. geom_pos['target'][:2])."""

    field: str  # MjModel array named <kind>_<what>, e.g. "geom_pos", "body_quat", "site_pos"
    element: str  # name of the geom/body/site
    columns: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.columns)

    def row(self, model) -> int:
        """Index of the named element in its array."""
        kind = self.field.split("_", 1)[0]
        return getattr(model, kind)(self.element).id


def params_size(params: Sequence[ModelParam]) -> int:
    return sum(p.size for p in params)


def param_values(params: Sequence[ModelParam], model) -> np.ndarray:
    """The current values of `params` in `model`, concatenated."""
    values = [getattr(model, p.field)[p.row(model), list(p.columns)] for p in params]
    return np.concatenate(values).astype(np.float64) if values else np.zeros(0)


def set_param_values(params: Sequence[ModelParam], model, values: np.ndarray) -> None:
    """Write a flat vector of parameter values into `model`."""
    start = 0
    for p in params:
        getattr(model, p.field)[p.row(model), list(p.columns)] = values[start:start + p.size]
        start += p.size


def split_state(params: Sequence[ModelParam], state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mjSTATE_FULLPHYSICS vector, parameter values) of a state vector."""
    n = params_size(params)
    return state[:len(state) - n], state[len(state) - n:]


def state_size(model) -> int:
    """Length of the mjSTATE_FULLPHYSICS vector of a model."""
    import mujoco

    return mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)


def full_state(model, data) -> np.ndarray:
    """The mjSTATE_FULLPHYSICS vector of `data` (time, qpos, qvel, act, ...)."""
    import mujoco

    out = np.empty(state_size(model))
    mujoco.mj_getState(model, data, out, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    return out


def set_full_state(model, data, state: np.ndarray) -> None:
    """Load a mjSTATE_FULLPHYSICS vector into `data` and recompute derived quantities."""
    import mujoco

    mujoco.mj_setState(model, data, np.asarray(state, dtype=np.float64),
                       mujoco.mjtState.mjSTATE_FULLPHYSICS)
    mujoco.mj_forward(model, data)
