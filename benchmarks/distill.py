"""Distillation step throughput (images/s): student + translators + loss + AdamW, cached and online targets.

Cached step: targets arrive as float16 tensors (what the cache stores); the step standardises them, runs
the student and one translator per teacher under autocast, the loss, backward and AdamW; the same
modules as `theia-eval distill` (DistillModel, distill_loss, build_optimizer, Standardizer).
  plain  = foreach AdamW, contiguous layouts, no compile (the anchors.md "plain step"; CUDA)
  tuned  = fused AdamW, channels-last translator convolutions, optional torch.compile (CUDA)
  cpu    = the CPU step (multi-tensor AdamW, subnormals flushed)
Online step: the teachers run on the batch inside the step; compared with the teachers' own forward.
Projection: GPU-hours of the paper recipe (50 epochs of ImageNet-1k = 1,281,167 images) from the
measured step rate (+ one extraction pass for cached targets), next to the paper's ~150.

    python benchmarks/distill.py                                   # CPU: nano and tiny, cdiv widths
    python benchmarks/distill.py --device cuda --students deit-small --batch 256 --compile
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from theia_eval.distill.loss import LossWeights, distill_loss
from theia_eval.distill.optim import build_optimizer, flush_denormals
from theia_eval.distill.samples import Batch
from theia_eval.distill.stats import RunningStats, Standardizer
from theia_eval.distill.student import DistillModel, student_size
from theia_eval.distill.teacher_sets import resolve_teachers, teacher_shapes
from theia_eval.distill.teachers import TEACHERS, build_teachers

IMAGENET = 1_281_167
EPOCHS = 50
ANCHOR_PLAIN_IMG_S = 2800  # DeiT-S plain step, batch 256, bf16, H200 (shared/spec/anchors.md)
ANCHOR_CDIV_TEACHER_MS = 1.8  # cdiv teachers' forward per image on the H200 (anchors.md)
PAPER_GPU_HOURS = 150


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, repeats: int) -> float:
    """Median seconds per call after warm-up calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_step(student: str, shapes: dict, batch: int, device: torch.device, amp, tuned: bool, compile_: bool | str):
    """(step(targets16), model, fixed float16 targets): one training step on a fixed batch of uint8 images.

    compile_: False, True (torch.compile's default backend, inductor) or a backend name (e.g. "eager")."""
    torch.manual_seed(0)
    model = DistillModel(student_size(student), shapes).to(device)
    if tuned and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, 1e-4, 0.01, fused=tuned and device.type == "cuda")
    fwd = (torch.compile(model, backend=compile_) if isinstance(compile_, str)
           else torch.compile(model) if compile_ else model)
    images = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, device=device)
    fixed = {k: torch.randn(batch, h, w, c, device=device).half() for k, (c, h, w) in shapes.items()}
    stds = {k: Standardizer(RunningStats(1, torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)))
            .to(device) for k, (c, _, _) in shapes.items()}

    def step(targets16: dict[str, torch.Tensor]) -> None:
        targets = {k: stds[k](v) for k, v in targets16.items()}
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            preds = fwd(images)
        loss, _ = distill_loss(preds, targets, LossWeights())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model, fixed


def bench_cached(args, device, amp) -> list[dict]:
    shapes = teacher_shapes(args.teachers)
    rows = []
    if device.type == "cuda":
        variants = [("plain", False, False), ("tuned", True, False)] + ([("tuned+compile", True, True)] if args.compile else [])
    else:  # fused AdamW and channels-last only engage on CUDA: on CPUs both variants are the same step
        variants = [("cpu", False, False)] + ([("cpu+compile", False, True)] if args.compile else [])
    for student in args.students:
        for name, tuned, comp in variants:
            rows.append(bench_variant(student, shapes, args, device, amp, name, tuned, comp))
    return rows


