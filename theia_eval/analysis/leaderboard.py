"""Leaderboard statistics from the results store: per task, per suite, MuJoCo subset, spatial vs CLS.

Scores are 0-100 (success % or the suite's normalized score). For one encoder, head and checkpoint:
- task score: mean +- s.e. over seeds of that task (n = seeds);
- suite score: for each seed, the mean over the suite's tasks; then mean +- s.e. over seeds (n = seeds).
  With the same tasks in every seed this is the protocol's "mean over tasks and seeds";
- MuJoCo-subset score: for each seed, the mean of its suite scores over MUJOCO_SUITES; then mean +- s.e.
  over seeds. Only defined when every seed has all three suites (else reported as missing);
- overall: the MuJoCo-subset score when defined, else the same statistic over the suites present
  (labelled with the suites it covers).
The s.e. is the sample standard deviation (ddof 1) over seeds / sqrt(n); it is undefined for n = 1.
Best-checkpoint scores (max over evaluations during training, the CortexBench number) are always shown
beside last-checkpoint scores. Rows of different protocols are never pooled: a section is one protocol
("cortexbench"), or one sweep's reduced protocol with its deviations written above it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MUJOCO_SUITES = ("metaworld", "dmc", "adroit")
CHECKPOINTS = ("last", "best")
KEY = ["encoder", "head", "checkpoint"]
SPATIAL = "tokens"


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


def sections(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per protocol: all CortexBench rows together, each sweep's reduced rows apart."""
    out = []
    proto = df[df["protocol"] == "cortexbench"]
    if len(proto):
        out.append(("CortexBench protocol", proto))
    reduced = df[df["protocol"] != "cortexbench"]
    for sweep, rows in reduced.groupby(reduced["sweep"].fillna("(no sweep)"), sort=True):
        out.append((f"Reduced protocol: sweep {sweep} (NOT CortexBench numbers)", rows))
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


def overall_table(seed_means: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES) -> dict[tuple, tuple[Stat, str]]:
    """(encoder, head, checkpoint) -> (Stat over seeds of the per-seed mean over suites, scope label)."""
    out = {}
    for k, g in seed_means.groupby(KEY, sort=True):
        suites = sorted(set(g["suite"]))
        per_seed = g.groupby("seed")
        complete = set(mujoco) <= set(suites)
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

    def ranked(self) -> list[tuple[str, str]]:
        """(encoder, head) pairs by overall last-checkpoint score, best first (no score: last)."""
        def key(pair: tuple[str, str]) -> tuple[float, str, str]:
            entry = self.overall.get((*pair, "last"))
            mean = entry[0].mean if entry else math.nan
            return (-mean if not math.isnan(mean) else math.inf, *pair)

        return sorted({(e, h) for e, h, _ in self.overall}, key=key)


def build_section(title: str, rows: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES) -> Section:
    seed_means = seed_suite_means(rows)
    devs = sorted({d for text in rows["deviations"].fillna("") for d in text.split("; ") if d})
    return Section(title, rows, devs, sorted(set(rows["suite"])), sorted(set(rows["task"])),
                   sorted(set(rows["head"])), sorted(set(rows["encoder"])), task_table(rows),
                   suite_table(seed_means), overall_table(seed_means, mujoco), compute_columns(rows),
                   {h: g["head_input"].iloc[0] for h, g in rows.groupby("head")})


def build_leaderboard(df: pd.DataFrame, mujoco: tuple[str, ...] = MUJOCO_SUITES) -> tuple[list[Section], int]:
    """All sections of a results table, and how many superseded rows were dropped."""
    if df.empty:
        return [], 0
    df, dropped = dedupe(df)
    return [build_section(t, r, mujoco) for t, r in sections(df)], dropped


def long_rows(sec: Section) -> list[dict]:
    """The section's statistics as tidy rows (the CSV)."""
    out = []
    base = {"section": sec.title, "deviations": "; ".join(sec.deviations)}
    for scope, table in (("task", sec.task_stats), ("suite", sec.suite_stats)):
        for (enc, head, ckpt, name), s in table.items():
            out.append({**base, "encoder": enc, "head": head, "head_input": sec.head_input.get(head),
                        "checkpoint": ckpt, "scope": scope, "name": name, "mean": s.mean, "sem": s.sem, "n": s.n,
                        **sec.compute[enc]})
    for (enc, head, ckpt), (s, label) in sec.overall.items():
        out.append({**base, "encoder": enc, "head": head, "head_input": sec.head_input.get(head), "checkpoint": ckpt,
                    "scope": "overall", "name": label, "mean": s.mean, "sem": s.sem, "n": s.n, **sec.compute[enc]})
    return out
