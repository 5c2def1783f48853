"""Cheaper DMC planner settings (issue 13): returns and expert seconds of one variant on a few seeds, no render.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/planner_variants.py dmc/walker-walk "samples=24" \
        --seeds 54321 54322 54323 54324 --json benchmarks/results/planner_variants_walker-walk.json
    .venv/bin/python benchmarks/planner_variants.py dmc/cheetah-run "samples=64;iterations=3" ...
    .venv/bin/python benchmarks/planner_variants.py dmc/walker-stand "" --hold ...   # planner + PD hold

VARIANT is `key=value;key=value` over the task's recipe (`envs/dmc/expert.py` RECIPES): MPCConfig fields
(samples, horizon, iterations, noise, ...), `coarsen` (planning timestep multiple) and, for the walker,
`still=W` (planning reward minus W x the mean squared joint speed) or `stillup=W` (the same, weighted by the
standing term: free while getting up), or `knees=W` (minus W x the mean squared knee angle, weighted by the
standing term: a two-foot stance). Each seed runs one
full episode with the expert acting, exactly as the demo collector's expert episode (no render replay: add
`benchmarks/experts.py`'s render time for a demo's cost). Rows are appended to --json, one per episode, with the
per-50-step reward blocks (where an episode fell shows there).

--hold (walker-stand only): the planner acts until a PD controller holding the current joint angles is checked,
on a copy of the exact model, to bring the walker to rest standing within `--check-steps` policy steps; from
then on the PD controller acts (one matrix-vector product a step) until the walker falls, when the planner takes
over again. The check is the price: one short rollout per upright step while no hold is found.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

WALKER_GAINS = (2.0, 0.2, 2.0, 0.2)  # kp, kd on the joints; torso pitch and its rate through the two hips
STAND_HEIGHT, FALL_HEIGHT = 1.15, 1.05  # torso height at which a hold is tried / abandoned


def still_reward(build, weight: float, upright_only: bool = False):
    """Planning reward minus weight x the mean squared joint speed (walker: qvel[3:]), favouring a still stance;
    upright_only: the penalty is weighted by the task's standing term (torso height), so getting up is free."""
    from theia_eval.envs.dmc.expert import WALKER_TORSO_Z0, _tolerance

    def shaped(model):
        reward = build(model)

        def score(qpos, qvel, sensors):
            penalty = weight * np.mean(np.square(qvel[..., 3:]), axis=-1)
            if upright_only:
                penalty = penalty * _tolerance(WALKER_TORSO_Z0 + qpos[..., 0], 1.2, 0.6, "gaussian")
            return reward(qpos, qvel, sensors) - penalty
        return score
    return shaped


def knees_reward(build, weight: float):
    """Walker planning reward minus weight x the mean squared knee angle (qpos 4 and 7), weighted by the
    standing term: a straight-kneed two-foot stance (which a PD hold keeps) over balancing on one leg."""
    from theia_eval.envs.dmc.expert import WALKER_TORSO_Z0, _tolerance

    def shaped(model):
        reward = build(model)

        def score(qpos, qvel, sensors):
            bend = np.mean(np.square(qpos[..., [4, 7]]), axis=-1)
            return reward(qpos, qvel, sensors) - weight * bend * _tolerance(WALKER_TORSO_Z0 + qpos[..., 0], 1.2,
                                                                             0.6, "gaussian")
        return score
    return shaped


def parse_variant(text: str) -> tuple[dict, int | None, float, float]:
    from theia_eval.envs.mpc import MPCConfig

    names, mpc, coarsen, still, knees = {f.name for f in fields(MPCConfig)}, {}, None, 0.0, 0.0
    for item in filter(None, text.split(";")):
        key, _, value = item.partition("=")
        if key == "coarsen":
            coarsen = int(value)
        elif key == "knees":
            knees = float(value)
        elif key in ("still", "stillup"):
            still = float(value) if key == "still" else -float(value)  # negative: upright only
        elif key in names:
            mpc[key] = float(value) if any(c in value for c in ".e") else int(value)
        else:
            raise SystemExit(f"unknown variant key {key!r}: MPCConfig fields ({', '.join(sorted(names))}), "
                             "coarsen, still, stillup or knees")
    return mpc, coarsen, still, knees


