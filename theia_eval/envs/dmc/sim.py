"""DeepMind Control Suite tasks of CortexBench: `dmc/<domain>-<task>` and the suite `cortexbench-dmc`.

Protocol facts (shared/spec/cortexbench.md; eai-vc's DMC_BC_config.yaml):
- 1000 simulator control steps per episode, the action repeated `action_repeat` times per policy
  step (so the policy acts 1000 / action_repeat times), reward summed over the repeats.
  Action repeats: walker 2, finger 2, cheetah 4, reacher 4. ASSUMPTION: the eai-vc configs name
  only the env ids (dmc_walker_walk-v1 ...) and leave the repeat to the dmc2gym port; these are
  the common PlaNet/CURL/DrQ values, which the brief of this port also names.
- camera_id 0 of each model (walker/cheetah `side`, finger `cam0`, reacher `fixed`); no proprio.
- normalized score = return / 10 (a 1000-step episode returns at most 1000).

Episodes are seeded: reset(seed) gives the task a fresh `RandomState(seed)` before dm_control's
`initialize_episode`, which draws the initial pose (and reacher's target).

State: MuJoCo's mjSTATE_FULLPHYSICS vector (time, qpos, qvel, act) followed by the model
parameters an episode randomizes (reacher: the target's x, y). It restores an episode exactly and
is what the privileged experts (`envs/dmc/expert.py`) read.

Success: DMC tasks have no success flag. The per-step flag is False except at the episode's last
step, where it says whether the return reached the task's `success_return` (scaled by the
fraction of the 1000 steps the episode ran). So "episode success" = "expert-level episode":
demo collection keeps only such episodes, and `post_success_steps` never shortens a DMC demo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from theia_eval.envs.simstate import ModelParam, full_state, param_values, params_size, state_size
from theia_eval.envs.tasks import TaskSpec

FAMILY = "dmc"
EPISODE_STEPS = 1000  # simulator control steps of one protocol episode


@dataclass(frozen=True)
class DMCTask:
    """Facts of one CortexBench DMC task."""

    name: str  # our short name, e.g. "walker-walk"
    domain: str
    task: str
    action_repeat: int
    camera: str  # the name of camera id 0
    action_dim: int
    success_return: float  # return of a full 1000-step episode counted as expert level
    params: tuple[ModelParam, ...] = ()

    @property
    def horizon(self) -> int:
        """Policy steps of one protocol episode."""
        return EPISODE_STEPS // self.action_repeat

    @property
    def upstream_id(self) -> str:
        """The CortexBench env id (eai-vc dataset file name without .pickle)."""
        return f"dmc_{self.domain}_{self.task}-v1"


REACHER_TARGET = ModelParam("geom_pos", "target", (0, 1))
DMC_TASKS: dict[str, DMCTask] = {t.name: t for t in (
    DMCTask("walker-stand", "walker", "stand", 2, "side", 6, success_return=900.0),
    DMCTask("walker-walk", "walker", "walk", 2, "side", 6, success_return=800.0),
    DMCTask("reacher-easy", "reacher", "easy", 4, "fixed", 2, success_return=900.0,
            params=(REACHER_TARGET,)),
    DMCTask("cheetah-run", "cheetah", "run", 4, "side", 6, success_return=500.0),
    DMCTask("finger-spin", "finger", "spin", 2, "cam0", 2, success_return=800.0),
)}
def facts(spec: TaskSpec) -> DMCTask:
    """The DMC facts of a registered `dmc/...` TaskSpec."""
    return DMC_TASKS[spec.name.split("/", 1)[1]]


def dm_control_suite():
    """`dm_control.suite`, imported with dm_control's own OpenGL backend off.

    We render with mujoco.Renderer (envs/renderer.py). dm_control's EGL backend loads libOpenGL
    with RTLD_GLOBAL at import, after which importing torchvision segfaults the process (seen with
    torch 2.14.1 / torchvision 0.29.1 here), so dm_control must never import its backend.
    """
    import sys

    import mujoco  # noqa: F401  (first, under the real MUJOCO_GL: mujoco.Renderer needs it)

    if "dm_control._render" not in sys.modules:
        saved = os.environ.get("MUJOCO_GL")
        os.environ["MUJOCO_GL"] = "disable"
        try:
            import dm_control._render  # noqa: F401  (caches the disabled backend)
        finally:
            if saved is None:
                del os.environ["MUJOCO_GL"]
            else:
                os.environ["MUJOCO_GL"] = saved
    from dm_control import suite

    return suite


def load_env(task: DMCTask, seed: int = 0):
    """A dm_control environment of `task` without a time limit (our env counts the steps)."""
    return dm_control_suite().load(task.domain, task.task,
                                   task_kwargs={"random": int(seed), "time_limit": float("inf")})


class DMCSim:
    """One dm_control task behind the `Simulator` protocol (action repeat inside `step`)."""

    def __init__(self, task: DMCTask, horizon: int) -> None:
        self.task, self.horizon = task, int(horizon)
        self.env = load_env(task)
        self._return, self._t = 0.0, 0

    @property
    def model(self):
        return self.env.physics.model.ptr

    @property
    def data(self):
        return self.env.physics.data.ptr

    def state(self) -> np.ndarray:
        return np.concatenate([full_state(self.model, self.data),
                               param_values(self.task.params, self.model)])

    def reset(self, seed: int) -> np.ndarray:
        self.env.task._random = np.random.RandomState(int(seed))  # dm_control keeps it here
        self.env.reset()
        self._return, self._t = 0.0, 0
        return self.state()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, dict]:
        reward = 0.0
        for _ in range(self.task.action_repeat):
            reward += float(self.env.step(action).reward)
        self._return += reward
        self._t += 1
        return self.state(), reward, {"success": self._expert_level_at_end()}

    def _expert_level_at_end(self) -> bool:
        """True only at the last step, when the return reached the (scaled) success return."""
        if self._t != self.horizon:
            return False
        fraction = self._t * self.task.action_repeat / EPISODE_STEPS
        return self._return >= self.task.success_return * fraction

    def close(self) -> None:
        self.env.close()


def no_proprio(state: np.ndarray) -> np.ndarray:
    """DMC policies see no proprioception (CortexBench: add_proprio False)."""
    return np.asarray(state)[..., :0]


def state_dim(task: DMCTask) -> int:
    """Length of the state vector (FULLPHYSICS + randomized parameters), from the model."""
    env = load_env(task)
    try:
        return state_size(env.physics.model.ptr) + params_size(task.params)
    finally:
        env.close()


STATE_DIMS = {"walker": 19, "cheetah": 19, "finger": 7, "reacher": 5}  # checked by tests/envs/test_dmc.py
