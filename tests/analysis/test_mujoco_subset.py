"""The MuJoCo-subset score across a study run as one sweep per suite family: pooled sections, entries lacking a
suite named (never averaged over what they have), and two stores read together."""
import math

import pandas as pd
import pytest

from analysis_helpers import episode_row, outcomes
from theia_eval.analysis.leaderboard import build_leaderboard, sections
from theia_eval.analysis.report import main_table
from theia_eval.errors import InputError

DEV_MW = "bc.epochs=30 (CortexBench: 100)"
DEV_DA = "demos.num_demos=25 (CortexBench: 100)"


def study_rows(root) -> list[dict]:
    """Part 1 (sweep mw: metaworld) has enc-a, enc-b and blind; part 2 (sweep da: dmc + adroit) has enc-a only."""
    rows = []
    part1 = {"enc-a": 20, "enc-b": 15, "blind": 5}
    for enc, k in part1.items():
        for ckpt in ("last", "best"):
            rows.append(episode_row(root, enc, "metaworld/x", "conv", 100, ckpt, outcomes(k), sweep="mw",
                                    protocol="reduced", deviations=DEV_MW))
    for task, k in (("dmc/y", 10), ("adroit/z", 5)):
        for ckpt in ("last", "best"):
            rows.append(episode_row(root, "enc-a", task, "conv", 100, ckpt, outcomes(k), sweep="da",
                                    protocol="reduced", deviations=f"{DEV_MW}; {DEV_DA}"))
    return rows


def test_pooled_study_gets_one_subset_score_and_names_what_the_others_lack(tmp_path):
    df = pd.DataFrame(study_rows(tmp_path))
    apart, _ = build_leaderboard(df)
    assert [s.title for s in apart] == ["Reduced protocol: sweep da (NOT CortexBench numbers)",
                                        "Reduced protocol: sweep mw (NOT CortexBench numbers)"]
    assert apart[1].overall[("enc-b", "conv", "last")][1] == "mean of metaworld"  # no entry spans the subset
    (sec,), _ = build_leaderboard(df, pools={"study": ["mw", "da"]})
    assert sec.title == "Reduced protocol: sweeps da + mw pooled as study (NOT CortexBench numbers)"
    assert sec.deviations == [DEV_MW, f"{DEV_DA} (sweep da only)"] and sec.spans_subset
    stat, label = sec.overall[("enc-a", "conv", "last")]
    assert label == "MuJoCo subset" and stat.mean == pytest.approx((80 + 40 + 20) / 3)
    assert sec.overall_ci[("enc-a", "conv", "last")].mean == pytest.approx((80 + 40 + 20) / 3)
    stat_b, label_b = sec.overall[("enc-b", "conv", "last")]
    assert label_b == "lacks dmc, adroit" and math.isnan(stat_b.mean)
    assert ("enc-b", "conv", "last") not in sec.overall_ci  # no interval for a score that does not exist
    assert sec.lacking() == {("enc-b", "conv"): ["dmc", "adroit"], ("blind", "conv"): ["dmc", "adroit"]}
    assert sec.ranked()[0] == ("enc-a", "conv") and sec.top["last"] == ("enc-a", "conv")
    table = main_table(sec)
    assert "blind + conv lacks dmc, adroit; enc-b + conv lacks dmc, adroit" in table.note
    assert "metaworld" in sec.suites and sec.task_scores[("enc-b", "conv", "last", "metaworld/x")].k == 15


def test_pools_are_checked(tmp_path):
    df = pd.DataFrame(study_rows(tmp_path))
    with pytest.raises(InputError, match="at least two sweeps"):
        sections(df, {"study": ["mw"]})
    with pytest.raises(InputError, match="sweep 'nope', which has no rows"):
        sections(df, {"study": ["mw", "nope"]})
    with pytest.raises(InputError, match="'mw' is in two pools"):
        sections(df, {"a": ["mw", "da"], "b": ["mw", "da"]})


def test_two_stores_read_together_from_the_command_line(tmp_path, capsys):
    from theia_eval.analysis.store import ResultsStore, load_results
    from theia_eval.cli import main

    rows = study_rows(tmp_path)
    a, b = tmp_path / "mw" / "results.sqlite", tmp_path / "da" / "results.sqlite"
    ResultsStore(a).append([r for r in rows if r["sweep"] == "mw"])
    ResultsStore(b).append([r for r in rows if r["sweep"] == "da"] + [rows[0]])  # one cell in both stores
    out = tmp_path / "lb"
    assert main(["leaderboard", f"results=[{a},{b}]", "pools={study: [mw, da]}", f"out_dir={out}"]) == 0
    md = (out / "leaderboard.md").read_text()
    assert "pooled as study" in md and "enc-b + conv lacks dmc, adroit" in md and "MuJoCo subset" in md
    assert "| enc-a | conv (spatial) | 1.00 | 2.00 | 3.0 |" in md and "| 46.7 [" in md and md.count("## Reduced protocol") == 1
    merged = load_results(out / "results.parquet")
    assert len(merged) == len(rows) + 1  # the export keeps both copies; the tables count the cell once
    assert "1 row(s) found in more than one results file, counted once" in md and "superseded" not in md
    # bad inputs: nothing written
    bad = tmp_path / "bad"
    for args, text in ((["results=[" + str(a) + "]", "pools={study: [mw, nope]}"], "sweep 'nope'"),
                       ([f"results=[{a},{tmp_path / 'missing.sqlite'}]"], "does not exist"),
                       ([f"results=[{a},{a}]"], "names a file twice")):
        assert main(["leaderboard", *args, f"out_dir={bad}"]) == 2
        assert text in capsys.readouterr().err and not bad.exists()
