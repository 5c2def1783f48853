"""Leaderboards with uncertainty, from per-episode eval files: Wilson k/n per task, bootstrap suite intervals
(reproducible), paired comparisons with the top entry, the 'nothing distinguishable' sentence, the evaluation
seed note, moved or missing run directories, and per-episode scores (DMC)."""
import csv
import io
import re

import numpy as np
import pandas as pd
import pytest

from theia_eval.analysis.leaderboard import build_leaderboard
from theia_eval.analysis.store import ResultsStore
from theia_eval.analysis.uncertainty import wilson_percent
from theia_eval.cli import main

from analysis_helpers import episode_row, outcomes

TASKS = ("metaworld/a", "metaworld/b")


def store_of(tmp_path, rows) -> str:
    path = tmp_path / "results.sqlite"
    ResultsStore(path).append(rows)
    return str(path)


def ranked_rows(root) -> list[dict]:
    """strong (22/25, 21/25), close (21/25, 20/25: not distinguishable from strong), weak (5/25, 4/25)."""
    rows = []
    for enc, ks in (("strong", (22, 21)), ("close", (21, 20)), ("weak", (5, 4))):
        for task, k in zip(TASKS, ks):
            for ckpt, epoch in (("last", 10), ("best", 5)):
                got = k if ckpt == "last" else min(25, k + 1)
                rows.append(episode_row(root, enc, task, "conv", 100, ckpt, outcomes(got), epoch=epoch))
    return rows


def lb(tmp_path, results, *extra) -> str:
    out = tmp_path / "lb"
    assert main(["leaderboard", f"results={results}", f"out_dir={out}", *extra]) == 0
    return (out / "leaderboard.md").read_text()


def test_task_counts_have_wilson_intervals_and_entries_are_compared_with_the_top(tmp_path, capsys):
    md = lb(tmp_path, store_of(tmp_path, ranked_rows(tmp_path)))
    lo, hi = wilson_percent(22, 25)
    assert f"22/25 [{lo:.1f}, {hi:.1f}]" in md and "22/25 [70.0, 95.8]" in md  # scipy: 0.7004 .. 0.9583
    main_table = md.split("**Paired comparison")[0]
    strong = next(line for line in main_table.splitlines() if line.startswith("| strong"))
    close = next(line for line in main_table.splitlines() if line.startswith("| close"))
    weak = next(line for line in main_table.splitlines() if line.startswith("| weak"))
    assert re.search(r"\| 86\.0 \[\d+\.\d, \d+\.\d\] \|", strong)  # (22 + 21) / 50
    assert strong.endswith("| top | top |") and close.endswith("| ≈ top | ≈ top |")
    assert weak.endswith("| below top | below top |")
    # the paired difference: weak - strong = (5 - 22 + 4 - 21) / 50 = -68 points, on 50 paired episodes
    row = r"\| last \| weak \| conv \| strong \(conv\) \| -68\.0 \[-\d+\.\d, -\d+\.\d\] \| 50 \(2\) \| 0 / 34 \|"
    assert re.search(row, md)
    assert "Last checkpoint: top entry strong (conv). Told apart from it (95% paired interval excludes 0): weak " \
           "(conv). Cannot be told apart from it: close (conv)." in md
    assert "resampling tasks within each suite, then training seeds within each task, then evaluation episodes" in md
    assert "base_seed = 1000 (seeds 1000-1024)" in md and "eai-vc" in md and "training seed + i" in md
    table = list(csv.DictReader(io.StringIO((tmp_path / "lb" / "leaderboard.csv").read_text())))
    vs = {(r["encoder"], r["checkpoint"]): r for r in table if r["scope"] == "vs top"}
    assert vs[("weak", "last")]["distinguishable"] == "True" and vs[("close", "last")]["distinguishable"] == "False"
    assert float(vs[("weak", "last")]["diff"]) == pytest.approx(-68.0) and vs[("weak", "best")]["pairs"] == "50"
    task = next(r for r in table if r["scope"] == "task" and r["encoder"] == "strong" and r["checkpoint"] == "last"
                and r["name"] == "metaworld/a")
    assert (task["successes"], task["episodes"], task["ci_method"]) == ("22", "25", "wilson")
    for name in ("leaderboard.html", "report.html"):
        page = (tmp_path / "lb" / name).read_text()
        assert "Paired comparison with the top entry" in page and "≈ top" in page and "22/25 [70.0, 95.8]" in page


def test_outputs_are_reproducible_with_the_seed_and_follow_it(tmp_path, capsys):
    results = store_of(tmp_path, ranked_rows(tmp_path))
    def strip(text):
        return "\n".join(line for line in text.splitlines() if "generated" not in line)
    first = strip(lb(tmp_path, results))
    first_csv = (tmp_path / "lb" / "leaderboard.csv").read_text()
    assert strip(lb(tmp_path, results)) == first and (tmp_path / "lb" / "leaderboard.csv").read_text() == first_csv
    other = lb(tmp_path, results, "uncertainty.seed=1")
    assert strip(other) != first and "generator seed 1" in other
    fixed = lb(tmp_path, results, "uncertainty.resample=[seeds,episodes]")
    assert "tasks held fixed" in fixed


