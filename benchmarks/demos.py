"""Wall time and file size of the CortexBench Meta-World demos (5 tasks x 25, fast preset).

    .venv/bin/python benchmarks/demos.py [--out-dir DIR] [--workers 2] [--num-demos 25]

Collects into a fresh folder (deleted first unless --keep), as `theia-eval demos
suite=cortexbench-metaworld num_demos=25` does, then reads every file back with dataset_info.
Target (issue 3): the 125 demos in at most 10 minutes on a 2-core CPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    from theia_eval.envs.dataset import Storage, dataset_info
    from theia_eval.envs.demos import DemoConfig, collect
    from theia_eval.envs.renderer import RenderSpec
    from theia_eval.envs.tasks import resolve_tasks

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cortexbench-metaworld")
    parser.add_argument("--num-demos", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--compression", default="gzip")
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--post-success-steps", type=int, default=10)
    parser.add_argument("--out-dir", default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--keep", action="store_true", help="keep existing files in --out-dir")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    out = Path(args.out_dir or tempfile.mkdtemp(prefix="theia_demos_bench_"))
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    cfg = DemoConfig(num_demos=args.num_demos, workers=args.workers,
                     render=RenderSpec(args.preset, args.resolution, args.crop),
                     storage=Storage(args.compression, args.level),
                     post_success_steps=args.post_success_steps, progress=False)
    start = time.perf_counter()
    reports = collect(resolve_tasks(suite=args.suite), out, cfg)
    wall = time.perf_counter() - start
    rows = []
    print(f"# {args.suite}: {args.num_demos} demos/task, {args.workers} workers, preset {args.preset}, "
          f"{args.resolution} -> {args.crop}, {args.compression} {args.level}, {os.cpu_count()} CPUs")
    print("\n| task | demos | frames | failed seeds | seconds | MB |\n|---|---|---|---|---|---|")
    for r in reports:
        info = dataset_info(r.path)
        rows.append({"task": r.task, "demos": info["demos"], "frames": info["frames"],
                     "failed": len(r.failed_seeds), "seconds": round(r.seconds, 1), "mb": info["size_mb"]})
        print(f"| {r.task} | {info['demos']} | {info['frames']} | {len(r.failed_seeds)} | "
              f"{r.seconds:.1f} | {info['size_mb']:.1f} |")
    frames = sum(r["frames"] for r in rows)
    size = sum(r["mb"] for r in rows)
    demos = sum(r["demos"] for r in rows)
    print(f"\ntotal: {demos} demos, {frames} frames, {wall:.1f} s wall "
          f"({wall / demos:.2f} s/demo, {1000 * wall / frames:.1f} ms/frame), {size:.1f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "tasks": rows, "wall_s": round(wall, 1),
                       "total_mb": round(size, 1), "frames": frames}, fh, indent=1)
    if args.out_dir is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
