"""Sampling-based model-predictive control on MuJoCo's native batched rollouts (`mujoco.rollout`).

The planner keeps a nominal plan of `horizon` knots (one action per knot, held for `knot_steps`
physics steps: one policy step). Each call makes `samples` candidates (the nominal plan and
Gaussian perturbations of it, one draw per `noise_hold` knots), rolls every candidate out from the
current simulator state in one native call, scores them with a task reward, and moves the plan to
the softmax-weighted mean of the candidates (MPPI, temperature relative to the score spread). The
first knot is returned; the plan is shifted by one knot for the next call (warm start).

Plans are raw controls (within each actuator's ctrlrange); noise is scaled by the half range.
The simulator state is MuJoCo's `mjSTATE_FULLPHYSICS` vector (time, qpos, qvel, act, ...): the
planner never touches the environment's own MjData, so the episode stays bit-exact for replay.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from theia_eval.errors import InputError

# score(qpos (N, T, nq), qvel (N, T, nv), sensordata (N, T, ns)) -> rewards (N, T)
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MPCConfig:
    """Planner settings (defaults suit the DMC locomotion tasks)."""

    samples: int = 64  # candidate plans per call (the nominal plan is one of them)
    horizon: int = 12  # knots in the plan
    noise: float = 0.3  # std of the Gaussian perturbation, in half control ranges
    temperature: float = 0.1  # softmax temperature, in units of the candidates' score spread
    iterations: int = 1  # refinement rounds per call
    noise_hold: int = 1  # consecutive knots sharing one noise draw (smoother, fewer dimensions)
    seed: int = 0
    threads: int = 1  # native rollout threads (1: the calling thread; demo workers are processes)
    replan_every: int = 1  # plan on every k-th call; the calls between play the plan's next knots (k x cheaper)
    # settled phase: while the current plan already scores settle_reward or more (its mean reward per scored
    # step, the task's own scale), a call draws only settle_samples candidates (0: never) and scores them over
    # the plan's first settle_horizon knots (0: all) with noise settle_noise (0: noise); full planning returns on
    # the first call whose plan scores below
    settle_samples: int = 0
    settle_reward: float = 1.0
    settle_horizon: int = 0
    settle_noise: float = 0.0

    def __post_init__(self) -> None:
        if min(self.horizon, self.iterations, self.threads, self.noise_hold, self.replan_every) < 1 \
                or self.samples < 2:
            raise InputError(f"MPC needs samples >= 2, horizon, iterations, threads and replan_every >= 1: {self}")
        if self.replan_every > self.horizon:
            raise InputError(f"MPC replan_every ({self.replan_every}) must not exceed the plan's horizon "
                             f"({self.horizon} knots): the calls between plans play the plan's knots: {self}")
        if self.settle_samples and not 2 <= self.settle_samples <= self.samples:
            raise InputError(f"MPC settle_samples must be 0 (off) or between 2 and samples ({self.samples}): {self}")
        if not 0 <= self.settle_horizon <= self.horizon:
            raise InputError(f"MPC settle_horizon must be 0 (the whole plan) or at most horizon ({self.horizon}): "
                             f"{self}")
        if self.noise <= 0 or self.temperature <= 0 or self.settle_noise < 0:
            raise InputError(f"MPC noise and temperature must be positive (settle_noise >= 0): {self}")


SETTLE_FIELDS = ("settle_samples", "settle_reward", "settle_horizon", "settle_noise")


def describe(cfg: MPCConfig) -> str:
    """The settings that decide the plans, as demo files record them ("horizon 16, iterations 1, ..."): rollout
    threads are left out (they do not change the plans), and so is the settled phase while it is off, so adding
    an option that is off by default leaves the record of every earlier expert unchanged."""
    from dataclasses import asdict

    skip = {"threads"} | (set(SETTLE_FIELDS) if not cfg.settle_samples else set())
    return ", ".join(f"{k} {v}" for k, v in sorted(asdict(cfg).items()) if k not in skip)


class SamplingMPC:
    """MPPI over zero-order-hold plans, scored by `reward` on native batched rollouts."""

    def __init__(self, model, reward: RewardFn, knot_steps: int, reward_every: int,
                 cfg: MPCConfig = MPCConfig()) -> None:
        import mujoco

        if knot_steps < 1 or reward_every < 1 or knot_steps % reward_every:
            raise InputError(f"knot_steps ({knot_steps}) must be a positive multiple of "
                             f"reward_every ({reward_every})")
        self.model, self.reward, self.cfg = model, reward, cfg
        self.knot_steps, self.reward_every = int(knot_steps), int(reward_every)
        self.low, self.high = model.actuator_ctrlrange.T.copy()
        self.center, self.half_range = (self.low + self.high) / 2, (self.high - self.low) / 2
        self.datas = [mujoco.MjData(model) for _ in range(cfg.threads)]
        self.nq, self.nv = model.nq, model.nv
        self.reset()

    def reset(self) -> None:
        """Forget the plan (start of an episode) and reseed the sampler."""
        self.rng = np.random.default_rng(self.cfg.seed)
        self.plan = np.tile(self.center, (self.cfg.horizon, 1))
        self.calls = 0
        self.settled = False  # the last plan scored settle_reward or more (settle_samples apply)
        self.settled_calls = 0  # calls planned with settle_samples this episode

    def perturbations(self, center: np.ndarray, count: int, noise: float) -> np.ndarray:
        """`count` Gaussian perturbations of the (horizon, nu) plan `center`, one draw per `noise_hold` knots, std
        `noise` half control ranges (not clipped)."""
        horizon, hold = self.cfg.horizon, self.cfg.noise_hold
        draws = self.rng.normal(0.0, 1.0, (count, -(-horizon // hold), self.model.nu))
        return center[None] + np.repeat(draws, hold, axis=1)[:, :horizon] * (noise * self.half_range)

    def candidates(self, samples: int | None = None, noise: float | None = None) -> np.ndarray:
        """(samples, horizon, nu) plans: the nominal one, then Gaussian perturbations of it, clipped (the
        config's samples and noise unless given, e.g. by the settled phase)."""
        samples, noise = samples or self.cfg.samples, noise or self.cfg.noise
        plans = np.concatenate([self.plan[None], self.perturbations(self.plan, samples - 1, noise)])
        return np.clip(plans, self.low, self.high)

    def scores(self, state: np.ndarray, plans: np.ndarray) -> np.ndarray:
        """Summed task reward of each plan rolled out from `state`.

        The reward of a step reads the sensordata of its last physics step, which MuJoCo computes
        before integrating: positions lag one physics step, exactly like the envs' own rewards
        (they read data.xpos/site_xpos after mj_step).
        """
        from mujoco import rollout

        controls = np.repeat(plans, self.knot_steps, axis=1)
        states, sensors = rollout.rollout(self.model, self.datas, state[None], controls)
        pick = slice(self.reward_every - 1, None, self.reward_every)
        qpos = states[:, pick, 1:1 + self.nq]
        qvel = states[:, pick, 1 + self.nq:1 + self.nq + self.nv]
        rewards = self.reward(qpos, qvel, sensors[:, pick])
        return np.nan_to_num(rewards.sum(axis=1), nan=-1e9)

    def update(self, plans: np.ndarray, scores: np.ndarray) -> None:
        """Move the nominal plan to the softmax-weighted mean of the candidates."""
        spread = max(float(scores.max() - scores.min()), 1e-9)
        weights = np.exp((scores - scores.max()) / (self.cfg.temperature * spread))
        self.plan = np.tensordot(weights / weights.sum(), plans, axes=1)

    def act(self, state: np.ndarray) -> np.ndarray:
        """Plan from `state` (a FULLPHYSICS vector) on every `replan_every`-th call (the first of an episode
        included) and return the plan's first action; shift the plan."""
        state = np.asarray(state, dtype=np.float64)
        if self.calls % self.cfg.replan_every == 0:
            settled = self.settled
            samples = self.cfg.settle_samples if settled else self.cfg.samples
            knots = (self.cfg.settle_horizon or self.cfg.horizon) if settled else self.cfg.horizon
            noise = (self.cfg.settle_noise or self.cfg.noise) if settled else self.cfg.noise
            self.settled_calls += int(settled)
            for i in range(self.cfg.iterations):
                plans = self.candidates(samples, noise)
                scores = self.scores(state, plans[:, :knots])
                if i == 0 and self.cfg.settle_samples:  # scores[0]: the current plan, before this call moves it
                    self.settled = bool(scores[0] / (knots * self.knot_steps // self.reward_every)
                                        >= self.cfg.settle_reward)
                self.update(plans, scores)
        self.calls += 1
        action = self.plan[0].copy()
        self.plan = np.concatenate([self.plan[1:], self.plan[-1:]])
        return action


def plan_from_state(expert, state: np.ndarray) -> np.ndarray:
    """One MPC step of a state-reading expert (needs .task.params, .model, .mpc, ._last_time).

    Splits the state into physics and task parameters, restarts the planner when simulated time
    goes back (a new episode), syncs the planning model's parameters and returns the control.
    """
    from theia_eval.envs.simstate import set_param_values, split_state

    physics, params = split_state(expert.task.params, np.asarray(state, dtype=np.float64))
    if physics[0] < expert._last_time:
        expert.mpc.reset()
    expert._last_time = physics[0]
    set_param_values(expert.task.params, expert.model, params)
    return expert.mpc.act(physics)