def test_when_nothing_is_distinguishable_the_report_says_so(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [episode_row(tmp_path, enc, task, "conv", 100, ckpt, outcomes(12, rng=rng))
            for enc in ("p", "q", "r") for task in TASKS for ckpt in ("last", "best")]
    md = lb(tmp_path, store_of(tmp_path, rows))
    sentence = ("Last checkpoint: no entry can be told apart from any other at this n. Every one of the 3 paired 95% "
                "intervals of the difference contains 0 (50 paired episodes per pair), so the order of the table is "
                "not evidence of a ranking.")
    assert sentence in md
    assert sentence in (tmp_path / "lb" / "report.html").read_text()
    assert "below top" not in md.split("**Paired comparison")[0]


def test_moved_run_directories_are_found_and_missing_ones_are_named(tmp_path, capsys, monkeypatch):
    import shutil

    from theia_eval.analysis.outputs import leaderboard_data

    (tmp_path / "sweep").mkdir()
    monkeypatch.chdir(tmp_path / "sweep")
    rows = ranked_rows("results/study")  # run_dir as the sweep stored it: relative to where it ran
    study = tmp_path / "committed" / "study"
    shutil.move(str(tmp_path / "sweep" / "results" / "study"), str(study))  # the study folder, moved elsewhere
    lost = study / "runs" / "weak" / "conv" / "metaworld_b" / "seed100" / "eval" / "epoch_005.json"
    lost.unlink()  # one evaluation lost its per-episode file
    ResultsStore(study / "results.sqlite").append(rows)
    monkeypatch.chdir(tmp_path)
    (sec,), _ = leaderboard_data(study / "results.sqlite")
    assert len(sec.episodes) == len(rows)  # found under the results file's folder; the lost one: from its count
    assert not sec.episodes[("weak", "conv", "best", "metaworld/b", 100)].paired
    assert sec.episodes[("weak", "conv", "last", "metaworld/b", 100)].paired
    assert len(sec.notes) == 1 and "weak conv metaworld/b seed 100 (best): no eval/epoch_005.json" in sec.notes[0]
    assert sec.vs_top[("weak", "conv", "best")].pairs == 25  # only metaworld/a pairs at the best checkpoint
    assert sec.vs_top[("weak", "conv", "last")].pairs == 50
    md = lb(tmp_path, study / "results.sqlite")
    assert "Per-episode outcomes missing for 1 evaluation(s)" in md and "6/25 [" in md  # its count still counts


def test_a_damaged_eval_file_is_named_and_its_count_used(tmp_path, monkeypatch):
    """An eval file cut short by a kill is not a traceback: the row falls back to its count, the note names it."""
    from theia_eval.analysis.outputs import leaderboard_data

    monkeypatch.chdir(tmp_path)
    rows = ranked_rows("results/study")
    cut = tmp_path / "results/study/runs/weak/conv/metaworld_b/seed100/eval/epoch_005.json"
    cut.write_text(cut.read_text()[:40])
    ResultsStore(tmp_path / "results/study/results.sqlite").append(rows)
    (sec,), _ = leaderboard_data(tmp_path / "results/study/results.sqlite")
    assert len(sec.episodes) == len(rows) and not sec.episodes[("weak", "conv", "best", "metaworld/b", 100)].paired
    assert len(sec.notes) == 1 and re.search(r"\(best\): eval file .*epoch_005.json is not valid JSON", sec.notes[0])


def test_per_episode_scores_get_bootstrap_intervals(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = []
    for enc, mean in (("good", 700.0), ("poor", 300.0)):
        returns = list(rng.normal(mean, 50.0, size=10).clip(0, 1000))
        for ckpt in ("last", "best"):
            rows.append(episode_row(tmp_path, enc, "dmc/walk", "conv", 100, ckpt, [False] * 10, returns=returns,
                                    score=float(np.mean(returns)) / 10, metric="normalized_score"))
    (sec,), _ = build_leaderboard(pd.DataFrame(rows))
    ts = sec.task_scores[("good", "conv", "last", "dmc/walk")]
    assert ts.k is None and ts.n == 10 and ts.lo < ts.mean < ts.hi
    assert ts.mean == pytest.approx(np.mean(rows[0]["score"]))
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\] \(n=10\)", ts.format())
    p = sec.vs_top[("poor", "conv", "last")]
    assert p.distinguishable and p.diff == pytest.approx(rows[2]["score"] - rows[0]["score"]) and p.pairs == 10
