"""The teacher-combination ablation table: held-out cosine intervals, scores with intervals, per-teacher effects."""
import json

import numpy as np
import pandas as pd
import pytest

from analysis_helpers import episode_row, outcomes
from theia_eval.analysis.ablation import (Combo, ablation_markdown, ablation_report, ablation_rows, combos_from_plan,
                                          marginal_effects, mean_interval)
from theia_eval.analysis.leaderboard import build_leaderboard
from theia_eval.analysis.store import ResultsStore
from theia_eval.analysis.uncertainty import Resampling
from theia_eval.errors import InputError

COMBOS = [Combo("abl-e", ("eff",), "runs/abl-e"), Combo("abl-d", ("depth",), "runs/abl-d"),
          Combo("abl-ed", ("eff", "depth"), "runs/abl-ed")]
SUCCESSES = {"abl-e": (10, 20), "abl-d": (2, 4), "abl-ed": (12, 22)}  # (task a, task b) out of 25
R = Resampling(500, 0)


def fit(label: str, teachers) -> dict:
    rng = np.random.default_rng(len(label))
    return {"source": label, "cos_per_image": {t: list(0.5 + 0.1 * rng.standard_normal(40)) for t in teachers}}


def rows_for(root) -> list[dict]:
    rows = []
    for label, ks in SUCCESSES.items():
        for task, k in zip(("metaworld/a", "metaworld/b"), ks):
            for ckpt in ("best", "last"):
                rows.append(episode_row(root, label, task, "conv", 100, ckpt, outcomes(k)))
    return rows


def test_rows_carry_intervals_and_the_effects_follow_the_scores(tmp_path):
    sections, _ = build_leaderboard(pd.DataFrame(rows_for(tmp_path)), resampling=R)
    fits = {c.label: fit(c.label, c.teachers) for c in COMBOS}
    rows, meta = ablation_rows(COMBOS, sections, fits, resampling=R)
    assert [r["student"] for r in rows] == ["abl-d", "abl-e", "abl-ed"]  # by teacher count, then teacher order
    assert meta["teachers"] == ["depth", "eff"] and meta["tasks"] == ["metaworld/a", "metaworld/b"]
    ed = rows[2]
    assert set(ed["heldout_cos"]) == {"eff", "depth"} and set(rows[0]["heldout_cos"]) == {"depth"}
    c = ed["heldout_cos"]["eff"]
    assert c["mean"] == pytest.approx(np.mean(fits["abl-ed"]["cos_per_image"]["eff"])) and c["lo"] < c["mean"] < c["hi"]
    assert ed["tasks"]["metaworld/a"]["k"] == 12 and ed["tasks"]["metaworld/b"]["n"] == 25
    assert ed["score"]["mean"] == pytest.approx(100 * (12 + 22) / 50)
    effects = {e["teacher"]: e for e in marginal_effects(rows, meta["teachers"])}
    # eff: with = mean(abl-e 60, abl-ed 68) = 64, without = abl-d 12
    assert effects["eff"]["with"] == pytest.approx(64.0) and effects["eff"]["without"] == pytest.approx(12.0)
    assert effects["eff"]["difference"] == pytest.approx(52.0) and effects["depth"]["n_with"] == 2
    md = ablation_markdown(rows, meta, list(effects.values()))
    assert "| abl-d | depth | " in md and "| 12/25 [" in md and "| eff | 64.0 (2) | 12.0 (1) | +52.0 |" in md


def test_bad_inputs_name_the_problem(tmp_path):
    sections, _ = build_leaderboard(pd.DataFrame(rows_for(tmp_path)), resampling=R)
    fits = {c.label: fit(c.label, c.teachers) for c in COMBOS}
    with pytest.raises(InputError, match="no held-out fit for student 'abl-ed'"):
        ablation_rows(COMBOS, sections, {k: v for k, v in fits.items() if k != "abl-ed"}, resampling=R)
    with pytest.raises(InputError, match="per-image cosines for \\['depth'\\]"):
        ablation_rows(COMBOS, sections, {**fits, "abl-ed": fit("abl-ed", ["eff"])}, resampling=R)
    unscored, meta = ablation_rows([Combo("other", ("eff",), "x")], sections, {"other": fit("other", ["eff"])},
                                   resampling=R, pending=[Combo("other2", ("d",), "y")], tasks=["metaworld/a"])
    assert meta["section"] == "no cell of these students has finished yet" and meta["unscored"] == ["other"]
    assert [(r["student"], r["status"], r["score"]) for r in unscored] == [("other2", "not distilled yet", None),
                                                                          ("other", "distilled", None)]
    with pytest.raises(InputError, match="checkpoint must be one of"):
        ablation_rows(COMBOS, sections, fits, checkpoint="final")
    with pytest.raises(InputError, match="finite"):
        mean_interval([0.5, float("nan")], R)
    with pytest.raises(InputError, match="has 1 student"):
        combos_from_plan({"distill": [{"label": "a", "run_dir": "r", "config": {"teachers": ["eff"]}}]})
    with pytest.raises(InputError, match="teacher set 'offline'"):
        combos_from_plan({"distill": [{"label": "a", "run_dir": "r", "config": {"teachers": "offline"}}] * 2})