def bench_variant(student: str, shapes: dict, args, device, amp, name: str, tuned: bool, comp: bool | str) -> dict:
    """One row of the cached-step table: median step time of one variant (args: teachers, batch, warmup, repeats)."""
    step, model, fixed = make_step(student, shapes, args.batch, device, amp, tuned, comp)
    sec = timed(lambda: step(fixed), device, args.warmup, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    row = {"student": student, "variant": name, "teachers": args.teachers, "batch": args.batch,
           "img_s": round(args.batch / sec, 1), "ms_per_step": round(1000 * sec, 1),
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "peak_gib": None if peak is None else round(peak, 1)}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return row


def synthetic_batch(batch: int, device: torch.device) -> Batch:
    """Random images with depth and segmentation extras (for the simulator teachers)."""
    g = torch.Generator().manual_seed(0)
    return Batch([str(i) for i in range(batch)], torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, generator=g),
                 {"depth": torch.rand(batch, 224, 224, generator=g), "segmentation": torch.randint(0, 4, (batch, 224, 224), generator=g)}).to(device)


def bench_online(args, device, amp) -> dict:
    """Teachers' own forward img/s vs an online step (teachers + standardise + student step) img/s."""
    specs = resolve_teachers(args.online_teachers)
    weights = {s.name: ("random" if args.random_teachers else None) for s in specs}
    specs = [type(s)(s.name, None if s.name in TEACHERS else weights[s.name], s.id, s.kwargs) for s in specs]
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    teachers = build_teachers(specs, device, dtype)
    batch = synthetic_batch(args.online_batch, device)
    shapes = {t.id: (t.dim, *t.grid) for t in teachers}
    step, _, _ = make_step(args.students[0], shapes, args.online_batch, device, amp, True, False)

    def teachers_only():
        return [t(batch).half() for t in teachers]

    def online_step():
        step({t.id: t(batch).half() for t in teachers})

    t_teach = timed(teachers_only, device, 1, args.repeats)
    t_online = timed(online_step, device, 1, args.repeats)
    n = args.online_batch
    return {"student": args.students[0], "teachers": [t.id for t in teachers], "batch": n,
            "teachers_img_s": round(n / t_teach, 1), "online_step_img_s": round(n / t_online, 1),
            "online_vs_teachers": round(t_teach / t_online, 3)}


def projection(step_img_s: float, teacher_ms: float) -> dict:
    """GPU-hours of 50 ImageNet epochs at a step rate, plus one extraction pass (cached) or teachers every step (online)."""
    train_h = EPOCHS * IMAGENET / step_img_s / 3600
    extract_h = IMAGENET * teacher_ms / 1000 / 3600
    return {"train_gpu_h": round(train_h, 1), "extract_gpu_h": round(extract_h, 2),
            "cached_total_gpu_h": round(train_h + extract_h, 1),
            "online_total_gpu_h": round(train_h + EPOCHS * extract_h, 1), "paper_gpu_h": PAPER_GPU_HOURS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--students", nargs="+", default=None, help="default: nano tiny (CPU), deit-small (CUDA)")
    p.add_argument("--teachers", default="cdiv", help="teacher set whose target shapes the translators produce")
    p.add_argument("--batch", type=int, default=None, help="default 16 (CPU), 256 (CUDA)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the student + translators")
    p.add_argument("--online-teachers", default=None, help="teacher set for the online comparison "
                   "(default: offline on CPU, cdiv with random weights on CUDA)")
    p.add_argument("--online-batch", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the JSON report here")
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.students = args.students or (["deit-small"] if cuda else ["nano", "tiny"])
    args.batch = args.batch or (256 if cuda else 16)
    args.online_teachers = args.online_teachers or ("cdiv" if cuda else "offline")
    args.random_teachers = cuda
    args.online_batch = args.online_batch or (64 if cuda else 16)
    amp = torch.bfloat16 if cuda else None
    flush_denormals()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = bench_cached(args, device, amp)
    online = bench_online(args, device, amp)
    best = max(r["img_s"] for r in rows if r["student"] == args.students[0])
    report = {"device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "amp": str(amp), "cached_step": rows,
              "online": online,
              "projection_measured": projection(best, 1000 / online["teachers_img_s"]) if cuda else None,
              "projection_from_anchors": projection(ANCHOR_PLAIN_IMG_S, ANCHOR_CDIV_TEACHER_MS),
              "target": {"anchor_plain_img_s": ANCHOR_PLAIN_IMG_S, "want_img_s": 1.5 * ANCHOR_PLAIN_IMG_S,
                         "want_online_vs_teachers": 0.9}}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from theia_eval.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
