"""Leaderboard statistics from the results store: per task, per suite, MuJoCo subset, spatial vs CLS.

Scores are 0-100 (success % or the suite's normalized score). For one encoder, head and checkpoint:
- task score: mean +- s.e. over seeds of that task (n = seeds);
- suite score: for each seed, the mean over the suite's tasks; then mean +- s.e. over seeds (n = seeds).
  With the same tasks in every seed this is the protocol's "mean over tasks and seeds";
- MuJoCo-subset score: for each seed, the mean of its suite scores over MUJOCO_SUITES (the suite families
  registered with mujoco_subset, envs/family.py); then mean +- s.e. over seeds. Only defined when every
  seed has all of them (else reported as missing);
- overall: the MuJoCo-subset score when defined. In a section where some entry has every suite of the subset,
  an entry lacking one has no overall score (labelled "lacks SUITE"; never a mean over what exists); in a
  section where none has, the overall is the same statistic over the suites present (labelled with them).
The s.e. is the sample standard deviation (ddof 1) over seeds / sqrt(n); it is undefined for n = 1.
Best-checkpoint scores (max over evaluations during training, the CortexBench number) are always shown
beside last-checkpoint scores. Rows of different protocols are never pooled: a section is one protocol
("cortexbench"), or one sweep's reduced protocol with its deviations written above it, or sweeps pooled on
purpose (`pools`, e.g. one study run as a sweep per suite family) with all their deviations.

Uncertainty (uncertainty.py), from the per-episode outcomes of every evaluation (episodes.py):
- per task: the success count k/n pooled over seeds with its Wilson 95 % interval (for a per-episode score
  such as DMC's: its mean with a bootstrap interval over seeds and episodes);
- per suite and overall: the mean over tasks (of the mean over seeds) with a bootstrap interval; it is the
  score shown and ranked on when every row of the entry has its episodes (else the mean +- s.e. above);
- per checkpoint, every entry against the top entry (the highest overall score) on the episodes both have
  (same task, training seed and evaluation seed): the mean paired difference with its bootstrap interval and
  an exact sign test; and every pair of entries, for the sentence that says what can be told apart.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from theia_eval.analysis.episodes import Episodes, load_episodes
from theia_eval.analysis.uncertainty import (Estimate, Paired, Resampling, estimate, pair_runs, paired,
                                             wilson_percent)
from theia_eval.envs.family import mujoco_subset
from theia_eval.errors import InputError

MUJOCO_SUITES = mujoco_subset()  # the registered suite families marked mujoco_subset (metaworld, dmc, adroit)
CHECKPOINTS = ("last", "best")
KEY = ["encoder", "head", "checkpoint"]
SPATIAL = "tokens"
Entry = tuple[str, str]  # (encoder, head)


@dataclass(frozen=True)
class Stat:
    """mean +- s.e. over n seeds."""

    mean: float
    sem: float
    n: int

    def format(self, digits: int = 1) -> str:
        if math.isnan(self.mean):
            return "-"
        sem = "" if math.isnan(self.sem) else f" ± {self.sem:.{digits}f}"
        return f"{self.mean:.{digits}f}{sem} (n={self.n})"


def stat(values) -> Stat:
    """Mean, standard error (ddof 1; nan for one value) and count of the finite values."""
    xs = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if xs.size == 0:
        return Stat(math.nan, math.nan, 0)
    sem = float(xs.std(ddof=1) / math.sqrt(xs.size)) if xs.size > 1 else math.nan
    return Stat(float(xs.mean()), sem, int(xs.size))


def dedupe(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the newest row per (protocol, sweep, encoder, task, head, seed, checkpoint); return the count dropped.

    The store never holds a cell twice; this guards against one grid point evaluated under two configs of
    the same sweep (e.g. after editing it), which would otherwise count twice.
    """
    cols = ["protocol", "sweep", "encoder", "task", "head", "seed", "checkpoint"]
    ordered = df.sort_values("recorded_at")
    kept = ordered.drop_duplicates(cols, keep="last")
    return kept.sort_index(), len(df) - len(kept)


