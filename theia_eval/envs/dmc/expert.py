"""Privileged DMC experts: they read the simulator state (`envs/dmc/sim.py` state vector) and act.

- reacher-easy: analytic two-link inverse kinematics + a PD controller on the joint angles.
- walker-stand, walker-walk, cheetah-run, finger-spin: sampling MPC (`envs/mpc.py`) on the
  true dynamics with MuJoCo's native batched rollouts, scored by the task's own reward (finger-spin:
  a dense version of its binary reward). `RECIPES` holds each task's planner settings; the walker plans
  on a copy of the model with a coarser physics timestep (walker-stand 4x, walker-walk 5x: 2-2.5 planning
  steps per 0.025 s control step instead of 10).
- every task: `distilled`, a small MLP on the state trained from the default expert by DAgger (`policy.py`,
  `dagger.py`, `theia-eval experts`): one network forward per step instead of a plan.
- the planner tasks: `guided`, the planner with a quarter of its samples drawn around the distilled policy's
  open-loop rollout (`guided.py`): the fallback where the policy alone does not hold the returns.

`kinds.py` (`EXPERT_KINDS`) names the selectable experts (`theia-eval demos expert=distilled`); a task's default comes
first (reacher-easy: `analytic`, the others: `planner`). Each kind says what demo files record
(`task_expert_source`), so demos of different experts or weights are never mixed in one file.

No expert keeps a reference to the environment: each builds its own dm_control model of the task,
so the environment's MjData is never touched and demos replay bit-exactly.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from theia_eval.envs.dmc.sim import DMCTask, load_env
from theia_eval.envs.mpc import MPCConfig, RewardFn, SamplingMPC, describe, plan_from_state
from theia_eval.envs.simstate import split_state
from theia_eval.errors import InputError

WALKER_TORSO_Z0 = 1.3  # walker.xml: torso body at z 1.3; its height is 1.3 + qpos[rootz]
FINGER_PLAN_SPEED = 18.0  # a little above the 15 rad/s goal: damping slows the spinner between flicks


def _tolerance(x: np.ndarray, lower: float, margin: float, sigmoid: str,
               value_at_margin: float = 0.1) -> np.ndarray:
    """dm_control's rewards.tolerance with bounds (lower, inf), on arrays."""
    from dm_control.utils import rewards

    return rewards.tolerance(x, bounds=(lower, float("inf")), margin=margin, sigmoid=sigmoid,
                             value_at_margin=value_at_margin)


def walker_reward(move_speed: float) -> Callable[[object], RewardFn]:
    """dm_control walker reward (stand, or walk at `move_speed`) from qpos and the velocity sensor."""
    def build(model) -> RewardFn:
        def reward(qpos: np.ndarray, qvel: np.ndarray, sensors: np.ndarray) -> np.ndarray:
            height = WALKER_TORSO_Z0 + qpos[..., 0]
            standing = _tolerance(height, 1.2, 0.6, "gaussian")
            upright = (1.0 + np.cos(qpos[..., 2])) / 2.0
            stand = (3.0 * standing + upright) / 4.0
            if move_speed == 0:
                return stand
            move = _tolerance(sensors[..., 0], move_speed, move_speed / 2, "linear", 0.5)
            return stand * (5.0 * move + 1.0) / 6.0
        return reward
    return build


def cheetah_reward(model) -> RewardFn:
    """dm_control cheetah-run reward: forward speed, linear up to 10 m/s."""
    def reward(qpos: np.ndarray, qvel: np.ndarray, sensors: np.ndarray) -> np.ndarray:
        return _tolerance(sensors[..., 0], 10.0, 10.0, "linear", 0.0)
    return reward


def finger_spin_reward(model) -> RewardFn:
    """Dense finger-spin reward: hinge speed in the spin direction, 1 from FINGER_PLAN_SPEED up
    (gaussian below it), instead of the task's binary `speed >= 15 rad/s`."""
    hinge = int(model.jnt_dofadr[model.joint("hinge").id])

    def reward(qpos: np.ndarray, qvel: np.ndarray, sensors: np.ndarray) -> np.ndarray:
        return _tolerance(-qvel[..., hinge], FINGER_PLAN_SPEED, 8.0, "gaussian", 0.1)
    return reward


