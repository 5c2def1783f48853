"""The jobs of a sweep, one function per stage; each is idempotent (a finished job returns 'skipped').

STAGE_JOBS maps a stage name to `fn(job: dict, plan: Plan) -> dict`; launch.run_job calls it inside a
Hydra job (in this process, a joblib worker or a SLURM task) with the plan read from plan.json.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from theia_eval.analysis.store import ResultsStore, now
from theia_eval.errors import InputError
from theia_eval.hashing import weights_hash
from theia_eval.io import atomic_write_json, read_json, try_lock
from theia_eval.provenance import code_version
from theia_eval.sweeps.plan import DemoJob, DistillJob, EmbedJob, Job, Plan, TrainJob, demo_config

ROWS_FILE = "rows.json"
log = logging.getLogger(__name__)
_ENCODER: dict[tuple, object] = {}  # the last encoder this process loaded (cells are encoder-major)


def cached_encoder(name: str, weights: str | None, device: str):
    """create_encoder, keeping the last one so consecutive jobs of one encoder load it once."""
    from theia_eval.encoders import create_encoder

    key = (name, weights, device)
    if key not in _ENCODER:
        _ENCODER.clear()
        _ENCODER[key] = create_encoder(name, weights=weights, device=device)
    return _ENCODER[key]


# ------------------------------------------------------------------------------------------- demos
def demos_complete(job: DemoJob) -> bool:
    """The task's demo file exists with the requested number of demos and no unmerged parts."""
    from theia_eval.envs.dataset import DemoFile
    from theia_eval.envs.demos import parts_dir

    path = Path(job.path)
    if not path.is_file() or parts_dir(path).exists():
        return False
    with DemoFile(path) as f:
        return len(f) >= int(job.recipe["num_demos"]) or not job.collect


def collect_demos(job: DemoJob, plan: Plan) -> dict:
    from theia_eval.envs.demos import collect_task

    if demos_complete(job):
        return {"status": "skipped"}
    path = Path(job.path)
    with try_lock(path.parent / f".{path.name}.lock") as mine:
        if not mine:  # another sweep (a second lane over the same tasks) collects these demos right now
            log.warning("demos of %s (%s) are being collected by another process; skipped here, with the jobs "
                        "that need them", job.task, path)
            return {"status": "busy"}
        if demos_complete(job):
            return {"status": "skipped"}
        report = collect_task(job.task, job.demos_dir, demo_config(job.recipe))
    return {"status": "done", "demos": report.demos, "new_demos": report.new_demos}


# ------------------------------------------------------------------------------------------- distill
def student_done(run_dir: str | Path) -> bool:
    """A student is finished when its export and summary exist (a stopped run has no export)."""
    run_dir = Path(run_dir)
    return (run_dir / "export" / "model.safetensors").is_file() and (run_dir / "summary.json").is_file()


def distill_student(job: DistillJob, plan: Plan) -> dict:
    """Render the student's frame set when asked and missing, then distill (resumes) and export."""
    from theia_eval.distill.train import run_distillation

    if student_done(job.run_dir):
        return {"status": "skipped"}
    run = Path(job.run_dir)
    with try_lock(run.parent / f".{run.name}.lock") as mine:
        if not mine:  # another sweep (a second lane over the same students) distills this one right now
            log.warning("student %s (%s) is being distilled by another process; skipped here, with the jobs "
                        "that need it", job.label, run)
            return {"status": "busy"}
        if student_done(run):  # finished by the other process between the check above and the lock
            return {"status": "skipped"}
        if job.frames is not None:
            ensure_frameset(job.frames)
        cfg = OmegaConf.create(job.config)
        summary = run_distillation(cfg, command=f"theia-eval sweep (plan {plan.name}, student {job.label})")
    if not student_done(run):
        raise InputError(f"distillation of '{job.label}' ended without an export in {run}/export "
                         "(train.stop_at set, or export=false?).")
    return {"status": "done", "wall_s": summary.get("wall_s")}


def ensure_frameset(settings: dict) -> None:
    import theia_eval.encoders  # noqa: F401  (import torch/triton before an EGL context exists: the reverse segfaults)
    from theia_eval.distill.frames import FrameSettings, render_frameset
    from theia_eval.distill.framesets import MANIFEST

    if not (Path(settings["out"]) / MANIFEST).is_file():
        render_frameset(FrameSettings(**settings), False)


# ------------------------------------------------------------------------------------------- embed
def embed_tasks(job: EmbedJob, plan: Plan) -> dict:
    """Build (or open) the embedding cache of every task of one encoder and input kind."""
    from theia_eval.policies.cache import HDF5DemoSource, get_or_build_cache

    encoder = cached_encoder(job.encoder.name, job.encoder.weights, job.device)
    frames = 0
    for demos in job.demos:
        with HDF5DemoSource(demos.path, split=demos.split) as src:
            cache = get_or_build_cache(encoder, src, job.cache_dir, job.kind, chunk_size=int(job.batch),
                                       progress=False)
        frames += cache.num_frames
    return {"status": "done", "frames": frames}


