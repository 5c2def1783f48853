"""Real (tiny) sweeps: a 2x2 grid fills the store; SIGKILL + resume gives the same rows, none twice;
a failing job blocks only what needs it. Cells: pixels/blind, one Meta-World task, 2 demos at 64 px,
1 epoch, 1 evaluation episode of 10 steps."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from theia_eval.analysis.store import ResultsStore
from theia_eval.cli import main

GRID = ["sweep=smoke", "sweep.seeds=[1,2]", "sweep.train.bc.epochs=1", "sweep.train.bc.eval_every=1",
        "sweep.train.eval.episodes=1", "sweep.train.eval.horizon=10", "+sweep.train.bc.head_config.channels=16",
        "sweep.train.bc.batch_size=64", "threads=1"]
KEY_COLS = ["config_hash", "checkpoint", "encoder", "task", "head", "seed", "epoch", "success_rate", "mean_return",
            "score", "protocol"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Demo and embedding-cache folders shared by every sweep of this module (built once)."""
    root = tmp_path_factory.mktemp("shared")
    return [f"demos_dir={root / 'demos'}", f"cache_dir={root / 'cache'}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared):
    """An uninterrupted 2 encoders x 2 seeds sweep (sequential launcher)."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["sweep", *GRID, f"out_dir={out}", *shared]) == 0
    return out


def rows(out: Path):
    df = ResultsStore(out / "results.sqlite").frame()
    return df[KEY_COLS].sort_values(["config_hash", "checkpoint"]).reset_index(drop=True)


def test_two_by_two_sweep_fills_the_store(reference, shared, capsys):
    df = rows(reference)
    assert len(df) == 8 and not df.duplicated(["config_hash", "checkpoint"]).any()
    assert sorted(set(zip(df.encoder, df.seed))) == [("blind", 1), ("blind", 2), ("pixels", 1), ("pixels", 2)]
    assert set(df.protocol) == {"reduced"} and set(df.epoch) == {1}
    full = ResultsStore(reference / "results.sqlite").frame()
    for r in full.itertuples():  # every row is what its run directory says
        metrics = json.loads((Path(r.run_dir) / "metrics.json").read_text())
        assert metrics["last_checkpoint"]["success"] == r.success_rate and metrics["seed"] == r.seed
        ev = json.loads((Path(r.run_dir) / "eval" / f"epoch_{r.epoch:03d}.json").read_text())
        assert ev["aggregate"]["mean_return"] == pytest.approx(r.mean_return)
        assert r.score == 100.0 * r.success_rate and r.score_lo <= r.score <= r.score_hi
    assert "bc.epochs=1 (CortexBench: 100)" in full.deviations.iloc[0]
    assert (reference / "leaderboard" / "leaderboard.md").is_file()
    assert (reference / "leaderboard" / "report.html").is_file()
    assert [p.parent.name for p in (reference / "plans").glob("*.json")] == ["plans"]  # the plan the jobs read
    assert {p.name.split("-")[0] for p in (reference / "hydra").iterdir()} >= {"demos", "embed", "train"}
    assert not (reference / "plans" / "hydra").exists()  # stage logs stay in <out_dir>/hydra
    capsys.readouterr()
    assert main(["sweep", *GRID, f"out_dir={reference}", *shared]) == 0  # everything done: nothing runs again
    out = capsys.readouterr().out
    assert "to run: demos 0/1, distill 0/0, embed 0/2, train 0/4" in out and "Launching" not in out
    assert len(ResultsStore(reference / "results.sqlite")) == 8


def count_rows(store: Path) -> int:
    try:
        con = sqlite3.connect(store, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_gives_the_same_rows_and_none_twice(reference, shared, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "theia_eval.cli", "sweep", *GRID, "launcher=joblib", "jobs=2", f"out_dir={out}",
           *shared]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while count_rows(out / "results.sqlite") < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no cell finished within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its joblib workers and their simulator workers
        proc.wait()
    done_at_kill = count_rows(out / "results.sqlite")
    assert 2 <= done_at_kill < 8, "kill the sweep while cells remain"
    assert main(["sweep", *GRID, f"out_dir={out}", *shared]) == 0  # resume (sequential launcher)
    resumed = rows(out)
    assert len(resumed) == 8 and not resumed.duplicated(["config_hash", "checkpoint"]).any()
    ref = rows(reference)
    assert resumed.drop(columns=["mean_return"]).equals(ref.drop(columns=["mean_return"]))
    assert resumed.mean_return.tolist() == pytest.approx(ref.mean_return.tolist(), rel=1e-6)


def test_a_failing_job_blocks_only_what_needs_it(shared, tmp_path, capsys):
    out = tmp_path / "failing"
    args = ["sweep", *GRID, "sweep.seeds=[1]", "sweep.encoders=[pixels,{name:random-vit-nano,weights:random:x}]",
            f"out_dir={out}", *shared, "leaderboard=false"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "FAILED embed random-vit-nano:tokens" in captured.out
    assert "not run: train" in captured.out and "fix them and re-run" in captured.err
    df = ResultsStore(out / "results.sqlite").frame()
    assert set(df.encoder) == {"pixels"} and len(df) == 2


def test_a_student_another_process_distills_is_left_to_it_with_its_cells(shared, tmp_path, capsys):
    """Two lanes over one grid of students: a student whose lock another process holds is not distilled again
    beside it ("busy"); its cells wait for a later run (listed, exit 0) and the other encoders' cells run."""
    from theia_eval.io import try_lock
    from theia_eval.sweeps.stages import distill_student
    from theia_eval.sweeps.run import prepare
    from theia_eval.config import compose

    out = tmp_path / "lanes"
    args = [*GRID, "sweep.seeds=[1]", "sweep.encoders=[pixels]", f"out_dir={out}", *shared,
            f"students_dir={tmp_path / 'students'}", "leaderboard=false",
            "sweep.students=[{label:busy-student,teachers:offline,student:nano,frames:{num_frames:8},"
            "overrides:{train:{steps:2}}}]"]
    plan, _, _ = prepare(compose("sweep", args))
    student = plan.distill[0]
    run = Path(student.run_dir)
    with try_lock(run.parent / f".{run.name}.lock") as held:
        assert held
        assert distill_student(student, plan) == {"status": "busy"}
        assert main(["sweep", *args]) == 0
    captured = capsys.readouterr()
    assert "left for later: embed busy-student:tokens (waits for distill busy-student, running in another " \
           "process)" in captured.out
    assert "left for later: train" in captured.out and "FAILED" not in captured.out
    assert "wait for work another process is doing" in captured.err
    assert not run.exists()  # nothing distilled beside the other process
    df = ResultsStore(out / "results.sqlite").frame()
    assert set(df.encoder) == {"pixels"} and len(df) == 2


def test_submitit_launcher_gives_the_rows_of_the_sequential_one(reference, shared, tmp_path):
    """submitit's local executor runs the same jobs as SLURM tasks would; cell identities match across launchers."""
    out = tmp_path / "submitit"
    assert main(["sweep", *GRID, "sweep.seeds=[1]", "launcher=submitit-local", f"out_dir={out}", *shared,
                 "leaderboard=false"]) == 0
    got = rows(out)
    ref = rows(reference)
    ref = ref[ref.seed == 1].reset_index(drop=True)
    assert len(got) == 4 and got.drop(columns=["mean_return"]).equals(ref.drop(columns=["mean_return"]))


def test_publish_copies_finished_cells_portably(reference, tmp_path_factory, monkeypatch, capsys):
    from theia_eval.analysis.store import load_results
    from theia_eval.provenance import absolute_paths

    base = reference.parent  # the tests' temporary root holds the sweep, its demos and caches: "the repository"
    monkeypatch.chdir(base)
    dest = base / "published"
    assert main(["publish", f"sweep_dir={reference.name}", f"dest={dest.name}", "claims=quickstart"]) == 0
    published = load_results(dest / "results.csv")
    original = ResultsStore(reference / "results.sqlite").frame()
    assert len(published) == len(original) == 8
    assert sorted(published.score) == sorted(original.score)
    for r in published.itertuples():  # run_dir relative to dest, and the cell's files are there (no checkpoints)
        assert r.run_dir.startswith("runs/")
        run = dest / r.run_dir
        assert (run / "metrics.json").is_file() and (run / "config.yaml").is_file()
        assert (run / "eval" / f"epoch_{r.epoch:03d}.json").is_file() and not list(run.rglob("*.pt"))
    for f in dest.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".yaml", ".md", ".csv", ".html"):
            assert not absolute_paths(f.read_text()), f
    cells = json.loads((dest / "cells.json").read_text())
    assert len(cells) == 4 and all(c["finished"] for c in cells)
    info = (dest / "run_info.md").read_text()
    assert "| train |" in info and "cores" in info  # stage wall times and the machine, from jobs.jsonl
    board = (dest / "leaderboard" / "leaderboard.md").read_text()
    assert "Paired comparison" in board or "paired" in board.lower()
    assert "Results: `../results.csv` (8 rows)" in board  # the published file, not the temporary build folder
    for f in (dest / "leaderboard").iterdir():
        if f.suffix in (".md", ".html", ".json"):
            assert ".tmp-" not in f.read_text(), f
    capsys.readouterr()
    assert main(["publish", f"sweep_dir={reference.name}", f"dest={reference.name}/inside"]) == 2
    assert "inside the sweep folder" in capsys.readouterr().err
    assert main(["publish", f"sweep_dir={dest.name}", "dest=elsewhere"]) == 2
    assert "not a sweep's out_dir" in capsys.readouterr().err and not (base / "elsewhere").exists()


