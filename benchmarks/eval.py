"""Evaluation loop cost: env-steps/s with the time split per step (sim, render, encode, policy), and batched
encoding across N environments vs one encoder call per environment.

    python benchmarks/eval.py                                   # efficientnet-lite0, conv head, 2 envs, CPU
    python benchmarks/eval.py --envs 1 2 4 --groups 1 2         # also the pipelined loop (eval.groups=2)
    python benchmarks/eval.py --encoder random-vit-tiny --envs 1 2 4 --device cuda

The loop's overhead is reported against the sum of its render and encode time per lock-step of N envs,
with two render baselines:
- `vs workers`: the N render workers stepped alone (no encoder running), i.e. rendering exactly as the
  loop renders (same processes, same IPC); overhead = loop_ms / (workers_ms + batched_encode_ms) - 1.
- `vs in-process`: one in-process render per frame, divided over min(N, CPUs) parallel workers;
  overhead = loop_ms / (render_ms * N / min(N, CPUs) + batched_encode_ms) - 1.
Target: <= 30%. With groups=2 the loop can beat the sum (render hides behind encode).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import theia_eval  # noqa: F401  (first: sets the OpenMP spin count before torch loads OpenMP)
import torch

from theia_eval.encoders import create_encoder
from theia_eval.envs.env import make_env
from theia_eval.envs.renderer import RenderSpec
from theia_eval.envs.vector import VectorEnv
from theia_eval.policies.bc import BCConfig, build_policy
from theia_eval.policies.evaluate import EvalConfig, evaluate_policy
from theia_eval.policies.heads import PolicyShapes, head_input_kind

TASK = "metaworld/drawer-open"


def median_ms(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def sim_render_ms(render: RenderSpec, steps: int = 50) -> tuple[float, float]:
    """In-process ms per env.step without rendering, and ms per rendered frame."""
    env = make_env(TASK, preset=render.preset, resolution=render.resolution, crop=render.crop)
    env.reset(0, render=False)
    action = np.zeros(env.task.action_dim)
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(action, render=False)
    sim = 1000 * (time.perf_counter() - t0) / steps
    rend = median_ms(env.render)
    env.close()
    return sim, rend


def workers_ms(render: RenderSpec, n: int, steps: int = 30) -> float:
    """Median ms per lock-step of n render workers stepped alone (nothing else running in the parent)."""
    with VectorEnv(TASK, n, preset=render.preset, resolution=render.resolution, crop=render.crop) as venv:
        venv.reset(list(range(n)))
        action = np.zeros((n, venv.task.action_dim))
        return median_ms(lambda: venv.step(action), steps)


def random_policy(encoder, head: str, n_proprio: int = 4, n_action: int = 4):
    """An untrained head of the right shapes (evaluation cost does not depend on the weights)."""
    c = encoder.config
    shapes = PolicyShapes(tuple(c.grid), c.token_dim, c.summary_dim, 3, "flare", n_proprio, n_action)
    return build_policy(BCConfig(head=head), shapes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="efficientnet-lite0")
    p.add_argument("--head", default="conv")
    p.add_argument("--envs", nargs="+", type=int, default=[1, 2])
    p.add_argument("--groups", nargs="+", type=int, default=[1],
                   help="eval.groups values: 1 = lock-step, 2 = pipelined (needs N >= 2)")
    p.add_argument("--steps", type=int, default=60, help="steps per episode (eval horizon)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="fast")
    args = p.parse_args()
    render = RenderSpec(args.preset, 256, 224)
    enc = create_encoder(args.encoder, device=args.device)
    kind = head_input_kind(args.head)
    policy = random_policy(enc, args.head).to(args.device)
    sim_ms, render_ms = sim_render_ms(render)
    frame = make_frames(render, max(args.envs))
    print(f"in-process: sim {sim_ms:.2f} ms/step, render {render_ms:.2f} ms/frame ({args.preset}, 256->224)  "
          f"[{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads, {args.device}]")
    print("| envs | groups | loop ms/step | env-steps/s | env ms | encode ms | policy ms | workers alone ms | "
          "batched encode ms | per-env encode ms | overhead vs workers | overhead vs in-process |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.envs:
        for r in measure_envs(enc, policy, kind, render, n, args.groups, args.steps, render_ms, frame):
            print(f"| {n} | {r['groups']} | {r['loop_ms']:.1f} | {r['env_steps_s']:.1f} | {r['env_ms']:.1f} | "
                  f"{r['encode_ms']:.1f} | {r['policy_ms']:.1f} | {r['workers_alone_ms']:.1f} | "
                  f"{r['batched_encode_ms']:.1f} | {r['per_env_encode_ms']:.1f} | {r['overhead_vs_workers_pct']:+.0f}% | "
                  f"{r['overhead_vs_in_process_pct']:+.0f}% |", flush=True)


def measure_envs(enc, policy, kind: str, render: RenderSpec, n: int, groups_list: list[int], steps: int,
                 render_ms: float, frame: np.ndarray) -> list[dict]:
    """One row per eval.groups value (<= n) for n envs: the loop's split per lock-step and its two baselines."""
    def encode(frames: np.ndarray) -> None:
        enc(frames)
        if enc.device.type == "cuda":  # GPU work is asynchronous: time it to completion
            torch.cuda.synchronize(enc.device)

    alone = workers_ms(render, n)
    batched = median_ms(lambda: encode(frame[:n]), 10)
    per_env = median_ms(lambda: [encode(frame[i:i + 1]) for i in range(n)], 10)
    in_process = render_ms * n / min(n, os.cpu_count() or 1) + batched
    rows = []
    for groups in groups_list:
        if groups > n:
            continue
        cfg = EvalConfig(episodes=n, num_envs=n, groups=groups, horizon=steps, progress=False)
        t = evaluate_policy(policy, enc, TASK, cfg, render, kind)["time_per_step"]
        # wall time per lock-step of all n envs (the parent is never idle except while waiting: env_ms)
        loop = t["env_ms"] + t["encode_ms"] + t["policy_ms"]
        rows.append({"envs": n, "groups": groups, "loop_ms": loop, "env_steps_s": 1000 * n / loop,
                     "env_ms": t["env_ms"], "encode_ms": t["encode_ms"], "policy_ms": t["policy_ms"],
                     "workers_alone_ms": alone, "batched_encode_ms": batched, "per_env_encode_ms": per_env,
                     "overhead_vs_workers_pct": 100 * (loop / (alone + batched) - 1),
                     "overhead_vs_in_process_pct": 100 * (loop / in_process - 1)})
    return rows


def make_frames(render: RenderSpec, n: int) -> np.ndarray:
    env = make_env(TASK, preset=render.preset, resolution=render.resolution, crop=render.crop)
    frames = [env.reset(s)["rgb"] for s in range(n)]
    env.close()
    return np.stack(frames)


if __name__ == "__main__":
    main()