def check_pools(pools: Mapping[str, Sequence[str]] | None, sweeps: Iterable[str]) -> dict[str, str]:
    """sweep -> pool name, from {pool name: [sweep, ...]} (each sweep in at most one pool, every sweep present)."""
    owner: dict[str, str] = {}
    present = set(sweeps)
    for name, members in (pools or {}).items():
        members = [str(m) for m in members]
        if len(members) < 2:
            raise InputError(f"pool '{name}' must name at least two sweeps to pool, got {members}.")
        for m in members:
            if m in owner:
                raise InputError(f"sweep '{m}' is in two pools ('{owner[m]}' and '{name}'); a sweep's rows go to one "
                                 "section.")
            if m not in present:
                raise InputError(f"pool '{name}' names sweep '{m}', which has no rows in these results (sweeps: "
                                 f"{', '.join(sorted(present)) or 'none'}).")
            owner[m] = str(name)
    return owner


def sections(df: pd.DataFrame, pools: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per protocol: all CortexBench rows together, each sweep's reduced rows apart, except sweeps
    pooled on purpose (`pools`: {name: [sweep, ...]}, e.g. a study run as one sweep per suite family, so that the
    MuJoCo-subset score can span them); a pooled section lists every member's deviations."""
    out = []
    proto = df[df["protocol"] == "cortexbench"]
    if len(proto):
        out.append(("CortexBench protocol", proto))
    reduced = df[df["protocol"] != "cortexbench"]
    sweep = reduced["sweep"].fillna("(no sweep)")
    owner = check_pools(pools, set(sweep))
    group = sweep.map(lambda s: owner.get(s, s))
    for name, rows in reduced.groupby(group, sort=True):
        members = sorted(set(sweep[rows.index]))
        if name in (pools or {}):
            title = f"Reduced protocol: sweeps {' + '.join(members)} pooled as {name} (NOT CortexBench numbers)"
        else:
            title = f"Reduced protocol: sweep {name} (NOT CortexBench numbers)"
        out.append((title, rows))
    return out


def seed_suite_means(df: pd.DataFrame) -> pd.DataFrame:
    """Per encoder/head/checkpoint/suite/seed: the mean score over that seed's tasks and the task count."""
    g = df.groupby(KEY + ["suite", "seed"], sort=True)["score"]
    return g.agg(score="mean", n_tasks="count").reset_index()


def task_table(df: pd.DataFrame) -> dict[tuple, Stat]:
    """(encoder, head, checkpoint, task) -> Stat over seeds."""
    return {k: stat(g["score"]) for k, g in df.groupby(KEY + ["task"], sort=True)}


def suite_table(seed_means: pd.DataFrame) -> dict[tuple, Stat]:
    """(encoder, head, checkpoint, suite) -> Stat over seeds of the per-seed suite means."""
    return {k: stat(g["score"]) for k, g in seed_means.groupby(KEY + ["suite"], sort=True)}


def spans_subset(seed_means: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES) -> bool:
    """Whether some entry of these rows has every suite of the MuJoCo subset (then the overall score is the subset
    score, and entries lacking a suite get none instead of a mean over the suites they have)."""
    return any(set(mujoco) <= set(g["suite"]) for _, g in seed_means.groupby(KEY, sort=True))


def missing_suites(suites: Iterable[str], mujoco: tuple[str, ...] = MUJOCO_SUITES) -> list[str]:
    return [m for m in mujoco if m not in set(suites)]


def overall_table(seed_means: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES) -> dict[tuple, tuple[Stat, str]]:
    """(encoder, head, checkpoint) -> (Stat over seeds of the per-seed mean over suites, scope label).

    Where some entry has the whole MuJoCo subset, an entry lacking a suite gets no overall score (nan) and the
    label "lacks SUITE, ..." (averaging over the suites it has would rank it on different tasks); where none has,
    every entry's overall is the mean over its suites, labelled with them."""
    out = {}
    spanned = spans_subset(seed_means, mujoco)
    for k, g in seed_means.groupby(KEY, sort=True):
        suites = sorted(set(g["suite"]))
        per_seed = g.groupby("seed")
        complete = set(mujoco) <= set(suites)
        if spanned and not complete:
            out[k] = (Stat(math.nan, math.nan, 0), "lacks " + ", ".join(missing_suites(suites, mujoco)))
            continue
        wanted = list(mujoco) if complete else suites
        values = [s["score"][s["suite"].isin(wanted)].mean() for _, s in per_seed
                  if set(wanted) <= set(s["suite"])]
        out[k] = (stat(values), "MuJoCo subset" if complete else "mean of " + ", ".join(suites))
    return out


def compute_columns(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per encoder: params (M), GFLOPs per image and the median encode ms per image during evaluation."""
    out = {}
    for enc, g in df.groupby("encoder", sort=True):
        ms = g["ms_per_img"].dropna()
        out[enc] = {"params_m": float(g["params_m"].iloc[0]), "gflops": float(g["gflops"].iloc[0]),
                    "ms_per_img": float(ms.median()) if len(ms) else math.nan}
    return out


@dataclass(frozen=True)
class TaskScore:
    """One task's score pooled over seeds: k/n successes with Wilson's interval, or a bootstrap interval."""

    mean: float
    lo: float
    hi: float
    n: int  # episodes, all seeds together
    k: int | None  # successes (None: a per-episode score such as DMC's normalized return)
    seeds: int

    def format(self, digits: int = 1) -> str:
        ci = f"[{self.lo:.{digits}f}, {self.hi:.{digits}f}]"
        if self.k is not None:
            return f"{self.k}/{self.n} {ci}"
        return f"{self.mean:.{digits}f} {ci} (n={self.n})"


@dataclass
class Section:
    """The statistics of one protocol section."""

    title: str
    rows: pd.DataFrame
    deviations: list[str]
    suites: list[str]
    tasks: list[str]
    heads: list[str]
    encoders: list[str]
    task_stats: dict
    suite_stats: dict
    overall: dict
    compute: dict
    head_input: dict[str, str] = field(default_factory=dict)
    resampling: Resampling = field(default_factory=Resampling)
    grid: dict = field(default_factory=dict)  # (enc, head, ckpt) -> [(suite, task, seed)] of its rows
    episodes: dict = field(default_factory=dict)  # (enc, head, ckpt, task, seed) -> Episodes
    task_scores: dict = field(default_factory=dict)  # (enc, head, ckpt, task) -> TaskScore
    suite_ci: dict = field(default_factory=dict)  # (enc, head, ckpt, suite) -> Estimate
    overall_ci: dict = field(default_factory=dict)  # (enc, head, ckpt) -> Estimate
    top: dict = field(default_factory=dict)  # ckpt -> the entry with the highest overall score
    vs_top: dict = field(default_factory=dict)  # (enc, head, ckpt) -> Paired (entry - top)
    pairwise: dict = field(default_factory=dict)  # ckpt -> {(entry, entry): Paired}
    notes: list[str] = field(default_factory=list)  # rows whose per-episode outcomes could not be read
    spans_subset: bool = False  # some entry has every suite of the MuJoCo subset

    def lacking(self) -> dict[Entry, list[str]]:
        """(encoder, head) -> the MuJoCo-subset suites it lacks, for a section that spans the subset."""
        if not self.spans_subset:
            return {}
        return {(e, h): label.removeprefix("lacks ").split(", ") for (e, h, c), (_, label) in self.overall.items()
                if c == "last" and label.startswith("lacks ")}

    def score(self, entry: Entry, ckpt: str) -> float:
        """The overall score shown: the bootstrap estimate's mean when defined, else the mean over seeds."""
        ci = self.overall_ci.get((*entry, ckpt))
        if ci is not None:
            return ci.mean
        stat_ = self.overall.get((*entry, ckpt))
        return stat_[0].mean if stat_ else math.nan

    def ranked(self) -> list[Entry]:
        """(encoder, head) pairs by overall last-checkpoint score, best first (no score: last)."""
        def key(pair: Entry) -> tuple[float, str, str]:
            mean = self.score(pair, "last")
            return (-mean if not math.isnan(mean) else math.inf, *pair)

        return sorted({(e, h) for e, h, _ in self.overall}, key=key)

    def entries(self) -> list[Entry]:
        return sorted({(e, h) for e, h, _ in self.grid})

    def forest(self, entry: Entry, ckpt: str, suites: Iterable[str] | None = None,
               tasks: Iterable[str] | None = None) -> tuple[dict, bool]:
        """{suite: [task runs]} of an entry's per-episode scores, and whether every row had its episodes."""
        wanted = None if suites is None else set(suites)
        wanted_tasks = None if tasks is None else set(tasks)
        out: dict[str, dict[str, list]] = {}
        complete = True
        for suite, task, seed in self.grid.get((*entry, ckpt), []):
            if (wanted is not None and suite not in wanted) or (wanted_tasks is not None and task not in wanted_tasks):
                continue
            ep = self.episodes.get((*entry, ckpt, task, seed))
            if ep is None:
                complete = False
                continue
            out.setdefault(suite, {}).setdefault(task, []).append(ep.scores)
        return {s: [runs for _, runs in sorted(ts.items())] for s, ts in out.items()}, complete

    def diff_forest(self, a: Entry, b: Entry, ckpt: str, tasks: Iterable[str] | None = None) -> dict:
        """{suite: [task runs]} of per-episode differences a - b, over the (task, seed, episode seed) both have."""
        wanted = None if tasks is None else set(tasks)
        out: dict[str, dict[str, list]] = {}
        for suite, task, seed in self.grid.get((*a, ckpt), []):
            if wanted is not None and task not in wanted:
                continue
            ea, eb = self.episodes.get((*a, ckpt, task, seed)), self.episodes.get((*b, ckpt, task, seed))
            if ea is None or eb is None or not (ea.paired and eb.paired):
                continue
            d = pair_runs(ea.seeds, ea.scores, eb.seeds, eb.scores)
            if len(d):
                out.setdefault(suite, {}).setdefault(task, []).append(d)
        return {s: [runs for _, runs in sorted(ts.items())] for s, ts in out.items()}

    def compare(self, a: Entry, b: Entry, ckpt: str, tasks: Iterable[str] | None = None) -> Paired:
        return paired(self.diff_forest(a, b, ckpt, tasks), self.resampling)


def task_score(runs: list[Episodes], r: Resampling) -> TaskScore:
    """k/n with Wilson's interval for success runs; else the mean with a bootstrap over seeds and episodes."""
    n = sum(e.n for e in runs)
    if all(e.binary for e in runs):
        k = sum(e.successes for e in runs)
        lo, hi = wilson_percent(k, n)
        return TaskScore(100.0 * k / n, lo, hi, n, k, len(runs))
    est = estimate({"_": [[e.scores for e in runs]]}, Resampling(r.resamples, r.seed,
                                                                tuple(lv for lv in r.levels if lv != "tasks")))
    return TaskScore(est.mean, est.lo, est.hi, n, None, len(runs))


def fill_uncertainty(sec: Section, mujoco: tuple[str, ...]) -> None:
    """Task scores, suite and overall intervals, the top entry and the paired comparisons of a section."""
    by_task: dict[tuple, list[Episodes]] = {}
    for (enc, head, ckpt, task, _seed), ep in sorted(sec.episodes.items()):
        by_task.setdefault((enc, head, ckpt, task), []).append(ep)
    missing = {(e, h, c, t) for (e, h, c), cells in sec.grid.items() for _, t, s in cells
               if (e, h, c, t, s) not in sec.episodes}
    sec.task_scores = {k: task_score(v, sec.resampling) for k, v in by_task.items() if k not in missing}
    for (enc, head, ckpt), cells in sec.grid.items():
        suites = sorted({s for s, _, _ in cells})
        for suite in suites:
            forest, complete = sec.forest((enc, head), ckpt, [suite])
            if complete:
                sec.suite_ci[(enc, head, ckpt, suite)] = estimate(forest, sec.resampling)
        if sec.spans_subset and not set(mujoco) <= set(suites):
            continue  # no overall score: the entry lacks a suite of the subset (overall_table's label says which)
        wanted = list(mujoco) if set(mujoco) <= set(suites) else suites
        forest, complete = sec.forest((enc, head), ckpt, wanted)
        if complete:
            sec.overall_ci[(enc, head, ckpt)] = estimate(forest, sec.resampling)
    entries = sec.ranked()
    for ckpt in CHECKPOINTS:
        scored = [e for e in entries if not math.isnan(sec.score(e, ckpt))]
        if not scored:
            continue
        top = min(scored, key=lambda e: (-sec.score(e, ckpt), *e))
        sec.top[ckpt] = top
        sec.vs_top.update({(*e, ckpt): sec.compare(e, top, ckpt) for e in entries if e != top})
        sec.pairwise[ckpt] = {(a, b): sec.compare(a, b, ckpt) for i, a in enumerate(entries) for b in entries[i + 1:]}


def section_deviations(rows: pd.DataFrame) -> list[str]:
    """The protocol deviations of a section's rows; in a pooled section, one not shared by every member sweep
    names the sweeps it applies to."""
    sweeps = rows["sweep"].fillna("(no sweep)")
    where: dict[str, set[str]] = {}
    for sweep, text in zip(sweeps, rows["deviations"].fillna("")):
        for d in (d for d in text.split("; ") if d):
            where.setdefault(d, set()).add(sweep)
    members = set(sweeps)
    return sorted(d if where[d] == members else f"{d} (sweep {', '.join(sorted(where[d]))} only)" for d in where)


def build_section(title: str, rows: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES,
                  episodes: Mapping[tuple[str, str], Episodes] | None = None, resampling: Resampling | None = None,
                  notes: Mapping[tuple[str, str], str] | None = None) -> Section:
    seed_means = seed_suite_means(rows)
    devs = section_deviations(rows)
    sec = Section(title, rows, devs, sorted(set(rows["suite"])), sorted(set(rows["task"])),
                  sorted(set(rows["head"])), sorted(set(rows["encoder"])), task_table(rows),
                  suite_table(seed_means), overall_table(seed_means, mujoco), compute_columns(rows),
                  {h: g["head_input"].iloc[0] for h, g in rows.groupby("head")}, resampling or Resampling(),
                  spans_subset=spans_subset(seed_means, mujoco))
    episodes, notes = episodes or {}, notes or {}
    for r in rows.sort_values(["suite", "task", "seed"]).itertuples(index=False):
        sec.grid.setdefault((r.encoder, r.head, r.checkpoint), []).append((r.suite, r.task, int(r.seed)))
        ep = episodes.get((r.config_hash, r.checkpoint))
        if ep is not None:
            sec.episodes[(r.encoder, r.head, r.checkpoint, r.task, int(r.seed))] = ep
        if (r.config_hash, r.checkpoint) in notes:
            sec.notes.append(notes[(r.config_hash, r.checkpoint)])
    fill_uncertainty(sec, mujoco)
    return sec


def build_leaderboard(df: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES,
                      episodes: Mapping[tuple[str, str], Episodes] | None = None,
                      resampling: Resampling | None = None, roots: Iterable[str] = (),
                      pools: Mapping[str, Sequence[str]] | None = None) -> tuple[list[Section], int]:
    """All sections of a results table, and how many superseded rows were dropped.

    episodes: {(config_hash, checkpoint): Episodes}; None reads them from the rows' run directories
    (looked for under `roots` too, see episodes.find_eval_file).
    """
    if df.empty:
        return [], 0
    df, dropped = dedupe(df)
    notes: dict = {}
    if episodes is None:
        episodes, notes = load_episodes(df, roots)
    return [build_section(t, r, mujoco, episodes, resampling, notes) for t, r in sections(df, pools)], dropped


def long_rows(sec: Section) -> list[dict]:
    """The section's statistics as tidy rows (the CSV)."""
    out = []
    base = {"section": sec.title, "deviations": "; ".join(sec.deviations)}

    def entry(enc: str, head: str, ckpt: str) -> dict:
        return {**base, "encoder": enc, "head": head, "head_input": sec.head_input.get(head), "checkpoint": ckpt}

    for (enc, head, ckpt, name), s in sec.task_stats.items():
        ts = sec.task_scores.get((enc, head, ckpt, name))
        extra = {} if ts is None else {"ci_mean": ts.mean, "ci_lo": ts.lo, "ci_hi": ts.hi, "episodes": ts.n,
                                       "successes": ts.k, "ci_method": "wilson" if ts.k is not None else "bootstrap"}
        out.append({**entry(enc, head, ckpt), "scope": "task", "name": name, "mean": s.mean, "sem": s.sem, "n": s.n,
                    **extra, **sec.compute[enc]})
    for (enc, head, ckpt, name), s in sec.suite_stats.items():
        out.append({**entry(enc, head, ckpt), "scope": "suite", "name": name, "mean": s.mean, "sem": s.sem,
                    "n": s.n, **ci_columns(sec.suite_ci.get((enc, head, ckpt, name))), **sec.compute[enc]})
    for (enc, head, ckpt), (s, label) in sec.overall.items():
        out.append({**entry(enc, head, ckpt), "scope": "overall", "name": label, "mean": s.mean, "sem": s.sem,
                    "n": s.n, **ci_columns(sec.overall_ci.get((enc, head, ckpt))), **sec.compute[enc]})
    for (enc, head, ckpt), p in sec.vs_top.items():
        top = sec.top[ckpt]
        out.append({**entry(enc, head, ckpt), "scope": "vs top", "name": f"{top[0]} {top[1]}", "diff": p.diff,
                    "diff_lo": p.lo, "diff_hi": p.hi, "sign_test_p": p.p, "pairs": p.pairs,
                    "distinguishable": p.distinguishable})
    return out


def ci_columns(est: Estimate | None) -> dict:
    if est is None:
        return {}
    return {"ci_mean": est.mean, "ci_lo": est.lo, "ci_hi": est.hi, "ci_method": "bootstrap", "ci_tasks": est.tasks,
            "ci_runs": est.runs, "episodes": est.episodes}
