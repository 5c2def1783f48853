"""Privileged experts of the DMC and Adroit suites: returns, success, wall time per demo.

    .venv/bin/python benchmarks/experts.py [--tasks dmc/reacher-easy adroit/pen ...] [--seeds 2]
                                           [--base-seed 54321] [--json out.json]
    .venv/bin/python benchmarks/experts.py --tasks dmc/cheetah-run --mpc samples=256   # tune a recipe
    .venv/bin/python benchmarks/experts.py --tasks dmc/walker-stand --seeds 100 --expert distilled \
        --expert-weights data/experts                                    # a distilled expert on the demo set

For each task and seed (the demo seeds: base_seed + j) the expert runs one full-horizon episode
without rendering, exactly as `theia-eval demos` runs it (`demos.run_expert`), timed; the first
successful episode is then replayed with rendering (`demos.record`, fast preset, 256 px, crop
224) twice, timed: the second replay is the render cost of a demo (`render_s_per_demo`), the first also starts
the renderer, which a demo worker does once (`first_render_s`). Time per demo = expert episode + render replay; 100 demos take about
100 x that / success rate / workers. The experts use one thread each (demo workers are processes).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

DEFAULT_TASKS = ("dmc/reacher-easy", "dmc/finger-spin", "dmc/walker-stand", "dmc/walker-walk",
                 "dmc/cheetah-run", "adroit/pen", "adroit/relocate")


def make_task_expert(spec, mpc_overrides: dict, choice=None):
    """The task's expert (`choice`: another kind, e.g. distilled); DMC MPC settings may be overridden (tuning:
    --mpc samples=256 iterations=2)."""
    from theia_eval.envs.tasks import DEFAULT_EXPERT, task_expert

    choice = choice or DEFAULT_EXPERT
    if not mpc_overrides:
        return task_expert(spec, choice)
    if choice.kind == "guided":
        from theia_eval.envs.dmc import facts
        from theia_eval.envs.dmc.guided import GuidedExpert

        return GuidedExpert(facts(spec), choice.weights, **mpc_overrides)
    if choice.kind not in (None, "planner"):
        raise SystemExit(f"--mpc overrides apply to the planner and guided experts, not the {choice.kind} expert")
    if spec.suite != "dmc":
        raise SystemExit(f"--mpc overrides apply to the DMC MPC experts only, not {spec.name}")
    from theia_eval.envs.dmc import facts
    from theia_eval.envs.dmc.expert import make_expert

    return make_expert(facts(spec), **mpc_overrides)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--mpc takes key=value pairs (MPCConfig fields), got '{item}'")
        out[key] = float(value) if any(ch in value for ch in ".e") else int(value)
    return out


def bench_task(name: str, seeds: list[int], render_spec, mpc_overrides: dict | None = None, choice=None) -> dict:
    """Returns, success and timings of the expert of one task on `seeds`."""
    from theia_eval.envs.demos import record, run_expert
    from theia_eval.envs.env import TaskEnv
    from theia_eval.envs.tasks import get_task

    spec = get_task(name)
    env = TaskEnv(spec, render_spec)
    rows, render_s, first_render_s = [], None, None
    try:
        for seed in seeds:
            start = time.perf_counter()
            run = run_expert(env, make_task_expert(spec, mpc_overrides or {}, choice), seed, post_success_steps=None)
            expert_s = time.perf_counter() - start
            success = spec.episode_success(np.asarray(run.flags, dtype=bool))
            rows.append({"seed": seed, "return": float(np.sum(run.rewards)), "success": bool(success),
                         "steps": len(run.actions), "expert_s": expert_s})
            print(f"{name} seed {seed}: return {rows[-1]['return']:.1f}, success {success}, "
                  f"{expert_s:.1f} s", flush=True)
            if success and render_s is None:  # twice: the first replay also starts the renderer (once per worker)
                times = []
                for _ in range(2):
                    start = time.perf_counter()
                    record(env, run)
                    times.append(time.perf_counter() - start)
                first_render_s, render_s = times
    finally:
        env.close()
    return {**summarize(name, rows, render_s), "first_render_s": first_render_s}


def summarize(name: str, rows: list[dict], render_s: float | None) -> dict:
    """Aggregate one task's rows."""
    returns = np.array([r["return"] for r in rows])
    expert_s = float(np.mean([r["expert_s"] for r in rows]))
    wins = sum(r["success"] for r in rows)
    return {"task": name, "episodes": rows, "mean_return": float(returns.mean()),
            "min_return": float(returns.min()), "max_return": float(returns.max()),
            "successes": wins, "expert_s_per_episode": expert_s,
            "render_s_per_demo": render_s,
            "s_per_demo": None if render_s is None else expert_s + render_s}


def markdown(results: list[dict]) -> str:
    """A results table for benchmarks/RESULTS.md."""
    lines = ["| task | episodes | return mean (min-max) | success | expert s/episode | "
             "render s/demo | s/demo (1 worker) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        render = "-" if r["render_s_per_demo"] is None else f"{r['render_s_per_demo']:.1f}"
        per_demo = "-" if r["s_per_demo"] is None else f"{r['s_per_demo']:.1f}"
        lines.append(f"| {r['task']} | {len(r['episodes'])} | {r['mean_return']:.1f} "
                     f"({r['min_return']:.1f}-{r['max_return']:.1f}) | "
                     f"{r['successes']}/{len(r['episodes'])} | {r['expert_s_per_episode']:.1f} | "
                     f"{render} | {per_demo} |")
    return "\n".join(lines)


def main() -> None:
    from theia_eval.envs.renderer import RenderSpec
    from theia_eval.io import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", type=int, default=2, help="episodes per task")
    parser.add_argument("--base-seed", type=int, default=54321, help="the demo collection seed")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--mpc", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override the DMC MPC recipe (MPCConfig fields), e.g. --mpc samples=256 iterations=2")
    parser.add_argument("--expert", help="another expert kind of the tasks (dmc: distilled, guided), default: each "
                                         "task's own")
    parser.add_argument("--expert-weights", help="--expert distilled/guided: the folder of <task>.safetensors (the "
                                                 "`theia-eval experts` out_dir); default: theia_eval/assets/dmc-experts")
    args = parser.parse_args()
    from theia_eval.envs.tasks import ExpertChoice

    seeds = [args.base_seed + j for j in range(args.seeds)]
    overrides = parse_overrides(args.mpc)
    choice = ExpertChoice(args.expert, args.expert_weights)
    results = [bench_task(t, seeds, RenderSpec("fast", 256, 224), overrides, choice) for t in args.tasks]
    print(markdown(results))
    if args.json:
        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
