"""Per-episode outcomes behind the store's rows, read from each run's eval/epoch_NNN.json.

A store row is one evaluation of a cell (its best or last checkpoint) and records `run_dir` and `epoch`;
the run directory holds eval/epoch_NNN.json with one record per episode {seed, success, return, ...}.
Run directories are found where the row says, else under the given roots (the folder of the results file,
`runs_root`): the longest tail of the stored path that exists there wins, so a study directory that was
moved or committed elsewhere is still read. A file is used only when its task, episode count and mean
score match the row. When no file matches, success rows fall back to k = success_rate x episodes
(enough for a Wilson interval and an unpaired bootstrap, not for pairing: the episode seeds are unknown).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theia_eval.errors import InputError
from theia_eval.io import read_json

SUCCESS = "success"


@dataclass(frozen=True)
class Episodes:
    """Scores 0-100 of one evaluation's episodes, with their evaluation seeds when known."""

    scores: np.ndarray
    seeds: tuple[int, ...] | None  # None: rebuilt from the success count (order and seeds unknown)
    binary: bool  # success outcomes (0 / 100); else a per-episode score in [0, 100]
    source: str  # the eval file, or "success count"

    @property
    def n(self) -> int:
        return int(len(self.scores))

    @property
    def successes(self) -> int:
        return int((self.scores > 0).sum())

    @property
    def paired(self) -> bool:
        return self.seeds is not None


def eval_file(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / "eval" / f"epoch_{int(epoch):03d}.json"


def find_eval_file(run_dir: str, epoch: int, roots: Sequence[Path]) -> Path | None:
    """The eval JSON of a row: at run_dir itself, else at the longest tail of run_dir found under a root."""
    direct = eval_file(run_dir, epoch)
    if direct.is_file():
        return direct
    parts = Path(run_dir).parts
    for root in roots:
        for k in range(len(parts)):
            tail = Path(*parts[k:])
            if tail.is_absolute():
                continue
            candidate = eval_file(Path(root) / tail, epoch)
            if candidate.is_file():
                return candidate
    return None


def episode_scores(info: dict, metric: str) -> np.ndarray:
    """Per-episode scores 0-100 of an eval_info: success x 100, or the suite's normalized score."""
    if metric == SUCCESS:
        return np.asarray([100.0 * bool(e["success"]) for e in info["per_episode"]], np.float64)
    from theia_eval.envs.family import episode_scores as scores_of

    return np.asarray(scores_of(info)[1], np.float64)


def from_file(path: Path, row) -> tuple[Episodes | None, str]:
    """The episodes of a row's eval file, or None and why the file does not belong to the row."""
    try:
        info = read_json(path, "eval file")
    except InputError as exc:  # reported in the section's notes; the row falls back to its success count
        return None, str(exc)
    if info.get("task") != row.task:
        return None, f"{path} is an evaluation of {info.get('task')}, not {row.task}"
    scores = episode_scores(info, row.metric)
    if row.episodes is not None and not (isinstance(row.episodes, float) and math.isnan(row.episodes)) \
            and len(scores) != int(row.episodes):
        return None, f"{path} has {len(scores)} episodes, the store row {int(row.episodes)}"
    if row.score is not None and abs(float(scores.mean()) - float(row.score)) > 1e-6:
        return None, f"{path} scores {scores.mean():.3f}, the store row {float(row.score):.3f}"
    seeds = tuple(int(e["seed"]) for e in info["per_episode"])
    return Episodes(scores, seeds, row.metric == SUCCESS, str(path)), ""


def from_counts(row) -> Episodes | None:
    """Success outcomes rebuilt from success_rate x episodes (no seeds), when that count is a whole number."""
    if row.metric != SUCCESS or row.episodes is None or row.success_rate is None:
        return None
    try:
        n, rate = int(row.episodes), float(row.success_rate)
    except (TypeError, ValueError):
        return None
    k = rate * n
    if n <= 0 or math.isnan(k) or abs(k - round(k)) > 1e-6:
        return None
    k = int(round(k))
    return Episodes(np.asarray([100.0] * k + [0.0] * (n - k)), None, True, "success count")


Key = tuple[str, str]  # (config_hash, checkpoint): a store row


def load_episodes(df, roots: Iterable[str | Path] = ()) -> tuple[dict[Key, Episodes], dict[Key, str]]:
    """{row: Episodes} for the rows of a results table, and {row: why} for rows without a matching eval file."""
    roots = [Path(r) for r in roots]
    out: dict[Key, Episodes] = {}
    notes: dict[Key, str] = {}
    for row in df.itertuples(index=False):
        key = (row.config_hash, row.checkpoint)
        found = None
        if isinstance(row.run_dir, str) and row.epoch is not None and not _isnan(row.epoch):
            path = find_eval_file(row.run_dir, int(row.epoch), roots)
            if path is None:
                notes[key] = f"{_label(row)}: no eval/epoch_{int(row.epoch):03d}.json under {row.run_dir}"
            else:
                found, why = from_file(path, row)
                if found is None:
                    notes[key] = f"{_label(row)}: {why}"
        if found is None:
            found = from_counts(row)
        if found is not None:
            out[key] = found
    return out, notes


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _label(row) -> str:
    return f"{row.encoder} {row.head} {row.task} seed {row.seed} ({row.checkpoint})"