def test_report_from_a_sweep_dir_computes_each_fit_once(tmp_path):
    sweep = tmp_path / "sweep"
    store = ResultsStore(sweep / "results.sqlite")
    store.append(rows_for(sweep))
    jobs = []
    for c in COMBOS:
        export = tmp_path / "students" / c.label / "export"
        export.mkdir(parents=True)
        (export / "model.safetensors").write_bytes(c.label.encode())  # hashed for the fit cache key only
        jobs.append({"label": c.label, "run_dir": str(export.parent), "config": {"teachers": list(c.teachers)}})
    (sweep / "plan.json").write_text(json.dumps({"distill": jobs, "store": str(sweep / "results.sqlite")}))
    calls = []

    def fake_fit(source, run_dir):
        label = run_dir.rsplit("/", 1)[-1]
        calls.append(label)
        return fit(label, next(c.teachers for c in COMBOS if c.label == label))

    paths = ablation_report(sweep, resampling=R, fit_fn=fake_fit)
    assert sorted(calls) == ["abl-d", "abl-e", "abl-ed"]
    data = json.loads(paths["json"].read_text())
    assert [r["student"] for r in data["rows"]] == ["abl-d", "abl-e", "abl-ed"]
    assert "heldout_cos,eff" in paths["csv"].read_text() and "# Teacher-combination ablation" in paths["md"].read_text()
    ablation_report(sweep, resampling=R, fit_fn=fake_fit)
    assert len(calls) == 3  # kept fits reused
    (tmp_path / "students" / "abl-e" / "export" / "model.safetensors").write_bytes(b"retrained")
    ablation_report(sweep, resampling=R, fit_fn=fake_fit)
    assert calls[-1] == "abl-e" and len(calls) == 4  # new weights: that student's fit is recomputed


def test_a_study_in_progress_lists_what_is_not_distilled_or_scored_yet(tmp_path):
    """Students still distilling are rows without numbers, the per-teacher differences use the scored rows only,
    and the page says what is incomplete (a long study publishes its table as students land)."""
    sweep = tmp_path / "sweep"
    store = ResultsStore(sweep / "results.sqlite")
    store.append([r for r in rows_for(sweep) if r["encoder"] != "abl-ed"])
    jobs = []
    for c in COMBOS:
        run = tmp_path / "students" / c.label
        if c.label != "abl-d":  # abl-d is still distilling: no export yet
            (run / "export").mkdir(parents=True)
            (run / "export" / "model.safetensors").write_bytes(c.label.encode())
        jobs.append({"label": c.label, "run_dir": str(run), "config": {"teachers": list(c.teachers)}})
    train = [{"label": c.label, "task": t} for c in COMBOS for t in ("metaworld/a", "metaworld/b")]
    (sweep / "plan.json").write_text(json.dumps({"distill": jobs, "train": train, "store": str(sweep / "results.sqlite")}))

    def fake_fit(source, run_dir):
        label = run_dir.rsplit("/", 1)[-1]
        return fit(label, next(c.teachers for c in COMBOS if c.label == label))

    data = json.loads(ablation_report(sweep, resampling=R, fit_fn=fake_fit)["json"].read_text())
    rows = {r["student"]: r for r in data["rows"]}
    assert rows["abl-d"]["status"] == "not distilled yet" and rows["abl-d"]["heldout_cos"] == {}
    assert rows["abl-ed"]["status"] == "distilled" and rows["abl-ed"]["score"] is None
    assert set(rows["abl-ed"]["heldout_cos"]) == {"eff", "depth"} and rows["abl-e"]["score"]["mean"] == 60.0
    assert data["meta"]["pending"] == ["abl-d"] and data["meta"]["unscored"] == ["abl-ed"]
    effects = {e["teacher"]: e for e in data["per_teacher"]}
    assert effects["eff"]["n_with"] == 1 and effects["depth"]["n_with"] == 0  # scored rows only
    md = (sweep / "ablation" / "ablation.md").read_text()
    assert "| abl-d | depth | (not distilled yet) | (not distilled yet) |" in md
    assert "**Incomplete**: not distilled yet: abl-d; distilled, no finished cell yet: abl-ed." in md
    assert "| depth | - (0) |" in md


def test_command_line_errors_exit_2_and_write_nothing(tmp_path, capsys):
    from theia_eval.cli import main

    assert main(["ablation"]) == 2 and "pass sweep_dir=DIR" in capsys.readouterr().err
    empty = tmp_path / "sweep"
    empty.mkdir()
    assert main(["ablation", f"sweep_dir={empty}"]) == 2 and "has no plan.json" in capsys.readouterr().err
    (empty / "plan.json").write_text(json.dumps({"distill": []}))
    assert main(["ablation", f"sweep_dir={empty}", "checkpoint=final"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert main(["ablation", f"sweep_dir={empty}"]) == 2 and "has 0 student(s)" in capsys.readouterr().err
    assert sorted(p.name for p in empty.iterdir()) == ["plan.json"]
