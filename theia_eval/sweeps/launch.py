"""Run the jobs of one sweep stage as a Hydra multirun: `job=i,j,k` over the plan's job list.

Launchers (LAUNCHERS): sequential (Hydra's basic launcher: this process, one job after another), joblib
(local worker processes, `jobs` at a time) and submitit (one SLURM task per job; submitit-local runs the
same launcher on this machine, for trying a cluster config). `launcher_overrides` pass anything else to
the launcher, e.g. hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min=240.

Each job reads the plan file, runs its stage function and returns a small dict; a job's exception is
caught and returned (status failed, with the traceback in the job's Hydra log), so one bad cell never
stops the others and the caller reports every failure at the end.
"""
from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from theia_eval.errors import unknown_name
from theia_eval.sweeps.plan import Plan

log = logging.getLogger(__name__)
JOB_CONFIG = "theia_eval_sweep_job"

# launcher name -> Hydra overrides ({jobs} is filled in)
LAUNCHERS: dict[str, tuple[str, ...]] = {
    "sequential": ("hydra/launcher=basic",),
    "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs={jobs}"),
    "submitit": ("hydra/launcher=submitit_slurm",),
    "submitit-local": ("hydra/launcher=submitit_local",),
}
_PLANS: dict[str, Plan] = {}


def register_job_config() -> None:
    """The Hydra primary config of a stage job: the plan file, the stage and the job index."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=JOB_CONFIG, node={"plan": "???", "stage": "???", "job": "???"})


def load_plan(path: str) -> Plan:
    """The plan of a job (read once per process)."""
    if path not in _PLANS:
        _PLANS[path] = Plan.from_json(Path(path).read_text())
    return _PLANS[path]


def usable_start_method() -> None:
    """joblib's loky workers report start method 'loky', which their own children cannot resolve (simulator
    workers die with "cannot find context for 'loky'"): give them the standard forkserver instead."""
    import multiprocessing as mp

    if mp.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        mp.set_start_method("forkserver", force=True)


JOURNAL = "jobs.jsonl"  # in the sweep's out_dir: one line per finished job (status, wall time, machine)


def record_job(plan: Plan, result: dict, started: str) -> None:
    """Append a job's outcome to <out_dir>/jobs.jsonl (one write of one line: safe with parallel jobs)."""
    import json

    from theia_eval.analysis.store import now
    from theia_eval.provenance import machine

    line = {**{k: v for k, v in result.items() if k in ("stage", "id", "status", "seconds", "error")},
            "started_at": started, "finished_at": now(), "machine": machine(plan.threads)}
    path = Path(plan.out_dir) / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")


def run_job(cfg: DictConfig) -> dict:
    """The Hydra task function: one stage job; exceptions become a 'failed' result."""
    from theia_eval.analysis.store import now
    from theia_eval.sweeps.stages import run_stage_job

    usable_start_method()
    plan = load_plan(str(cfg.plan))
    job = plan.stage(str(cfg.stage))[int(cfg.job)]
    started = now()
    try:
        result = run_stage_job(str(cfg.stage), job, plan)
    except Exception as exc:  # reported by the parent with the others; the traceback goes to the job log
        log.error("job %s %s failed:\n%s", cfg.stage, job.id, traceback.format_exc())
        result = {"status": "failed", "stage": str(cfg.stage), "id": job.id,
                  "error": f"{type(exc).__name__}: {exc}"}
    if result.get("status") not in ("skipped", "busy"):  # the journal holds work done (busy: done elsewhere)
        record_job(plan, result, started)
    return result


def launcher_overrides(name: str, jobs: int, extra: Sequence[str]) -> list[str]:
    if name not in LAUNCHERS:
        raise unknown_name("launcher", name, LAUNCHERS)
    return [o.format(jobs=int(jobs)) for o in LAUNCHERS[name]] + list(extra)


def run_stage(plan_path: Path, stage: str, indices: Sequence[int], launcher: str, jobs: int = 1,
              extra: Sequence[str] = (), log_dir: Path | None = None) -> list[dict]:
    """Launch the given jobs of a stage through Hydra's multirun; returns each job's result dict."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from theia_eval.config import config_dir

    if not indices:
        return []
    register_job_config()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_dir = (log_dir or plan_path.parent / "hydra") / f"{stage}-{stamp}"
    overrides = [f"plan={plan_path.resolve()}", f"stage={stage}", "job=" + ",".join(str(i) for i in indices),
                 f"hydra.sweep.dir={sweep_dir.resolve()}", "hydra.sweep.subdir=${hydra.job.num}",
                 "hydra.job.chdir=false", *launcher_overrides(launcher, jobs, extra)]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=f"sweep-{stage}"):
        returns = GlobalHydra.instance().hydra.multirun(config_name=JOB_CONFIG, task_function=run_job,
                                                        overrides=overrides)
    return [r.return_value for batch in returns for r in batch]
