"""The teacher-combination ablation table: which teachers matter?

One row per student distilled from a subset of the teachers (same size, data and schedule; a sweep's `students:`
block). For each: its held-out cosine to every teacher it was trained on, with a 95 % percentile bootstrap over the
held-out images (`distill.heldout.heldout_fit`, per image), and its policy score on every task (k/n with Wilson's
interval) and over the tasks (the leaderboard's bootstrap over tasks, seeds and episodes), at one checkpoint.
Below it, per teacher, the descriptive difference between the mean score of the combinations that include it
and of those that do not (every combination weighted alike; with one student per combination these are not
independent replicates, so no interval is claimed for them).

    rows, meta = ablation_rows(combos, sections, fits, checkpoint="best")

The sweep-level entry point is `ablation_report(sweep_dir)`: combinations from the sweep's plan.json, scores
from its store, held-out fits computed once per student and kept in OUT/heldout/<label>.json. Students not
distilled yet are listed without numbers, so a study in progress can publish its table.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theia_eval.analysis.leaderboard import CHECKPOINTS, Section, TaskScore
from theia_eval.analysis.uncertainty import Estimate, Resampling
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, atomic_write_text, read_json

FitFn = Callable[[str, str], dict]  # (source, run_dir) -> heldout_fit(..., per_image=True) result


@dataclass(frozen=True)
class Combo:
    """One ablation student: its label (the encoder label of its cells), teachers and run directory."""

    label: str
    teachers: tuple[str, ...]
    run_dir: str


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    def format(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def combos_from_plan(plan: Mapping) -> list[Combo]:
    """The students of a sweep plan (plan.json's `distill` jobs) as ablation combinations."""
    out = []
    for job in plan.get("distill") or []:
        teachers = job["config"]["teachers"]
        if isinstance(teachers, str):
            raise InputError(f"student '{job['label']}' names the teacher set '{teachers}'; the ablation needs each "
                             "student's teachers listed (students: [{label: ..., teachers: [a, b]}]).")
        out.append(Combo(job["label"], tuple(str(t) for t in teachers), str(job["run_dir"])))
    if len(out) < 2:
        raise InputError(f"the ablation compares students distilled from different teachers; the plan has "
                         f"{len(out)} student(s). Add them under `students:` in the sweep config.")
    return out


def mean_interval(values: Sequence[float], r: Resampling) -> Interval:
    """Mean of per-image values with a percentile bootstrap over the images."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise InputError(f"held-out cosines must be finite and non-empty (got {x.size} values, "
                         f"{int((~np.isfinite(x)).sum()) if x.size else 0} not finite).")
    rng = np.random.default_rng(r.seed)
    means = x[rng.integers(0, x.size, (r.resamples, x.size))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(lo), float(hi), int(x.size))


def fit_intervals(fit: Mapping, teachers: Sequence[str], r: Resampling) -> dict[str, Interval]:
    """{teacher: held-out cosine interval} for the teachers a student was trained on."""
    per_image = fit.get("cos_per_image") or {}
    missing = [t for t in teachers if t not in per_image]
    if missing:
        raise InputError(f"the held-out fit of {fit.get('source')} has no per-image cosines for {missing}; compute "
                         "it with heldout_fit(..., per_image=True).")
    return {t: mean_interval(per_image[t], r) for t in teachers}


def find_section(sections: Sequence[Section], labels: Sequence[str], head: str) -> Section | None:
    """The leaderboard section holding the combinations' cells (one protocol, so scores compare); None while no
    cell of theirs has finished."""
    holding = [s for s in sections if any((lb, head, c) in s.grid for lb in labels for c in CHECKPOINTS)]
    if not holding:
        return None
    if len(holding) > 1:
        raise InputError(f"the students' cells are spread over {len(holding)} protocols "
                         f"({', '.join(s.title for s in holding)}); scores from different protocols do not compare. "
                         "Pass the store of one sweep.")
    return holding[0]


def ablation_rows(combos: Sequence[Combo], sections: Sequence[Section], fits: Mapping[str, Mapping],
                  head: str = "conv", checkpoint: str = "best", resampling: Resampling | None = None,
                  pending: Sequence[Combo] = (), tasks: Sequence[str] = ()) -> tuple[list[dict], dict]:
    """One row per combination (held-out cosine per teacher, task scores, mean score), and the table's facts.

    `combos` are the distilled students (each needs its fit); `pending` those not distilled yet, listed with no
    numbers, so a study in progress can publish its table. Task columns: the section's tasks, else `tasks`."""
    if checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint must be one of {list(CHECKPOINTS)}, got '{checkpoint}'.")
    r = resampling or Resampling()
    sec = find_section(sections, [c.label for c in combos], head)
    task_names = list(sec.tasks if sec is not None else tasks)
    everyone = [*combos, *pending]
    teachers = sorted({t for c in everyone for t in c.teachers})
    rows = []
    for c in sorted(everyone, key=lambda c: (len(c.teachers), [teachers.index(t) for t in c.teachers])):
        if c in pending:
            rows.append({"student": c.label, "teachers": list(c.teachers), "run_dir": c.run_dir,
                         "status": "not distilled yet", "heldout_cos": {}, "tasks": {t: None for t in task_names},
                         "score": None})
            continue
        if c.label not in fits:
            raise InputError(f"no held-out fit for student '{c.label}' ({c.run_dir}).")
        cos = fit_intervals(fits[c.label], c.teachers, r)
        scores: dict[str, TaskScore | None] = {
            t: None if sec is None else sec.task_scores.get((c.label, head, checkpoint, t)) for t in task_names}
        overall: Estimate | None = None if sec is None else sec.overall_ci.get((c.label, head, checkpoint))
        rows.append({"student": c.label, "teachers": list(c.teachers), "run_dir": c.run_dir, "status": "distilled",
                     "heldout_cos": {t: vars(i) for t, i in cos.items()},
                     "tasks": {t: None if s is None else vars(s) for t, s in scores.items()},
                     "score": None if overall is None else vars(overall)})
    meta = {"teachers": teachers, "tasks": task_names, "head": head, "checkpoint": checkpoint,
            "section": sec.title if sec is not None else "no cell of these students has finished yet",
            "deviations": sec.deviations if sec is not None else [], "bootstrap": r.describe(),
            "heldout_images": sorted({row["heldout_cos"][t]["n"] for row in rows for t in row["heldout_cos"]}),
            "pending": [c.label for c in pending],
            "unscored": [row["student"] for row in rows if row["score"] is None and row["student"] not in
                         {c.label for c in pending}]}
    return rows, meta


def marginal_effects(rows: Sequence[Mapping], teachers: Sequence[str]) -> list[dict]:
    """Per teacher: mean score of the combinations with it, without it, and the difference (descriptive)."""
    out = []
    for t in teachers:
        with_t = [r["score"]["mean"] for r in rows if r["score"] and t in r["teachers"]]
        without = [r["score"]["mean"] for r in rows if r["score"] and t not in r["teachers"]]
        mean_with = float(np.mean(with_t)) if with_t else math.nan
        mean_without = float(np.mean(without)) if without else math.nan
        out.append({"teacher": t, "with": mean_with, "n_with": len(with_t), "without": mean_without,
                    "n_without": len(without), "difference": mean_with - mean_without})
    return out


def _fmt_interval(d: Mapping | None, digits: int) -> str:
    return "-" if d is None else f"{d['mean']:.{digits}f} [{d['lo']:.{digits}f}, {d['hi']:.{digits}f}]"


def _fmt_task(d: Mapping | None) -> str:
    if d is None:
        return "(not run)"
    if d.get("k") is not None:
        return f"{d['k']}/{d['n']} [{d['lo']:.0f}, {d['hi']:.0f}]"
    return _fmt_interval(d, 1)


def ablation_markdown(rows: Sequence[Mapping], meta: Mapping, effects: Sequence[Mapping]) -> str:
    teachers, tasks = meta["teachers"], meta["tasks"]
    head = (["student", "teachers"] + [f"held-out cos: {t}" for t in teachers]
            + [f"{t} ({meta['checkpoint']})" for t in tasks] + ["mean score [95% CI]"])
    lines = ["# Teacher-combination ablation", "",
             f"{meta['section']}; {meta['head']} head, {meta['checkpoint']} checkpoint. Held-out cosine: mean per-image "
             f"cosine between each student's translator output and the standardised teacher target on "
             f"{', '.join(map(str, meta['heldout_images']))} frames of tasks no student trained on, with a 95% "
             "percentile bootstrap over those images (`-`: the student was not trained on that teacher). Task "
             "scores: successes/episodes with Wilson's 95% interval (%). Mean score: " + meta["bootstrap"] + ".", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["student"], ", ".join(r["teachers"])]
        if r.get("status") == "not distilled yet":
            cells += ["(not distilled yet)"] * len(teachers)
        else:
            cells += [_fmt_interval(r["heldout_cos"].get(t), 3) for t in teachers]
        cells += [_fmt_task(r["tasks"].get(t)) for t in tasks]
        cells.append(_fmt_interval(r["score"], 1))
        lines.append("| " + " | ".join(cells) + " |")
    if meta.get("pending") or meta.get("unscored"):
        lines += ["", "**Incomplete**: " + "; ".join(
            part for part in (f"not distilled yet: {', '.join(meta['pending'])}" if meta.get("pending") else "",
                              f"distilled, no finished cell yet: {', '.join(meta['unscored'])}"
                              if meta.get("unscored") else "") if part)
                  + ". The per-teacher differences below use the scored combinations only."]
    lines += ["", "## Per teacher (descriptive)", "",
              "Mean score of the combinations that include the teacher minus of those that do not (each "
              "combination counted once; one student per combination, so these are not independent replicates and "
              "carry no interval).", "",
              "| teacher | with (combinations) | without (combinations) | difference |", "|---|---|---|---|"]

    def num(x: float, sign: str = "") -> str:
        return "-" if math.isnan(x) else f"{x:{sign}.1f}"

    for e in effects:
        lines.append(f"| {e['teacher']} | {num(e['with'])} ({e['n_with']}) | {num(e['without'])} ({e['n_without']}) | "
                     f"{num(e['difference'], '+')} |")
    if meta.get("deviations"):
        lines += ["", "Protocol deviations: " + "; ".join(meta["deviations"]) + "."]
    return "\n".join(lines) + "\n"


def ablation_csv(rows: Sequence[Mapping], meta: Mapping) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "teachers", "measure", "name", "mean", "lo", "hi", "n", "k"])
    for r in rows:
        for t, d in r["heldout_cos"].items():
            w.writerow([r["student"], "+".join(r["teachers"]), "heldout_cos", t, d["mean"], d["lo"], d["hi"], d["n"], ""])
        for t, d in r["tasks"].items():
            if d is not None:
                w.writerow([r["student"], "+".join(r["teachers"]), f"score_{meta['checkpoint']}", t, d["mean"], d["lo"],
                            d["hi"], d["n"], "" if d.get("k") is None else d["k"]])
        if r["score"] is not None:
            s = r["score"]
            w.writerow([r["student"], "+".join(r["teachers"]), f"score_{meta['checkpoint']}", "mean", s["mean"], s["lo"],
                        s["hi"], s["episodes"], ""])
    return buf.getvalue()