class WalkerHold:
    """PD hold of the walker's joint angles, with the rest check on the exact model."""

    def __init__(self, task, check_steps: int) -> None:
        import mujoco

        from theia_eval.envs.dmc.sim import load_env

        env = load_env(task)
        env.reset()
        self.model = env.physics.model.ptr
        self.data = mujoco.MjData(self.model)
        self.substeps = int(round(env.control_timestep() / self.model.opt.timestep)) * task.action_repeat
        self.check_steps, self.target = check_steps, None

    @staticmethod
    def control(qpos: np.ndarray, qvel: np.ndarray, target: np.ndarray) -> np.ndarray:
        kp, kd, kt, dt = WALKER_GAINS
        u = kp * (target - qpos[3:]) - kd * qvel[3:]
        u[[0, 3]] += -kt * qpos[2] - dt * qvel[2]
        return np.clip(u, -1.0, 1.0)

    def comes_to_rest(self, state: np.ndarray) -> bool:
        import mujoco

        d, target = self.data, state[4:10].copy()
        d.time, d.qpos[:], d.qvel[:] = state[0], state[1:10], state[10:19]
        for _ in range(self.check_steps):
            d.ctrl[:] = self.control(d.qpos, d.qvel, target)
            for _ in range(self.substeps):
                mujoco.mj_step(self.model, d)
            if 1.3 + d.qpos[0] < STAND_HEIGHT:
                return False
        return bool(np.abs(d.qvel).max() < 0.05 and np.cos(d.qpos[2]) > 0.95)


def episode(spec, task, recipe, seed: int, hold: WalkerHold | None) -> dict:
    from theia_eval.envs.dmc.expert import MPCExpert

    sim, expert = spec.make_sim(spec, horizon=spec.horizon), MPCExpert(task, recipe)
    state, rewards, planned, switches, start = sim.reset(seed), [], 0, 0, time.perf_counter()
    settled = 0  # planner calls with the settled phase's fewer samples (MPCConfig.settle_samples)
    for _ in range(spec.horizon):
        qpos, qvel = state[1:10], state[10:19]
        if hold is not None:
            height, upright = 1.3 + qpos[0], np.cos(qpos[2])
            if hold.target is None and height > STAND_HEIGHT and upright > 0.95 and hold.comes_to_rest(state):
                hold.target, switches = qpos[3:].copy(), switches + 1
            elif hold.target is not None and (height < FALL_HEIGHT or upright < 0.9):
                hold.target, switches = None, switches + 1
                settled += expert.mpc.settled_calls
                expert.mpc.reset()
        if hold is None or hold.target is None:
            action, planned = expert.get_action(state), planned + 1
        else:
            action = hold.control(qpos, qvel, hold.target)
        state, reward, _ = sim.step(action)
        rewards.append(reward)
    seconds = time.perf_counter() - start
    settled += expert.mpc.settled_calls
    sim.close()
    if hold is not None:
        hold.target = None
    return {"seed": seed, "return": float(np.sum(rewards)), "expert_s": seconds, "planned_steps": planned,
            "settled_steps": settled, "switches": switches, "blocks": [round(float(np.sum(rewards[j:j + 50])), 1)
                                             for j in range(0, len(rewards), 50)]}


def main() -> None:
    import os
    import platform

    from theia_eval.envs.dmc import facts
    from theia_eval.envs.dmc.expert import RECIPES
    from theia_eval.envs.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task")
    parser.add_argument("variant", help="key=value;key=value over the recipe ('' = the recipe as is)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[54321, 54322, 54323, 54324])
    parser.add_argument("--hold", action="store_true", help="walker-stand: PD hold once a rest is checked")
    parser.add_argument("--check-steps", type=int, default=60)
    parser.add_argument("--json", help="append the rows to this JSON file")
    args = parser.parse_args()
    spec = get_task(args.task)
    task = facts(spec)
    mpc, coarsen, still, knees = parse_variant(args.variant)
    recipe = RECIPES[task.name]
    recipe = replace(recipe, mpc=replace(recipe.mpc, **mpc), coarsen=coarsen or recipe.coarsen)
    if still:
        if not task.name.startswith("walker"):
            raise SystemExit("still= is for the walker tasks")
        recipe = replace(recipe, reward=still_reward(recipe.reward, abs(still), upright_only=still < 0))
    if knees:
        if not task.name.startswith("walker"):
            raise SystemExit("knees= is for the walker tasks")
        recipe = replace(recipe, reward=knees_reward(recipe.reward, knees))
    if args.hold and task.name != "walker-stand":
        raise SystemExit("--hold is for dmc/walker-stand")
    hold = WalkerHold(task, args.check_steps) if args.hold else None
    out = Path(args.json) if args.json else None
    rows = json.loads(out.read_text()) if out and out.exists() else []
    for seed in args.seeds:
        row = {"task": args.task, "variant": args.variant + (" +hold" if args.hold else ""),
               "settings": {"coarsen": recipe.coarsen, **asdict(recipe.mpc)},  # the variant applied to the recipe
               **episode(spec, task, recipe, seed, hold),
               "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "load_avg_1m": os.getloadavg()[0]}}
        rows.append(row)
        print(f"{args.task} [{row['variant']}] seed {seed}: return {row['return']:.1f}, {row['expert_s']:.1f} s, "
              f"planned {row['planned_steps']}/{spec.horizon} ({row['settled_steps']} settled), blocks {row['blocks']}", flush=True)
        if out:
            out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