# ------------------------------------------------------------------------------------------- train
def train_cell(job: TrainJob, plan: Plan) -> dict:
    """Train and evaluate one cell (resuming its run), then append its best/last rows to the store."""
    from theia_eval.envs.tasks import get_task
    from theia_eval.policies.runs import run_dir, train_task

    store = ResultsStore(plan.store, plan.journal)
    if store.checkpoints(job.config_hash) >= {"best", "last"}:
        return {"status": "skipped"}
    cfg = OmegaConf.create(job.config)
    spec = get_task(job.task)
    run = run_dir(cfg, spec)
    rows_file = run / ROWS_FILE
    with try_lock(run.parent / f".{run.name}.lock") as mine:
        if not mine:  # another sweep (a second lane over an overlapping grid) trains this cell right now
            log.warning("cell %s (%s) is being trained by another process; skipped here, its rows join the store "
                        "when that process finishes it", job.id, run)
            return {"status": "busy"}
        if not rows_file.is_file():
            started = now()
            encoder = cached_encoder(cfg.encoder, cfg.weights, cfg.device)
            metrics = train_task(cfg, spec, encoder)
            atomic_write_json(rows_file, cell_rows(job, run, metrics, encoder, started))
        store.append(read_json(rows_file, "the rows of a finished cell"))
    return {"status": "done"}


def score_interval(info: dict, metric: str, scores: list[float]) -> tuple[float, float]:
    """95 % interval of the score over episodes: Wilson for success, normal (mean +- 1.96 s.e.) otherwise."""
    if metric == "success":
        lo, hi = info["aggregate"]["success_ci95"]
        return 100.0 * lo, 100.0 * hi
    n = len(scores)
    half = 1.96 * float(np.std(scores, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    mean = float(np.mean(scores))
    return mean - half, mean + half


def checkpoint_row(job: TrainJob, info: dict, epoch: int, checkpoint: str) -> dict:
    """The score fields of one evaluation."""
    from theia_eval.envs.family import episode_scores

    agg = info["aggregate"]
    metric, scores = episode_scores(info)
    lo, hi = score_interval(info, metric, scores)
    per_step = info.get("time_per_step", {}).get("encode_ms")
    batch = max(1, min(int(info["config"]["num_envs"]), int(agg["episodes"])))
    return {"checkpoint": checkpoint, "epoch": int(epoch), "metric": metric, "score": float(np.mean(scores)),
            "score_lo": lo, "score_hi": hi, "success_rate": float(agg["success_rate"]),
            "mean_return": float(agg["mean_return"]), "episodes": int(agg["episodes"]),
            "ms_per_img": None if per_step is None else float(per_step) / batch}


def cell_rows(job: TrainJob, run: Path, metrics: dict, encoder, started: str) -> list[dict]:
    """The store rows (best and last checkpoint) of a finished cell."""
    common = {"config_hash": job.config_hash, "sweep": job.sweep, "encoder": job.label,
              "encoder_name": encoder.name, "weights": job.encoder.weights, "weights_id": encoder.weights_id,
              "weights_hash": weights_hash(encoder.weights_id), "suite": job.suite, "task": job.task,
              "head": job.head, "head_input": job.kind, "seed": int(job.seed),
              "params_m": float(encoder.config.params_m), "gflops": float(encoder.config.gflops),
              "protocol": job.protocol, "deviations": "; ".join(job.deviations),
              "device": str(job.config["device"]), "run_dir": str(run), "code_version": code_version(),
              "started_at": started, "finished_at": now()}
    rows = []
    last = metrics["last_checkpoint"]
    best = metrics.get("best_checkpoint") or last
    for checkpoint, entry in (("best", best), ("last", last)):
        info = read_json(run / "eval" / f"epoch_{int(entry['epoch']):03d}.json", "the evaluation record")
        rows.append({**common, **checkpoint_row(job, info, entry["epoch"], checkpoint)})
    return rows


StageFn = Callable[[Job, Plan], dict]
STAGE_JOBS: dict[str, StageFn] = {"demos": collect_demos, "distill": distill_student, "embed": embed_tasks,
                                  "train": train_cell}


def run_stage_job(stage: str, job: Job, plan: Plan) -> dict:
    """Run one job with timing; threads per plan."""
    if plan.threads:
        import torch

        torch.set_num_threads(int(plan.threads))
    t0 = time.perf_counter()
    result = STAGE_JOBS[stage](job, plan)
    return {**result, "stage": stage, "id": job.id, "seconds": round(time.perf_counter() - t0, 2)}
