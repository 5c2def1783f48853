"""The adroit/relocate expert with other planning-reward shaping, on given seeds (issue 13): one full episode each,
expert only, no render; prints one JSON line per seed (success, goal steps, where the ball ended, seconds).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/relocate_variant.py PUSH FALL HOLD_RADIUS SEED [SEED ...]
    .venv/bin/python benchmarks/relocate_variant.py 2.0 5.0 0.08 54321 54324 54325 54326 54327 54328
    .venv/bin/python benchmarks/relocate_variant.py 0 0 inf 54321 ...       # the env's own reward (D4RL sign)

PUSH, FALL and HOLD_RADIUS are `envs/adroit/expert.py: relocate_reward`'s push_weight, fall_penalty and
hold_radius; 2.0 5.0 0.08 is the recipe since issue 13 (benchmarks/results/relocate_held_push_fall.jsonl).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace


def main() -> None:
    import theia_eval.envs.adroit.expert as expert
    from theia_eval.envs.adroit import facts
    from theia_eval.envs.tasks import get_task

    push, fall, hold_radius = (float(a) for a in sys.argv[1:4])
    seeds = [int(s) for s in sys.argv[4:]]
    if not seeds:
        raise SystemExit(__doc__)

    def reward(qpos, qvel, sensors):
        return expert.relocate_reward(qpos, qvel, sensors, hold_radius=hold_radius, push_weight=push,
                                      fall_penalty=fall)

    recipe = replace(expert.RECIPES["relocate"], reward=lambda env: reward)
    spec = get_task("adroit/relocate")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    ball = sim.model.body("Object").id
    for seed in seeds:
        planner = expert.AdroitMPCExpert(facts(spec), recipe)
        state, start, goal_steps = sim.reset(seed), time.perf_counter(), 0
        for _ in range(spec.horizon):
            state, _, info = sim.step(planner.get_action(state))
            goal_steps += info["goal_achieved"]
        print(json.dumps({"push": push, "fall": fall, "hold_radius": hold_radius, "seed": seed,
                          "success": info["success"], "goal_steps": goal_steps,
                          "ball_z": float(sim.data.xpos[ball][2]), "s": round(time.perf_counter() - start, 1)}),
              flush=True)
    sim.close()


if __name__ == "__main__":
    main()