def test_a_refused_publish_leaves_dest_as_it_was(reference, monkeypatch, capsys):
    """A job error quoting a file of the repository is made portable; a machine path that cannot be made
    portable refuses the publish, and dest keeps every byte it had (nothing half-written, no temp folder)."""
    base = reference.parent
    monkeypatch.chdir(base)
    dest = base / "published-twice"
    journal = reference / "jobs.jsonl"
    original = journal.read_text()
    line = {"status": "failed", "stage": "train", "id": "x", "error": f"ImportError: boom ({base}/pkg/errors.py)",
            "started_at": "2026-11-30T09:41:21+00:00", "finished_at": "2026-11-30T09:41:21+00:00"}
    try:
        journal.write_text(original + json.dumps(line) + "\n")
        assert main(["publish", f"sweep_dir={reference.name}", f"dest={dest.name}"]) == 0
        info = (dest / "run_info.json").read_text()
        assert "(pkg/errors.py)" in info and str(base) not in info
        before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
        line["error"] = "ImportError: boom (/opt/elsewhere/errors.py)"
        journal.write_text(original + json.dumps(line) + "\n")
        capsys.readouterr()
        assert main(["publish", f"sweep_dir={reference.name}", f"dest={dest.name}"]) == 2
        err = capsys.readouterr().err
        assert "published-twice/run_info" in err and "/opt/elsewhere/errors.py" in err
        assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
        assert not [p for p in base.iterdir() if p.name.startswith(f".{dest.name}.")]  # no temporary folder
    finally:
        journal.write_text(original)


def test_job_journal_cut_short_by_a_kill_is_read_and_a_damaged_one_named(tmp_path, caplog):
    """jobs.jsonl: the record a killed job was writing (no newline) is skipped with a warning; a bad line
    elsewhere is an InputError naming the file and line."""
    from theia_eval.errors import InputError
    from theia_eval.sweeps.publish import read_journal

    journal = tmp_path / "jobs.jsonl"
    journal.write_text('{"stage": "train", "seconds": 3}\n\n{"stage": "embed", "seconds": 1}\n{"stage": "tr')
    assert [j["stage"] for j in read_journal(journal)] == ["train", "embed"]
    assert "cut short" in caplog.text
    journal.write_text('{"stage": "train"}\n{"stage": "tr\n{"stage": "embed"}\n')
    with pytest.raises(InputError, match=r"jobs.jsonl line 2 is not valid JSON.*Delete that line"):
        read_journal(journal)
