"""CPU distillation step throughput (images/s) before and after the issue-12 CPU settings.

One training step on a fixed batch: uint8 images -> student + one translator per teacher -> loss against
float16 cached-style targets (standardised in the step) -> backward -> AdamW (multi-tensor, subnormals
flushed), with the modules `theia-eval distill` uses. Variants (train.amp / train.attention / train.channels_last):
  fp32                 float32, sdpa attention, contiguous weights: the CPU step before issue 12
  bf16                 + bf16 autocast (AMX tiles on Sapphire Rapids and later)
  bf16+matmul          + the student's matmul attention (student.py) instead of sdpa
  bf16+matmul+cl       + channels-last convolution weights: what `theia-eval distill` does on an AMX CPU
  fp32+matmul, fp32+cl the float32 step with one of the two kernel changes (a CPU without AMX keeps sdpa)
The variants are timed in interleaved rounds (each round times every variant once, `--repeats` steps each),
so load from other processes falls on all of them alike; the report gives the median and the best round.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/distill_cpu.py --threads 1 --rounds 5
    OMP_NUM_THREADS=2 python benchmarks/distill_cpu.py --threads 2 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from theia_eval.distill.loss import LossWeights, distill_loss
from theia_eval.distill.optim import build_optimizer, flush_denormals
from theia_eval.distill.stats import RunningStats, Standardizer
from theia_eval.distill.student import DistillModel, set_attention, student_size
from theia_eval.distill.train import cpu_has_fast_bf16
from theia_eval.distill.teacher_sets import teacher_shapes

VARIANTS = {  # name -> (autocast dtype, attention, channels-last)
    "fp32": (None, "sdpa", False),
    "bf16": (torch.bfloat16, "sdpa", False),
    "bf16+matmul": (torch.bfloat16, "matmul", False),
    "bf16+matmul+cl": (torch.bfloat16, "matmul", True),
    "fp32+matmul": (None, "matmul", False),
    "fp32+cl": (None, "sdpa", True),
}


def make_step(student: str, shapes: dict, batch: int, amp, attention: str, channels_last: bool):
    """step(): one training step of a fresh seeded model on a fixed random batch."""
    torch.manual_seed(0)
    model = DistillModel(student_size(student), shapes)
    set_attention(model.backbone, attention, torch.device("cpu"))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, 1e-4, 0.01)
    images = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8)
    targets16 = {k: torch.randn(batch, h, w, c).half() for k, (c, h, w) in shapes.items()}
    stds = {k: Standardizer(RunningStats(1, torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)))
            for k, (c, _, _) in shapes.items()}

    def step() -> None:
        targets = {k: stds[k](v) for k, v in targets16.items()}
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            preds = model(images)
        loss, _ = distill_loss(preds, targets, LossWeights())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def seconds_per_step(step, repeats: int) -> float:
    """Median wall seconds of `repeats` steps."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_model() -> str:
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "CPU")
    return f"{name} ({'amx_bf16' if 'amx_bf16' in info else 'no amx_bf16'})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="nano")
    p.add_argument("--teachers", default="offline", help="teacher set whose target shapes the translators produce")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3, help="steps timed per variant per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default=None, help="also write the JSON report here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flush_denormals()
    shapes = teacher_shapes(args.teachers)
    steps = {name: make_step(args.student, shapes, args.batch, *VARIANTS[name]) for name in args.variants}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(seconds_per_step(step, args.repeats))
    base = statistics.median(times[args.variants[0]])
    rows = [{"variant": name, "img_s": round(args.batch / statistics.median(t), 1),
             "img_s_best_round": round(args.batch / min(t), 1), "ms_per_step": round(1000 * statistics.median(t), 1),
             "speedup_vs_first": round(base / statistics.median(t), 2)} for name, t in times.items()]
    report = {"cpu": cpu_model(), "amx_bf16_detected": cpu_has_fast_bf16(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "student": args.student, "teachers": args.teachers,
              "target_shapes": {k: list(v) for k, v in shapes.items()}, "batch": args.batch, "rounds": args.rounds,
              "repeats": args.repeats, "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "rows": rows}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from theia_eval.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