@dataclass(frozen=True)
class PlannerRecipe:
    """How one task's MPC expert plans."""

    reward: Callable[[object], RewardFn]  # model -> reward function on rollouts
    mpc: MPCConfig = field(default_factory=MPCConfig)
    coarsen: int = 1  # planning model timestep = coarsen x the simulator's


RECIPES: dict[str, PlannerRecipe] = {  # tuned by hand on a few seeds (benchmarks/experts.py --mpc)
    # samples=64: 959 / 941 on the demo seeds 54321-2 (32 samples: 926 / 844, a slow get-up). Since issue 13: a 4x
    # planning timestep (5 steps of 0.01 s per 0.05 s policy step), a 1.2 s look-ahead (24 knots) and one noise
    # draw per 2 knots (smoother plans): 32 samples reach 917-967 on the demo seeds 54321-8 at 0.38x the cost
    # (a draw per knot: 48 samples 822-961; a draw per 2 knots: 36 samples 887-975, 40 samples 968-980 on 54321-4;
    # benchmarks/RESULTS.md, "Issue 13: a shorter cheetah plan and a smoother walker-stand plan")
    "walker-stand": PlannerRecipe(walker_reward(0.0), MPCConfig(samples=32, horizon=24, noise=0.3,
                                                                temperature=0.05, noise_hold=2), coarsen=4),
    # coarsen=5 (2 planning steps of 0.0125 s per control step): 912-942 on the demo seeds 54321-4 at 0.4x the
    # cost of coarsen=2 (benchmarks/RESULTS.md, "Issue 13: cheaper planners"); walker-stand falls at coarsen=5
    "walker-walk": PlannerRecipe(walker_reward(1.0), MPCConfig(samples=48, horizon=16, noise=0.5),
                                 coarsen=5),
    # iterations=2 (two MPPI refinements per step): 618 / 676 on the demo seeds 54321-2 vs 428 / 523
    # with one; samples=256 gave 641 / 575, noise_hold=2 542 / 531 (benchmarks/experts.py --mpc ...);
    # horizon=12 (0.48 s instead of 1 s): 696, 677, 675, 688 on 54321-4 at 0.48x the cost (horizon 16: 612-657,
    # 20: 540-624; benchmarks/RESULTS.md, "Issue 13: a shorter cheetah plan and a smoother walker-stand plan")
    "cheetah-run": PlannerRecipe(cheetah_reward, MPCConfig(samples=128, horizon=12, noise=1.0,
                                                           temperature=0.005, iterations=2)),
    "finger-spin": PlannerRecipe(finger_spin_reward, MPCConfig(samples=192, horizon=7, noise=1.2,
                                                               temperature=0.02)),
}


class MPCExpert:
    """Sampling MPC on a private copy of the task's model."""

    def __init__(self, task: DMCTask, recipe: PlannerRecipe, mpc: MPCConfig | None = None,
                 planner: type[SamplingMPC] = SamplingMPC) -> None:
        env = load_env(task)
        env.reset()  # applies the task's model edits (e.g. finger-spin's hinge damping)
        sim_model = env.physics.model.ptr
        substeps = int(round(env.control_timestep() / sim_model.opt.timestep))
        env.close()
        knot_physics = substeps * task.action_repeat  # physics steps one policy action is held
        if recipe.coarsen < 1 or knot_physics % recipe.coarsen:
            raise InputError(f"{task.name}: coarsen={recipe.coarsen} must divide the {knot_physics} physics steps "
                             f"of a policy step ({substeps} per control step x action repeat {task.action_repeat})")
        self.model = copy.copy(sim_model)
        self.model.opt.timestep = sim_model.opt.timestep * recipe.coarsen
        # the reward is read once per control step; when a planning step spans several control steps (coarsen
        # above the substeps, e.g. cheetah's 1 substep), once per planning step
        per_control = substeps // recipe.coarsen if substeps % recipe.coarsen == 0 else 1
        self.task = task
        self.mpc = planner(self.model, recipe.reward(self.model), knot_steps=knot_physics // recipe.coarsen,
                           reward_every=per_control, cfg=mpc or recipe.mpc)
        self._last_time = np.inf

    def get_action(self, state: np.ndarray) -> np.ndarray:
        return plan_from_state(self, state)


