"""Rendering cost: ms/frame per preset and camera, and env-steps/s with rendering for N workers.

    .venv/bin/python benchmarks/render.py [--task metaworld/assembly] [--frames 60] [--steps 200]

Frames are rendered at --resolution (256) and center-cropped to --crop (224), as in CortexBench.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def ms_per_frame(task: str, preset: str, camera: str, resolution: int, crop: int, frames: int) -> float:
    """Median ms of one env.render() (scene update, GL render, read-back, flip, crop)."""
    from theia_eval.envs import make_env

    rng = np.random.default_rng(0)
    with make_env(task, preset=preset, resolution=resolution, crop=crop) as env:
        env.reset(0, render=False)
        for _ in range(3):
            env.render(camera)  # warm-up: context creation, first upload
        times = []
        for _ in range(frames):
            env.step(rng.uniform(-1, 1, 4), render=False)
            start = time.perf_counter()
            env.render(camera)
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def steps_per_second(task: str, preset: str, workers: int, resolution: int, crop: int, steps: int) -> float:
    """Env steps/s (all workers together) of a lock-step VectorEnv rendering every step."""
    from theia_eval.envs import VectorEnv

    rng = np.random.default_rng(0)
    with VectorEnv(task, num_envs=workers, preset=preset, resolution=resolution, crop=crop) as venv:
        venv.reset(list(range(workers)))
        venv.step(rng.uniform(-1, 1, (workers, 4)))  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            venv.step(rng.uniform(-1, 1, (workers, 4)))
        elapsed = time.perf_counter() - start
    return workers * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="metaworld/assembly")
    parser.add_argument("--cameras", nargs="+", default=["top_cap2", "corner", "topview"])
    parser.add_argument("--presets", nargs="+", default=["fast", "full"])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    print(f"# {args.task}, {args.resolution} px -> crop {args.crop}, {os.cpu_count()} CPUs, "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'egl (theia_eval default)')}, {platform.processor()}")
    frame_rows = []
    print("\n| preset | camera | ms/frame |\n|---|---|---|")
    for preset in args.presets:
        for camera in args.cameras:
            ms = ms_per_frame(args.task, preset, camera, args.resolution, args.crop, args.frames)
            frame_rows.append({"preset": preset, "camera": camera, "ms_per_frame": round(ms, 2)})
            print(f"| {preset} | {camera} | {ms:.1f} |", flush=True)
    step_rows = []
    print("\n| preset | workers | env-steps/s (rendering every step) |\n|---|---|---|")
    for preset in args.presets:
        for workers in args.workers:
            sps = steps_per_second(args.task, preset, workers, args.resolution, args.crop, args.steps)
            step_rows.append({"preset": preset, "workers": workers, "steps_per_s": round(sps, 1)})
            print(f"| {preset} | {workers} | {sps:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "frames": frame_rows, "steps": step_rows}, fh, indent=1)


if __name__ == "__main__":
    main()