def cached_fit(combo: Combo, out_dir: Path, fit_fn: FitFn) -> dict:
    """The student's per-image held-out fit, computed once and kept in out_dir/heldout/<label>.json (recomputed
    when the student's weights changed)."""
    from theia_eval.encoders.weights import files_key

    key = files_key(Path(combo.run_dir) / "export")
    path = out_dir / "heldout" / f"{combo.label}.json"
    if path.is_file():
        kept = read_json(path, "kept held-out fit")
        if kept.get("weights_key") == key:
            return kept
    fit = {**fit_fn(combo.run_dir, combo.run_dir), "weights_key": key}
    atomic_write_json(path, fit)
    return fit


def ablation_report(sweep_dir: str | Path, out_dir: str | Path | None = None, store: str | Path | None = None,
                    head: str = "conv", checkpoint: str = "best", resampling: Resampling | None = None,
                    fit_fn: FitFn | None = None) -> dict[str, Path]:
    """ablation.md/.csv/.json for a sweep with students (its plan.json and store); returns the paths written."""
    from theia_eval.analysis.leaderboard import build_leaderboard
    from theia_eval.analysis.store import load_results

    sweep_dir = Path(sweep_dir)
    plan_path = sweep_dir / "plan.json"
    if not plan_path.is_file():
        raise InputError(f"{sweep_dir} has no plan.json; pass the out_dir of a `theia-eval sweep` run.")
    plan = read_json(plan_path, "the sweep plan (written by `theia-eval sweep`)")
    everyone = combos_from_plan(plan)
    pending = [c for c in everyone if not (Path(c.run_dir) / "export").is_dir()]  # listed, no numbers yet
    combos = [c for c in everyone if c not in pending]
    store = Path(store or plan.get("store") or sweep_dir / "results.sqlite")
    df = load_results(store)
    df = df[df["encoder"].isin([c.label for c in combos])]
    sections, _ = build_leaderboard(df, resampling=resampling, roots=[store.parent, sweep_dir])
    out = Path(out_dir or sweep_dir / "ablation")
    if fit_fn is None:
        from theia_eval.distill.heldout import heldout_fit

        def fit_fn(source: str, run_dir: str) -> dict:
            return heldout_fit(source, run_dir, per_image=True)
    fits = {c.label: cached_fit(c, out, fit_fn) for c in combos}
    plan_tasks = list(dict.fromkeys(str(c["task"]) for c in plan.get("train") or []
                                    if c.get("label") in {x.label for x in everyone}))
    rows, meta = ablation_rows(combos, sections, fits, head, checkpoint, resampling, pending, plan_tasks)
    effects = marginal_effects(rows, meta["teachers"])
    paths = {"md": out / "ablation.md", "csv": out / "ablation.csv", "json": out / "ablation.json"}
    atomic_write_text(paths["md"], ablation_markdown(rows, meta, effects))
    atomic_write_text(paths["csv"], ablation_csv(rows, meta))
    atomic_write_json(paths["json"], {"meta": meta, "rows": rows, "per_teacher": effects})
    return paths