@dataclass(frozen=True)
class ReacherGains:
    """PD gains of the reacher expert (action units per radian, per radian/s)."""

    kp: float = 4.0
    kd: float = 0.4


class ReacherExpert:
    """Two-link inverse kinematics to the target, then PD on the joint angles."""

    def __init__(self, task: DMCTask, gains: ReacherGains = ReacherGains()) -> None:
        env = load_env(task)
        model = env.physics.model.ptr
        self.l1 = float(model.body("hand").pos[0])  # shoulder -> wrist
        self.l2 = float(model.body("finger").pos[0])  # wrist -> fingertip
        env.close()
        self.task, self.gains = task, gains

    def joint_targets(self, target: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Shoulder and wrist angles putting the fingertip on `target` (elbow side nearest to q)."""
        dist = float(np.clip(np.linalg.norm(target), 1e-6, self.l1 + self.l2 - 1e-6))
        cos_wrist = (dist ** 2 - self.l1 ** 2 - self.l2 ** 2) / (2 * self.l1 * self.l2)
        wrist = np.arccos(np.clip(cos_wrist, -1.0, 1.0)) * (1.0 if q[1] >= 0 else -1.0)
        shoulder = np.arctan2(target[1], target[0]) - np.arctan2(
            self.l2 * np.sin(wrist), self.l1 + self.l2 * np.cos(wrist))
        return np.array([shoulder, wrist])

    def get_action(self, state: np.ndarray) -> np.ndarray:
        physics, target = split_state(self.task.params, np.asarray(state, dtype=np.float64))
        q, qd = physics[1:3], physics[3:5]
        err = self.joint_targets(target, q) - q
        err = (err + np.pi) % (2 * np.pi) - np.pi  # shortest way round
        return np.clip(self.gains.kp * err - self.gains.kd * qd, -1.0, 1.0)


def check_known(task: DMCTask) -> None:
    if task.name != "reacher-easy" and task.name not in RECIPES:
        raise InputError(f"no expert for dmc/{task.name}; experts exist for reacher-easy and "
                         f"{', '.join(sorted(RECIPES))}")


def make_expert(task: DMCTask, **mpc_overrides):
    """The default privileged expert of a DMC task (MPC settings may be overridden, e.g. samples=64)."""
    check_known(task)
    if task.name == "reacher-easy":
        if mpc_overrides:
            raise InputError(f"dmc/reacher-easy's expert is analytic (inverse kinematics + PD): it takes no MPC "
                             f"settings, got {mpc_overrides}")
        return ReacherExpert(task)
    return MPCExpert(task, RECIPES[task.name], _mpc(task, mpc_overrides))


def _mpc(task: DMCTask, overrides: dict) -> MPCConfig:
    """The task recipe's MPC settings with `overrides` (MPCConfig fields) applied."""
    from dataclasses import fields

    recipe = RECIPES[task.name]
    unknown = set(overrides) - {f.name for f in fields(MPCConfig)}
    if unknown:
        raise InputError(f"unknown MPC settings {sorted(unknown)} for dmc/{task.name}; valid: "
                         f"{', '.join(f.name for f in fields(MPCConfig))}")
    return replace(recipe.mpc, **overrides) if overrides else recipe.mpc


def expert_source(task: DMCTask, **mpc_overrides) -> str:
    """The default expert and its settings, as stored in demo files (a file of other settings is refused; rollout
    threads do not change the plans, so they are left out)."""

    check_known(task)
    if task.name == "reacher-easy":
        make_expert(task, **mpc_overrides)  # refuses overrides
        g = ReacherGains()
        return f"privileged expert: inverse kinematics + PD (kp {g.kp}, kd {g.kd})"
    recipe, mpc = RECIPES[task.name], _mpc(task, mpc_overrides)
    text = describe(mpc)
    return f"privileged expert: sampling MPC ({text}; planning timestep x{recipe.coarsen})"
