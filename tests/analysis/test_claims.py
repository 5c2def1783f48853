"""Claims: parsing, the three verdicts (supported / not supported / inconclusive at this n), per-task numbers
with n, partial results (missing cells named, nothing raised), and the claims section of the outputs."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from theia_eval.analysis.claims import (INCONCLUSIVE, OPPOSITE, SUPPORTED, evaluate_claims, load_claims,
                                        parse_claim, verdict)
from theia_eval.analysis.leaderboard import build_leaderboard
from theia_eval.analysis.store import ResultsStore
from theia_eval.analysis.uncertainty import Paired
from theia_eval.cli import main
from theia_eval.errors import InputError

from analysis_helpers import episode_row, outcomes

TASKS = ("metaworld/a", "metaworld/b", "metaworld/c")
SPATIAL = {"id": "spatial", "statement": "spatial beats summary", "kind": "better", "a": {"head": "conv"},
           "b": {"head": "mlp"}, "per": "encoder"}
STUDENT = {"id": "student", "statement": "student matches teacher", "kind": "matches", "margin": 10,
           "a": {"encoder": "student", "head": "conv"}, "b": {"encoder": "teacher", "head": "conv"}}


def study_rows(root) -> list[dict]:
    """teacher: conv >> mlp; other: mlp >> conv; noisy: conv = mlp; student conv ~ teacher conv;
    partial: mlp on one task only."""
    rng = np.random.default_rng(0)
    cells = {("teacher", "conv"): (20, 22, 18), ("teacher", "mlp"): (8, 10, 6),
             ("other", "conv"): (3, 2, 4), ("other", "mlp"): (22, 23, 21),
             ("noisy", "conv"): (12, 12, 12), ("noisy", "mlp"): (12, 12, 12),
             ("student", "conv"): (21, 21, 19),
             ("partial", "conv"): (20, 20, 20), ("partial", "mlp"): (5, None, None)}
    rows = []
    for (enc, head), ks in cells.items():
        for task, k in zip(TASKS, ks):
            if k is None:
                continue
            got = outcomes(k, rng=rng) if enc == "noisy" else outcomes(k)
            rows += [episode_row(root, enc, task, head, 100, ckpt, got) for ckpt in ("last", "best")]
    return rows


@pytest.fixture
def sections(tmp_path):
    secs, _ = build_leaderboard(pd.DataFrame(study_rows(tmp_path)))
    return secs


def result(claims, sections, label=None) -> dict:
    (claim,) = evaluate_claims([parse_claim(c) for c in claims], sections)
    if label is None:
        return claim
    item = next(i for i in claim["comparisons"] if i["label"] == label)
    return item["results"][0]["checkpoints"]["last"] if item["results"] else item


def test_better_is_supported_refuted_or_inconclusive(sections):
    teacher = result([SPATIAL], sections, "teacher: conv vs mlp")
    assert teacher["verdict"] == SUPPORTED
    pooled = teacher["pooled"]
    assert pooled["diff"] == pytest.approx(100 * (60 - 24) / 75) and pooled["pairs"] == 75 and pooled["tasks"] == 3
    assert pooled["a_mean"] == pytest.approx(80.0) and pooled["b_mean"] == pytest.approx(32.0)
    assert [t["pairs"] for t in teacher["tasks"]] == [25, 25, 25] and all(t["excludes_0"] for t in teacher["tasks"])
    assert teacher["tasks"][0]["a"] == "20/25 [60.9, 91.1]"
    assert "n = 75 paired episodes" in teacher["sentence"] and "supported" in teacher["sentence"]
    assert result([SPATIAL], sections, "other: conv vs mlp")["verdict"] == OPPOSITE
    assert result([SPATIAL], sections, "noisy: conv vs mlp")["verdict"] == INCONCLUSIVE


def test_matches_needs_the_interval_inside_the_margin(sections):
    assert result([STUDENT], sections, "student (conv) vs teacher (conv)")["verdict"] == SUPPORTED
    far = {**STUDENT, "a": {"encoder": "other", "head": "conv"}}
    assert result([far], sections, "other (conv) vs teacher (conv)")["verdict"] == OPPOSITE
    narrow = {**STUDENT, "margin": 0.5}
    assert result([narrow], sections, "student (conv) vs teacher (conv)")["verdict"] == INCONCLUSIVE


def test_verdict_rules_per_kind():
    def p(lo, hi):
        return Paired((lo + hi) / 2, lo, hi, 0.5, 50, 5, 5, 2)
    better, not_worse, matches = (parse_claim({**STUDENT, "kind": k, "margin": 5}) for k in
                                  ("better", "not_worse", "matches"))
    assert [verdict(better, p(*ci)) for ci in ((1, 9), (-9, -1), (-1, 9))] == [SUPPORTED, OPPOSITE, INCONCLUSIVE]
    assert [verdict(not_worse, p(*ci)) for ci in ((-4, 9), (-9, -6), (-6, 1))] == [SUPPORTED, OPPOSITE, INCONCLUSIVE]
    assert [verdict(matches, p(*ci)) for ci in ((-4, 4), (6, 9), (-4, 6))] == [SUPPORTED, OPPOSITE, INCONCLUSIVE]
    assert verdict(better, Paired(float("nan"), float("nan"), float("nan"), 1.0, 0, 0, 0, 0)) == INCONCLUSIVE


def test_partial_results_name_what_is_missing(sections, tmp_path):
    claim = {**SPATIAL, "encoders": ["partial", "ghost"]}
    partial = result([claim], sections, "partial: conv vs mlp")
    assert partial["pooled"]["tasks"] == 1 and partial["pooled"]["pairs"] == 25
    assert partial["missing"] == ["metaworld/b: no last-checkpoint evaluation of partial (mlp)",
                                  "metaworld/c: no last-checkpoint evaluation of partial (mlp)"]
    assert "pooled over 1 of 3 task(s)" in partial["sentence"] and "Missing: metaworld/b" in partial["sentence"]
    ghost = result([claim], sections, "ghost: conv vs mlp")
    assert ghost["results"] == [] and ghost["absent"] == "no results yet for ghost (conv) and ghost (mlp)"
    summary = result([claim], sections)["summary"]
    assert "ghost: conv vs mlp: inconclusive at this n (no results yet" in summary
    # seeds that do not meet: said so, not "outcomes missing"
    rows = [episode_row(tmp_path, "s", "metaworld/a", head, seed, "last", outcomes(10))
            for head, seed in (("conv", 100), ("mlp", 200))]
    (sec,), _ = build_leaderboard(pd.DataFrame(rows))
    apart = result([{**SPATIAL, "checkpoints": ["last"]}], [sec], "s: conv vs mlp")
    assert apart["missing"] == ["metaworld/a: no training seed on both sides (s (conv): 100; s (mlp): 200)"]
    assert apart["verdict"] == INCONCLUSIVE and apart["pooled"]["pairs"] == 0
    blind = {**SPATIAL, "b": {"encoder": "blind", "head": "mlp"}}  # no encoder has both sides
    none = result([blind], [sec])
    assert none["comparisons"] == [] and "no comparison to make yet" in none["summary"]
    # an empty leaderboard: every comparison absent, nothing raised
    (claim_out,) = evaluate_claims([parse_claim(STUDENT)], [])
    assert claim_out["comparisons"][0]["absent"].startswith("no results yet")


def test_bad_claims_are_refused_with_the_reason(tmp_path):
    with pytest.raises(InputError, match="kind must be one of"):
        parse_claim({**STUDENT, "kind": "beats"})
    with pytest.raises(InputError, match="needs margin"):
        parse_claim({**STUDENT, "margin": None})
    with pytest.raises(InputError, match="needs a head and an encoder"):
        parse_claim({**SPATIAL, "per": None})
    with pytest.raises(InputError, match="optional: "):
        parse_claim({**SPATIAL, "colour": "red"})
    with pytest.raises(InputError, match="neither a file nor a name"):
        load_claims("no-such-claims")
    with pytest.raises(InputError, match="unique"):
        load_claims([SPATIAL, SPATIAL])


def test_shipped_claim_sets_parse():
    study = {c.id: c for c in load_claims("offline-study-metaworld")}
    assert set(study) >= {"spatial-vs-summary", "student-vs-teacher"}
    assert study["spatial-vs-summary"].encoders == ("efficientnet-lite0", "theia-offline")
    assert study["student-vs-teacher"].a == {"encoder": "theia-offline", "head": "conv"}
    assert study["student-vs-teacher"].b == {"encoder": "efficientnet-lite0", "head": "conv"}
    assert [c.b for c in load_claims("quickstart")] == [{"encoder": "blind", "head": "mlp"}]


def test_claims_section_in_the_outputs_and_the_report(tmp_path, capsys):
    import yaml

    store = tmp_path / "results.sqlite"
    ResultsStore(store).append(study_rows(tmp_path))
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump({"claims": [SPATIAL, STUDENT]}))
    out = tmp_path / "lb"
    assert main(["leaderboard", f"results={store}", f"out_dir={out}", f"claims={tmp_path / 'claims.yaml'}"]) == 0
    data = json.loads((out / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == ["spatial", "student"]
    md = (out / "leaderboard.md").read_text()
    assert "## Claims" in md and "**Claim spatial: spatial beats summary**" in md
    assert "teacher: conv vs mlp, last checkpoint: a − b = +48.0 points" in md
    for name in ("leaderboard.html", "report.html"):
        assert "Claim student: student matches teacher" in (out / name).read_text()
    assert "pooled" in (out / "claims.csv").read_text()
    # report.html rewritten later (as `entropy` does) keeps the claims and the leaderboard's interval settings
    from theia_eval.analysis.outputs import write_report

    assert main(["leaderboard", f"results={store}", f"out_dir={out}", f"claims={tmp_path / 'claims.yaml'}",
                 "uncertainty.seed=3"]) == 0
    def undated(text):
        return re.sub(r"generated [0-9T:+-]+", "", text)
    before = (out / "report.html").read_text()
    write_report(out, store)
    assert undated((out / "report.html").read_text()) == undated(before) and "generator seed 3" in before
    # without claims, stale claim files go
    assert main(["leaderboard", f"results={store}", f"out_dir={out}"]) == 0
    assert not (out / "claims.json").exists() and "Claim spatial" not in (out / "report.html").read_text()


def test_a_claim_naming_nothing_known_is_refused_before_any_write(tmp_path, capsys):
    """A misspelt encoder, head or task in a claim set would read as 'inconclusive (n = 0)': exit 2 instead, with
    the close names; a registered encoder that has no rows yet is allowed (reported as missing)."""
    import yaml

    store = tmp_path / "results.sqlite"
    ResultsStore(store).append(study_rows(tmp_path))
    out = tmp_path / "lb"
    for bad, message in (({**STUDENT, "a": {"encoder": "studnet", "head": "conv"}},
                          "claim 'student' names encoder 'studnet', which is neither in the results nor a registered "
                          "encoder name. Did you mean: student"),
                         ({**SPATIAL, "b": {"head": "mpl"}}, "names head 'mpl'.*Did you mean: mlp"),
                         ({**SPATIAL, "tasks": ["metaworld/hamer"]}, "names task 'metaworld/hamer'.*metaworld/hammer")):
        (tmp_path / "claims.yaml").write_text(yaml.safe_dump({"claims": [bad]}))
        assert main(["leaderboard", f"results={store}", f"out_dir={out}", f"claims={tmp_path / 'claims.yaml'}"]) == 2
        assert re.search(message, capsys.readouterr().err) and not out.exists()
    registered = {**STUDENT, "b": {"encoder": "efficientnet-lite0", "head": "conv"}}
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump({"claims": [registered]}))
    assert main(["leaderboard", f"results={store}", f"out_dir={out}", f"claims={tmp_path / 'claims.yaml'}"]) == 0
    assert "no last-checkpoint evaluation of efficientnet-lite0 (conv)" in (out / "claims.json").read_text()
