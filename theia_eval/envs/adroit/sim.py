"""Adroit hand tasks of CortexBench (gymnasium-robotics v1): `adroit/pen`, `adroit/relocate`.

Protocol facts (shared/spec/cortexbench.md; eai-vc gym_wrapper.get_proprioception):
- AdroitHandPen-v1 / AdroitHandRelocate-v1 (the mujoco 3 ports of mj_envs pen-v0 / relocate-v0),
  camera `vil_camera` (pos (0, -1.2, 1.2), quat (0.92388, 0.382683, 0, 0): already in both models).
- proprio: the hand's joint angles, obs[:24] (pen: the wrist and fingers) / obs[:30] (relocate: the
  arm's 6 base joints too), which are qpos[:24] / qpos[:30].
- horizon 100 (pen) / 200 (relocate); an episode succeeds when the env's per-step `success`
  (goal achieved) held on more than 20 (pen) / 25 (relocate) steps.

Per-step flag: the flag our env reports is "the success rule is met so far" (goal achieved on more
than 20/25 steps up to now), so the episode's success is the flag at the final step, as for
Meta-World, and demo collection's `post_success_steps` counts from the step the rule was met.
Use post_success_steps=null for full-horizon demos like CortexBench's.

State: [mjSTATE_FULLPHYSICS (time, qpos, qvel), episode parameters]: pen the target's orientation
(body_quat of `target`), relocate the ball's placement (body_pos of `Object`) and the target
(site_pos of `target`). It restores an episode exactly (the importer renders Minari/D4RL states
through it).

Reward: the env's own dense reward. Note gymnasium-robotics 1.4.2 prints that relocate's dense
reward changed in 1.2.1 without a version bump; the CortexBench metric is success, not reward.
"""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theia_eval.envs.simstate import (ModelParam, full_state, param_values, params_size,
                                      set_full_state, set_param_values, split_state)
from theia_eval.envs.tasks import TaskSpec
from theia_eval.errors import InputError

FAMILY = "adroit"
CAMERA = "vil_camera"


@dataclass(frozen=True)
class AdroitTask:
    """Facts of one CortexBench Adroit task."""

    name: str
    upstream_id: str  # gymnasium-robotics id
    cortexbench_id: str  # the original mj_envs id (eai-vc dataset pickle name)
    horizon: int
    min_goal_steps: int  # success: goal achieved on MORE than this many steps
    hand_dofs: int  # proprio = qpos[:hand_dofs]
    action_dim: int
    nq: int
    params: tuple[ModelParam, ...]

    @property
    def state_dim(self) -> int:
        return 1 + 2 * self.nq + params_size(self.params)  # time, qpos, qvel (nq == nv), params


ADROIT_TASKS: dict[str, AdroitTask] = {t.name: t for t in (
    AdroitTask("pen", "AdroitHandPen-v1", "pen-v0", horizon=100, min_goal_steps=20, hand_dofs=24,
               action_dim=24, nq=30, params=(ModelParam("body_quat", "target", (0, 1, 2, 3)),)),
    AdroitTask("relocate", "AdroitHandRelocate-v1", "relocate-v0", horizon=200, min_goal_steps=25,
               hand_dofs=30, action_dim=30, nq=36,
               params=(ModelParam("body_pos", "Object", (0, 1, 2)),
                       ModelParam("site_pos", "target", (0, 1, 2)))),
)}


def pen_goal_achieved(env) -> bool:
    """AdroitHandPen-v1's per-step success: pen within 0.075 of the goal, orientation dot > 0.95."""
    data = env.data
    dist = np.linalg.norm(data.xpos[env.obj_body_id] - data.site_xpos[env.eps_ball_site_id])
    pen = (data.site_xpos[env.obj_t_site_id] - data.site_xpos[env.obj_b_site_id]) / env.pen_length
    goal = (data.site_xpos[env.tar_t_site_id] - data.site_xpos[env.tar_b_site_id]) / env.tar_length
    return bool(dist < 0.075 and float(np.dot(pen, goal)) > 0.95)


def relocate_goal_achieved(env) -> bool:
    """AdroitHandRelocate-v1's per-step success: the ball within 0.1 of the target."""
    data = env.data
    return bool(np.linalg.norm(data.xpos[env.obj_body_id] - data.site_xpos[env.target_obj_site_id]) < 0.1)


GOAL_RULES = {"pen": pen_goal_achieved, "relocate": relocate_goal_achieved}


def facts(spec: TaskSpec) -> AdroitTask:
    """The Adroit facts of a registered `adroit/...` TaskSpec."""
    return ADROIT_TASKS[spec.name.split("/", 1)[1]]


