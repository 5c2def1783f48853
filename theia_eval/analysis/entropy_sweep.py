"""The entropy report scoped to one sweep (`theia-eval entropy sweep_dir=DIR`): the encoders of the sweep's plan,
the demo frames of each task it scores, and the scores of exactly the plan's cells, per task and pooled.

A sweep that reuses another sweep's cells through a shared store (the reference study's part 3 reuses part 1's
efficientnet-lite0 and theia-offline cells) finds them by their config hash, not by the sweep name on the row.

    scope = sweep_scope(sweep_dir, head="conv", checkpoint="last")
    scope.encoders            # [{label, name, weights}] in plan order
    scope.task_files          # {task: demo file}
    scope.task_scores(task)   # {encoder label: (score 0-100, s.e.)}
    scope.pooled_scores()     # mean over the plan's tasks, for encoders scored on every one of them
    scope.not_distilled       # students of the plan still distilling: listed in the report, not measured
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from theia_eval.errors import InputError


@dataclass
class SweepScope:
    name: str
    sweep_dir: str
    store: str
    head: str
    checkpoint: str
    encoders: list[dict]
    task_files: dict[str, str]
    cells: dict[tuple[str, str], list[str]]  # (encoder label, task) -> config hashes (one per seed)
    scores: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # filled by load_scores
    not_distilled: list[str] = field(default_factory=list)  # students of the plan still distilling (not measured)

    def task_scores(self, task: str) -> dict[str, tuple[float, float]]:
        return {e: v for (e, t), v in self.scores.items() if t == task}

    def pooled_scores(self) -> dict[str, tuple[float, float]]:
        """Mean score over the plan's tasks (s.e. of that mean from the per-task s.e.), for encoders with a
        score on every task; the others are left out (see missing())."""
        tasks, out = list(self.task_files), {}
        for e in (enc["label"] for enc in self.encoders):
            vals = [self.scores.get((e, t)) for t in tasks]
            if all(v is not None for v in vals):
                out[e] = (sum(v[0] for v in vals) / len(vals),
                          math.sqrt(sum(v[1] ** 2 for v in vals)) / len(vals))
        return out

    def missing(self) -> list[str]:
        """'encoder on task' for every plan cell without a score at this checkpoint."""
        return [f"{e} on {t}" for (e, t) in self.cells if (e, t) not in self.scores]

    def label(self, task: str | None = None) -> str:
        what = f"success on {task}" if task else f"mean success over {len(self.task_files)} task(s)"
        return f"{what}, {self.head} head, {self.checkpoint} checkpoint, the cells of sweep {self.name}"


def sweep_scope(sweep_dir: str | Path, head: str | None, checkpoint: str, store: str | None = None) -> SweepScope:
    """Read DIR/plan.json: the encoders with `head` cells, their tasks' demo files and cell hashes. (The analysis
    layer reads plans, it does not build them: for a sweep run in pieces, whose plan.json holds the last piece,
    `theia-eval sweep sweep=NAME out_dir=DIR --dry-run` writes the whole grid's plan.json first.)"""
    from theia_eval.io import read_json

    sweep_dir = Path(sweep_dir)
    plan_path = sweep_dir / "plan.json"
    if not plan_path.is_file():
        raise InputError(f"sweep_dir={sweep_dir} has no plan.json: pass the out_dir of a `theia-eval sweep` run "
                         "(the sweep writes plan.json before it runs anything).")
    plan = read_json(plan_path, "the sweep plan (written by `theia-eval sweep`)")
    head = head or "conv"
    cells = [c for c in plan.get("train") or [] if c.get("head") == head]
    if not cells:
        heads = sorted({str(c.get("head")) for c in plan.get("train") or []})
        raise InputError(f"the sweep plan {plan_path} has no cells with the {head} head (heads there: "
                         f"{', '.join(heads) or 'none'}); pass score.head=HEAD, or, for a sweep run in pieces, write "
                         f"the whole grid's plan first: theia-eval sweep sweep={plan.get('name')} "
                         f"out_dir={sweep_dir} --dry-run")
    files = {d["task"]: d["path"] for d in plan.get("demos") or []}
    encoders, by_cell, pending = {}, {}, []
    for c in cells:
        cfg = c["config"]
        by_cell.setdefault((c["label"], c["task"]), []).append(c["config_hash"])
        if (c.get("encoder") or {}).get("student") and not student_exported(cfg.get("weights")):
            if c["label"] not in pending:  # a student of the sweep's distill stage that has no export yet
                pending.append(c["label"])
            continue
        encoders.setdefault(c["label"], {"label": c["label"], "name": cfg["encoder"], "weights": cfg.get("weights")})
    tasks = list(dict.fromkeys(c["task"] for c in cells))
    unknown = [t for t in tasks if t not in files]
    if unknown:
        raise InputError(f"the sweep plan {plan_path} has no demo file for {unknown}: it is damaged or from an older "
                         "version; run `theia-eval sweep --dry-run` with the same config to write it again.")
    return SweepScope(str(plan.get("name")), str(sweep_dir), str(store or plan.get("store")), head, checkpoint,
                      list(encoders.values()), {t: files[t] for t in tasks}, by_cell, not_distilled=pending)


def student_exported(run_dir: str | None) -> bool:
    """Whether a distillation run has its export (what the sweep's distill stage writes last)."""
    return run_dir is not None and (Path(run_dir) / "export" / "model.safetensors").is_file()


def load_scores(scope: SweepScope) -> SweepScope:
    """Fill scope.scores from the store: the mean over seeds of each (encoder, task)'s rows at the checkpoint,
    with its s.e. (the Wilson half-width / 1.96 of each seed's row, combined over seeds)."""
    from theia_eval.analysis.store import load_results

    if not Path(scope.store).is_file():
        raise InputError(f"the sweep's results store {scope.store} does not exist: run the sweep first, or pass "
                         "results=PATH.")
    df = load_results(scope.store)
    if df.empty:
        return scope
    df = df[df["checkpoint"] == scope.checkpoint]
    for key, hashes in scope.cells.items():
        rows = df[df["config_hash"].isin(hashes)]
        if rows.empty:
            continue
        rows = rows.drop_duplicates("config_hash", keep="last")
        sems = ((rows["score_hi"] - rows["score_lo"]) / (2 * 1.96)).fillna(float("nan"))
        scope.scores[key] = (float(rows["score"].mean()), float(math.sqrt(float((sems ** 2).sum()))) / len(rows))
    return scope


__all__ = ["SweepScope", "load_scores", "sweep_scope"]
