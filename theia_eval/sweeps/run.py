"""Running a sweep plan, stage by stage, resumably (`theia-eval sweep` and the quickstart).

Order: plan (every name and key checked; nothing runs on bad input) -> demos -> distill -> embed -> train
-> leaderboard. Only unfinished jobs are launched: a cell whose best and last rows are in the store is
skipped; a killed cell resumes from its last.pt; rows are keyed by (config_hash, checkpoint), so a cell is
never counted twice. A failed job blocks only the jobs that need it (a failed student blocks its cells);
every failure is listed at the end and the exit code is 1. Two sweeps over one grid may run at once (two lanes,
one core each): a student or cell another process is working on is "busy" and left to it, and the jobs that
need a busy student wait for a later run of the sweep (listed, exit code 0).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from theia_eval.analysis.store import ResultsStore
from theia_eval.io import atomic_write_text, read_json
from theia_eval.sweeps.launch import run_stage
from theia_eval.sweeps.plan import STAGES, Job, Plan, build_plan


@dataclass
class SweepReport:
    """What a sweep invocation did: per stage the launched/skipped jobs and every failure."""

    plan: Plan
    plan_path: Path
    pending: dict[str, list[int]]
    results: dict[str, list[dict]] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [r for rs in self.results.values() for r in rs if r.get("status") == "failed"]

    def counts(self, stage: str) -> Counter:
        return Counter(r.get("status") for r in self.results.get(stage, []))


def pending_jobs(plan: Plan, store: ResultsStore) -> dict[str, list[int]]:
    """Indices of the jobs still to run, stage by stage (only what unfinished cells need)."""
    from theia_eval.sweeps.stages import demos_complete, student_done

    finished = store.finished()
    cells = [i for i, c in enumerate(plan.train) if c.config_hash not in finished]
    need = [plan.train[i] for i in cells]
    students = {c.student for c in need}
    groups = {c.group for c in need}
    tasks = {c.task for c in need}
    return {"demos": [i for i, d in enumerate(plan.demos) if d.task in tasks and not demos_complete(d)],
            "distill": [i for i, s in enumerate(plan.distill)
                        if s.label in students and not student_done(s.run_dir)],
            "embed": [i for i, e in enumerate(plan.embed) if e.id in groups],
            "train": cells}


def blocked_by(stage: str, failed: Job, job: Job) -> bool:
    """Whether a later job needs the output of a (failed or busy) job of `stage`."""
    needs = {"demos": lambda: failed.task in job.tasks_needed,
             "distill": lambda: job.student is not None and job.student == failed.label,
             "embed": lambda: job.group == failed.id}
    return needs[stage]()


def drop_blocked(report: SweepReport, stage: str, results: list[dict]) -> None:
    """Remove later jobs that need the output of a failed job (`blocked`), or of a job another process is running
    right now (`waiting`: a busy student's embedding and cells are left to a later run of the sweep, not failed)."""
    for r in results:
        status = r.get("status")
        if status not in ("failed", "busy"):
            continue
        job = next(j for j in report.plan.stage(stage) if j.id == r["id"])
        for later in STAGES[STAGES.index(stage) + 1:]:
            jobs = report.plan.stage(later)
            keep = [i for i in report.pending[later] if not blocked_by(stage, job, jobs[i])]
            dropped = [i for i in report.pending[later] if i not in keep]
            if status == "failed":
                report.blocked += [f"{later} {jobs[i].id} (needs {stage} {r['id']})" for i in dropped]
            else:
                report.waiting += [f"{later} {jobs[i].id} (waits for {stage} {r['id']}, running in another "
                                   "process)" for i in dropped]
            report.pending[later] = keep


def sync_rows(plan: Plan, store: ResultsStore) -> int:
    """Append rows of finished cells whose rows.json exists but are not in the store (idempotent)."""
    from theia_eval.envs.tasks import get_task
    from theia_eval.policies.runs import run_dir
    from theia_eval.sweeps.stages import ROWS_FILE
    from omegaconf import OmegaConf

    finished, added = store.finished(), 0
    for cell in plan.train:
        if cell.config_hash in finished:
            continue
        path = run_dir(OmegaConf.create(cell.config), get_task(cell.task)) / ROWS_FILE
        if path.is_file():
            added += store.append(read_json(path, "the rows of a finished cell"))
    return added


def prepare(cfg: DictConfig) -> tuple[Plan, Path, ResultsStore]:
    """Build and write the plan, open the store and bring it up to date with finished cells.

    The jobs read the plan from `plans/plan-<content hash>.json`, a file no later sweep changes, so two sweeps
    over parts of one grid may share an out_dir at the same time; `plan.json` is the latest plan (what
    `publish grid=plan` reads)."""
    from theia_eval.envs.tasks import check_ready, get_task

    plan = build_plan(cfg)
    check_ready(get_task(t) for t in dict.fromkeys(c.task for c in plan.train))  # before any file is written
    out = Path(cfg.out_dir)
    text = plan.to_json()
    plan_path = out / "plans" / f"plan-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not plan_path.is_file():
        atomic_write_text(plan_path, text)
    atomic_write_text(out / "plan.json", text)
    store = ResultsStore(cfg.store, cfg.store_journal)
    sync_rows(plan, store)
    return plan, plan_path, store


def run_sweep(cfg: DictConfig, dry_run: bool = False, echo=print) -> SweepReport:
    """Plan, then launch each stage's unfinished jobs; returns what happened (no exception on job failures)."""
    plan, plan_path, store = prepare(cfg)
    report = SweepReport(plan, plan_path, pending_jobs(plan, store))
    echo(describe(report))
    if dry_run:
        return report
    for stage in STAGES:
        indices = report.pending[stage]
        if not indices:
            continue
        echo(f"[sweep {plan.name}] {stage}: {len(indices)} job(s) with the {cfg.launcher} launcher")
        results = run_stage(plan_path, stage, indices, cfg.launcher, int(cfg.jobs), list(cfg.launcher_overrides),
                            log_dir=Path(cfg.out_dir) / "hydra")
        report.results[stage] = results
        drop_blocked(report, stage, results)
    sync_rows(plan, store)
    echo(summary(report, store))
    return report


def describe(report: SweepReport) -> str:
    plan = report.plan
    labels = list(dict.fromkeys(c.label for c in plan.train))
    tasks = list(dict.fromkeys(c.task for c in plan.train))
    heads = list(dict.fromkeys(c.head for c in plan.train))
    seeds = list(dict.fromkeys(c.seed for c in plan.train))
    protocols = Counter(c.protocol for c in plan.train)
    pairs = list(dict.fromkeys((c.label, c.head) for c in plan.train))
    grid = (f"{len(labels)} encoders x {len(tasks)} tasks x {len(heads)} heads" if len(pairs) == len(labels) * len(heads)
            else f"{len(pairs)} encoder-head pairs x {len(tasks)} tasks")
    grid += f" x {len(seeds)} seeds"
    if len(plan.train) != len(pairs) * len(tasks) * len(seeds):  # encoders of some task families, extra_seeds
        grid = f"part of {grid}"
    per_seed = Counter(c.seed for c in plan.train)
    seed_list = (", ".join(map(str, seeds)) if len(set(per_seed.values())) == 1
                 else ", ".join(f"{s} ({per_seed[s]} cells)" for s in seeds))
    lines = [f"sweep {plan.name}: {grid} = {len(plan.train)} cells "
             f"({', '.join(f'{n} {p}' for p, n in protocols.items())})",
             f"  encoders: {', '.join(labels)}", f"  tasks: {', '.join(tasks)}",
             f"  heads: {', '.join(heads)}; seeds: {seed_list}"]
    devs = next((c.deviations for c in plan.train if c.deviations), None)
    if devs:
        lines.append("  reduced protocol: " + "; ".join(devs))
    lines.append("  to run: " + ", ".join(f"{s} {len(report.pending[s])}/{len(plan.stage(s))}" for s in STAGES)
                 + f"  (store {plan.store})")
    return "\n".join(lines)


def summary(report: SweepReport, store: ResultsStore) -> str:
    ran = "; ".join(f"{s}: " + ", ".join(f"{n} {k}" for k, n in sorted(report.counts(s).items())) for s in STAGES
                    if report.results.get(s))
    lines = [f"[sweep {report.plan.name}] {ran or 'nothing to run: every cell is finished'}"]
    lines.append(f"  store {report.plan.store}: {len(store)} rows, "
                 f"{sum(c.config_hash in store.finished() for c in report.plan.train)}/{len(report.plan.train)} "
                 "cells finished")
    for f in report.failures:
        lines.append(f"  FAILED {f['stage']} {f['id']}: {f['error']}")
    for b in report.blocked:
        lines.append(f"  not run: {b}")
    for w in report.waiting:
        lines.append(f"  left for later: {w}")
    return "\n".join(lines)