# the model files of gymnasium-robotics 1.4.x an Adroit env loads (its envs/assets/adroit_hand/), by upstream id;
# every one of them includes the two shared files, and the meshes and textures live in resources/
MODEL_FILES = {"AdroitHandPen-v1": "adroit_pen.xml", "AdroitHandRelocate-v1": "adroit_relocate.xml",
               "AdroitHandDoor-v1": "adroit_door.xml", "AdroitHandHammer-v1": "adroit_hammer.xml"}
SHARED_FILES = ("adroit_assets.xml", "adroit_model.xml", "resources")
REINSTALL = "reinstall it: `pip install --force-reinstall gymnasium-robotics` (or `make install`)"


def _import_robotics():
    with contextlib.redirect_stderr(io.StringIO()):  # a version notice printed at import
        try:
            import gymnasium_robotics
        except ImportError as exc:
            raise InputError(f"the Adroit tasks need the package gymnasium-robotics, which does not import here "
                             f"({exc}); install the project's dependencies: `make install` "
                             "(or `pip install -e .`)") from exc
    return gymnasium_robotics


def asset_dir() -> Path:
    """gymnasium-robotics' Adroit model folder (envs/assets/adroit_hand), as its envs find it (symlinks
    resolved)."""
    robotics = _import_robotics()
    return Path(os.path.realpath(robotics.__file__)).parent / "envs" / "assets" / "adroit_hand"


def check_assets(upstream_id: str) -> None:
    """Refuse, before anything is built or written, an install of gymnasium-robotics that lacks a file the
    env `upstream_id` loads (its model, the shared includes, the mesh folder), naming the file and the fix."""
    folder = asset_dir()
    names = ([MODEL_FILES[upstream_id]] if upstream_id in MODEL_FILES else []) + list(SHARED_FILES)
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise InputError(f"the Adroit model of {upstream_id} is incomplete: {', '.join(missing)} missing from "
                         f"{folder} (a damaged gymnasium-robotics install); {REINSTALL}")


def check_ready(spec: TaskSpec) -> None:
    """TaskSpec.check_ready of the Adroit tasks: the package and its model files are there."""
    check_assets(spec.upstream_id)


def make_gym_env(task: AdroitTask):
    """The unwrapped gymnasium-robotics env (no TimeLimit: our env counts the steps)."""
    import gymnasium as gym

    check_assets(task.upstream_id)
    gym.register_envs(_import_robotics())
    try:
        return gym.make(task.upstream_id).unwrapped
    except ValueError as exc:  # MuJoCo's model errors: a file the checked ones include is missing or unreadable
        if "XML" not in str(exc) and "resource" not in str(exc) and "file" not in str(exc):
            raise
        raise InputError(f"could not load the Adroit model of {task.upstream_id} from {asset_dir()}: "
                         f"{str(exc).strip().splitlines()[0]}; {REINSTALL}") from exc


class AdroitSim:
    """One Adroit env behind the `Simulator` protocol; the flag is the success rule so far."""

    def __init__(self, task: AdroitTask) -> None:
        self.task = task
        self.env = make_gym_env(task)
        self.goal_steps = 0

    @property
    def model(self):
        return self.env.model

    @property
    def data(self):
        return self.env.data

    def state(self) -> np.ndarray:
        return np.concatenate([full_state(self.model, self.data),
                               param_values(self.task.params, self.model)])

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state vector (parameters first: they move bodies and sites)."""
        physics, params = split_state(self.task.params, np.asarray(state, dtype=np.float64))
        set_param_values(self.task.params, self.model, params)
        set_full_state(self.model, self.data, physics)

    def goal_achieved(self) -> bool:
        """The env's per-step success at the current state (used to label imported states)."""
        return GOAL_RULES[self.task.name](self.env)

    def reset(self, seed: int) -> np.ndarray:
        self.env.reset(seed=int(seed))
        self.goal_steps = 0
        return self.state()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, dict]:
        _, reward, _, _, info = self.env.step(np.asarray(action, dtype=np.float64))
        self.goal_steps += bool(info["success"])
        return self.state(), float(reward), {"success": self.goal_steps > self.task.min_goal_steps,
                                             "goal_achieved": bool(info["success"])}

    def close(self) -> None:
        self.env.close()


def hand_qpos(state: np.ndarray, dofs: int) -> np.ndarray:
    """Proprio: the first `dofs` joint angles (qpos follows the time entry of the state)."""
    return np.asarray(state)[..., 1:1 + dofs]
