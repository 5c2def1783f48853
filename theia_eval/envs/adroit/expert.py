"""Privileged Adroit experts: sampling MPC (`envs/mpc.py`) on the true hand model.

The planner rolls candidate plans out on a private copy of the task's model compiled with extra
`framepos` sensors (pen tip/bottom, goal sites, ball, palm), so the rollouts return exactly the
positions the task's dense reward needs; sensors do not change the dynamics. The copy gets the
env's actuator gains (gymnasium-robotics rescales them after loading the XML) and each episode's
randomized parameters from the state vector.

Rewards (the D4RL/mj_envs dense rewards written on arrays):
- pen: -distance + orientation similarity, +10 / +50 when near the goal with similarity > 0.9 /
  0.95, -5 when the pen falls below z 0.075.
- relocate: -0.1 |palm - ball|; once the ball is off the table +1 - 0.5 |palm - target|
  - 0.5 |ball - target|; +10 / +20 when the ball is within 0.1 / 0.05 of the target.
  (gymnasium-robotics 1.4.2's own relocate reward has +0.1 |palm - ball|, a known regression.)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from theia_eval.envs.adroit.sim import AdroitTask, make_gym_env
from theia_eval.envs.mpc import MPCConfig, RewardFn, SamplingMPC, describe, plan_from_state
from theia_eval.errors import InputError

# sensor name -> (object type, object name): positions the rewards read, in this order
# ("xbody": the body frame, as data.xpos; "body" would be the inertial frame)
PEN_SENSORS = {"obj": ("xbody", "Object"), "goal": ("site", "eps_ball"),
               "top": ("site", "object_top"), "bottom": ("site", "object_bottom"),
               "goal_top": ("site", "target_top"), "goal_bottom": ("site", "target_bottom")}
RELOCATE_SENSORS = {"palm": ("site", "S_grasp"), "obj": ("xbody", "Object"),
                    "target": ("site", "target")}


def _positions(sensors: np.ndarray, names: dict) -> dict[str, np.ndarray]:
    """Split (..., 3 * len(names)) sensordata into named (..., 3) positions."""
    return {k: sensors[..., 3 * i:3 * i + 3] for i, k in enumerate(names)}


PEN_DROP_PLAN_Z = 0.15  # the planner is penalized below this height (the env: 0.075; rest: 0.23)


PEN_DIST_PLAN_WEIGHT = 5.0  # the planner weighs the pen's distance to the goal 5x (the env: 1x)


def pen_reward(pen_length: float, goal_length: float, drop_z: float = PEN_DROP_PLAN_Z,
               dist_weight: float = PEN_DIST_PLAN_WEIGHT) -> RewardFn:
    """The pen task's dense reward on rollout sensordata, with planning shaping: the drop
    penalty starts at `drop_z` and the distance term is weighted by `dist_weight`."""
    def reward(qpos: np.ndarray, qvel: np.ndarray, sensors: np.ndarray) -> np.ndarray:
        p = _positions(sensors, PEN_SENSORS)
        dist = np.linalg.norm(p["obj"] - p["goal"], axis=-1)
        similarity = np.sum((p["top"] - p["bottom"]) / pen_length
                            * (p["goal_top"] - p["goal_bottom"]) / goal_length, axis=-1)
        near = dist < 0.075
        return (-dist_weight * dist + similarity + 10.0 * (near & (similarity > 0.9))
                + 50.0 * (near & (similarity > 0.95)) - 5.0 * (p["obj"][..., 2] < drop_z))
    return reward


RELOCATE_REACH_PLAN_WEIGHT = 1.0  # the planner weighs |palm - ball| 10x the D4RL reward (0.1)
# planning shaping against two ways the MPC used to lose the ball (it knocked the ball off the table on 26 of 30
# demo seeds): the carry terms count only while the ball is off the table AND in the hand (within
# RELOCATE_HOLD_RADIUS of the palm), so a flung ball earns nothing; the ball's displacement on the table before it
# is held costs RELOCATE_PUSH_WEIGHT per metre, and a ball below the table surface RELOCATE_FALL_PENALTY a step
# (benchmarks/RESULTS.md, "Issue 13: the relocate expert")
RELOCATE_HOLD_RADIUS = 0.08
RELOCATE_PUSH_WEIGHT = 2.0
RELOCATE_FALL_PENALTY = 5.0
RELOCATE_OBJECT_SLIDES = slice(30, 32)  # qpos of the ball's x/y slide joints (OBJTx, OBJTy): its table displacement


def relocate_reward(qpos: np.ndarray | None, qvel: np.ndarray | None, sensors: np.ndarray,
                    reach_weight: float = RELOCATE_REACH_PLAN_WEIGHT, hold_radius: float = RELOCATE_HOLD_RADIUS,
                    push_weight: float = RELOCATE_PUSH_WEIGHT, fall_penalty: float = RELOCATE_FALL_PENALTY
                    ) -> np.ndarray:
    """The relocate task's dense reward (D4RL sign) on rollout sensordata, with the reach term weighted by
    `reach_weight`, the carry terms credited only for a ball within `hold_radius` of the palm, minus pushing
    (`push_weight` per metre on the table, from qpos) and dropping the ball (planning shaping; the metric stays the
    env's success rule). hold_radius=inf, push_weight=0 and fall_penalty=0 give the env's own reward."""
    p = _positions(sensors, RELOCATE_SENSORS)
    to_obj = np.linalg.norm(p["palm"] - p["obj"], axis=-1)
    goal = np.linalg.norm(p["obj"] - p["target"], axis=-1)
    held = (p["obj"][..., 2] > 0.04) & (to_obj < hold_radius)
    carry = 1.0 - 0.5 * np.linalg.norm(p["palm"] - p["target"], axis=-1) - 0.5 * goal
    out = -reach_weight * to_obj + held * carry + 10.0 * (goal < 0.1) + 20.0 * (goal < 0.05)
    if push_weight:
        out = out - push_weight * np.linalg.norm(qpos[..., RELOCATE_OBJECT_SLIDES], axis=-1) * ~held
    if fall_penalty:
        out = out - fall_penalty * (p["obj"][..., 2] < 0.0)
    return out


@dataclass(frozen=True)
class AdroitRecipe:
    """How one Adroit task's MPC expert plans."""

    sensors: dict
    reward: Callable[[object], RewardFn]  # gym env -> reward function
    mpc: MPCConfig = field(default_factory=MPCConfig)


RECIPES: dict[str, AdroitRecipe] = {
    "pen": AdroitRecipe(PEN_SENSORS, lambda env: pen_reward(env.pen_length, env.tar_length),
                        MPCConfig(samples=32, horizon=20, noise=0.2, temperature=0.05, noise_hold=4)),
    "relocate": AdroitRecipe(RELOCATE_SENSORS, lambda env: relocate_reward,
                             MPCConfig(samples=32, horizon=20, noise=0.2, temperature=0.05,
                                       noise_hold=4)),
}


def planning_model(env, sensors: dict):
    """The env's model recompiled with framepos sensors and the env's actuator gains; returns
    (model, index of our sensors' values in sensordata)."""
    import mujoco

    spec = mujoco.MjSpec.from_file(env.fullpath)
    for name, (kind, target) in sensors.items():
        spec.add_sensor(name=f"plan_{name}", type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
                        objtype=getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}"), objname=target)
    model = spec.compile()
    for key in ("actuator_gainprm", "actuator_biasprm", "actuator_ctrlrange"):
        getattr(model, key)[:] = getattr(env.model, key)
    index = np.concatenate([model.sensor(f"plan_{n}").adr[0] + np.arange(3) for n in sensors])
    return model, index


def _on_sensors(reward: RewardFn, index: np.ndarray) -> RewardFn:
    """`reward` reading only the planner's sensors out of the model's sensordata."""
    def picked(qpos: np.ndarray, qvel: np.ndarray, sensors: np.ndarray) -> np.ndarray:
        return reward(qpos, qvel, sensors[..., index])
    return picked


class AdroitMPCExpert:
    """Sampling MPC on a sensor-augmented copy of the hand model; returns normalized actions."""

    def __init__(self, task: AdroitTask, recipe: AdroitRecipe, mpc: MPCConfig | None = None) -> None:
        env = make_gym_env(task)
        env.reset(seed=0)  # pen computes its pen/goal lengths here
        self.model, index = planning_model(env, recipe.sensors)
        self.act_mean, self.act_rng = env.act_mean.copy(), env.act_rng.copy()
        reward, frame_skip = recipe.reward(env), env.frame_skip
        env.close()
        self.task = task
        self.mpc = SamplingMPC(self.model, _on_sensors(reward, index), knot_steps=frame_skip, reward_every=frame_skip,
                               cfg=mpc or recipe.mpc)
        self._last_time = np.inf

    def get_action(self, state: np.ndarray) -> np.ndarray:
        ctrl = plan_from_state(self, state)
        return np.clip((ctrl - self.act_mean) / self.act_rng, -1.0, 1.0)


def make_expert(task: AdroitTask, **mpc_overrides) -> AdroitMPCExpert:
    """The privileged MPC expert of an Adroit task (MPC settings may be overridden)."""
    if task.name not in RECIPES:
        raise InputError(f"no expert for adroit/{task.name}; experts exist for {sorted(RECIPES)}")
    recipe = RECIPES[task.name]
    mpc = replace(recipe.mpc, **mpc_overrides) if mpc_overrides else None
    return AdroitMPCExpert(task, recipe, mpc)


def expert_source(task: AdroitTask) -> str:
    """The expert and its settings, as stored in demo files (a file of other settings is refused; rollout threads
    do not change the plans, so they are left out). Relocate's record names its planning-reward shaping, which
    issue 13 changed (demos of the earlier reward are refused)."""
    if task.name not in RECIPES:
        raise InputError(f"no expert for adroit/{task.name}; experts exist for {sorted(RECIPES)}")
    mpc = describe(RECIPES[task.name].mpc)
    shaping = (f"; reward: carry credited within {RELOCATE_HOLD_RADIUS} of the palm, push {RELOCATE_PUSH_WEIGHT}, "
               f"drop {RELOCATE_FALL_PENALTY}" if task.name == "relocate" else "")
    return f"privileged expert: sampling MPC ({mpc}){shaping}"
