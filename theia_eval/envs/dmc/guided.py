"""The `guided` DMC expert: the sampling MPC with few samples, drawn around the distilled policy's plan.

At every step the distilled policy (`policy.py`) is rolled out open loop on the planner's model from the current
state for the plan's horizon, one knot per policy step: its actions are the prior plan. The MPPI candidates are
the planner's own warm-started plan, the prior plan and `samples - 2` Gaussian perturbations of the prior (later
refinement rounds perturb the updated plan, as the planner does). So a good policy lets a few samples do what the
planner's full recipe does from its warm start alone, and the planner corrects the policy where it drifts.
Settings: the task's recipe with `GUIDED_SAMPLES` samples (a quarter of the recipe's); the policy rollout costs
one horizon of sequential physics steps plus one network forward per knot.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from theia_eval.envs.dmc.expert import RECIPES, MPCExpert
from theia_eval.envs.dmc.policy import distilled_source, load_policy, weights_file
from theia_eval.envs.dmc.sim import DMCTask
from theia_eval.envs.mpc import MPCConfig, SamplingMPC, describe, plan_from_state
from theia_eval.envs.simstate import full_state, set_param_values, split_state
from theia_eval.errors import InputError

GUIDED_SAMPLES = {name: max(4, recipe.mpc.samples // 4) for name, recipe in RECIPES.items()}


class GuidedMPC(SamplingMPC):
    """MPPI whose first-round samples perturb a prior plan; the warm-started plan and the prior are candidates."""

    prior: np.ndarray | None = None  # (horizon, nu), set before each call; used by the call's first round

    def candidates(self, samples: int | None = None, noise: float | None = None) -> np.ndarray:
        if self.prior is None:
            return super().candidates(samples, noise)
        samples, noise = samples or self.cfg.samples, noise or self.cfg.noise
        plans = np.concatenate([self.plan[None], self.prior[None], self.perturbations(self.prior, samples - 2, noise)])
        self.prior = None
        return np.clip(plans, self.low, self.high)


def guided_config(task: DMCTask, **overrides) -> MPCConfig:
    """The task recipe's MPC settings with the guided sample count (and `overrides`, MPCConfig fields)."""
    if task.name not in RECIPES:
        raise InputError(f"dmc/{task.name} has no planner to guide; guided experts exist for "
                         f"{', '.join(sorted(RECIPES))}")
    return replace(RECIPES[task.name].mpc, **{"samples": GUIDED_SAMPLES[task.name], **overrides})


class GuidedExpert(MPCExpert):
    """The planner with few samples around the distilled policy's open-loop plan."""

    def __init__(self, task: DMCTask, weights: str | None = None, **mpc_overrides) -> None:
        import mujoco

        cfg = guided_config(task, **mpc_overrides)
        super().__init__(task, RECIPES[task.name], cfg, planner=GuidedMPC)
        self.weights = weights_file(task, weights)
        self.policy = load_policy(self.weights, task)
        self.data = mujoco.MjData(self.model)

    def policy_plan(self, physics: np.ndarray, params: np.ndarray) -> np.ndarray:
        """The policy's actions along its own open-loop rollout on the planning model, one per knot."""
        import mujoco

        mujoco.mj_setState(self.model, self.data, physics, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        plan = np.empty((self.mpc.cfg.horizon, self.model.nu))
        for k in range(len(plan)):
            plan[k] = self.policy(np.concatenate([full_state(self.model, self.data), params]))
            self.data.ctrl[:] = plan[k]
            for _ in range(self.mpc.knot_steps):
                mujoco.mj_step(self.model, self.data)
        return plan

    def get_action(self, state: np.ndarray) -> np.ndarray:
        physics, params = split_state(self.task.params, np.asarray(state, dtype=np.float64))
        set_param_values(self.task.params, self.model, params)
        self.mpc.prior = self.policy_plan(physics, params)
        action = plan_from_state(self, state)  # (a new episode resets the plan, not the prior)
        self.mpc.prior = None  # a call that does not plan (replan_every > 1) leaves no stale prior
        return action


def guided_source(task: DMCTask, weights: str | None = None) -> str:
    """What demo files of the guided expert record: its MPC settings and the distilled policy (weights hash)."""
    cfg, coarsen = guided_config(task), RECIPES[task.name].coarsen
    text = describe(cfg)
    return (f"guided expert: sampling MPC ({text}; planning timestep x{coarsen}) around the open-loop plan of the "
            f"[{distilled_source(task, weights)}]")
