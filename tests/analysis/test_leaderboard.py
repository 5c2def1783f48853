"""Leaderboard statistics against hand computations; markdown/CSV/HTML outputs; empty and reduced inputs."""
import base64
import csv
import io
import math
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from theia_eval.analysis.leaderboard import build_leaderboard, stat
from theia_eval.analysis.store import ResultsStore
from theia_eval.cli import main

from analysis_helpers import grid_rows, make_row

SE3 = 1 / math.sqrt(3)  # s.e. of three values spaced by 1 (sd 1, n 3)


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_stat_is_mean_and_standard_error():
    s = stat([1.0, 2.0, 6.0])
    assert s.mean == pytest.approx(3.0) and s.n == 3
    assert s.sem == pytest.approx(math.sqrt(7.0) / math.sqrt(3))  # sample var (4+1+9)/2 = 7
    assert math.isnan(stat([5.0]).sem) and stat([5.0]).format() == "5.0 (n=1)"
    assert stat([]).format() == "-"


def test_suite_and_mujoco_scores_match_hand_computation():
    (sec,), dropped = build_leaderboard(frame(grid_rows()))
    assert dropped == 0 and sec.suites == ["adroit", "dmc", "metaworld"]
    # alpha, last: metaworld per seed = mean(40+s, 50+s) = 45+s for s = 1,2,3 -> 47 +- 1/sqrt(3)
    mw = sec.suite_stats[("alpha", "conv", "last", "metaworld")]
    assert (mw.mean, mw.sem, mw.n) == (pytest.approx(47.0), pytest.approx(SE3), 3)
    assert sec.suite_stats[("alpha", "conv", "last", "dmc")].mean == pytest.approx(62.0)
    assert sec.suite_stats[("beta", "conv", "best", "adroit")].mean == pytest.approx(60 + 30 + 2 + 5)
    # MuJoCo subset = mean of the three SUITE scores per seed (not of the four tasks): (45+60+70)/3 + s
    overall, label = sec.overall[("alpha", "conv", "last")]
    assert label == "MuJoCo subset"
    assert overall.mean == pytest.approx(175 / 3 + 2) and overall.sem == pytest.approx(SE3) and overall.n == 3
    assert sec.overall[("beta", "conv", "best")][0].mean == pytest.approx(175 / 3 + 20 + 5 + 2)
    assert sec.task_stats[("alpha", "conv", "last", "metaworld/b")].mean == pytest.approx(52.0)
    assert sec.ranked() == [("beta", "conv"), ("alpha", "conv")]


def test_missing_suite_gives_a_labelled_partial_score_and_protocols_never_mix():
    rows = [r for r in grid_rows() if r["suite"] != "adroit"]
    rows += [make_row("gamma", "metaworld/a", seed=s, checkpoint=c, score=10.0, protocol="reduced",
                      deviations="bc.epochs=8 (CortexBench: 100)", sweep="quick")
             for s in (100, 200) for c in ("last", "best")]
    sections, _ = build_leaderboard(frame(rows))
    assert [s.title for s in sections] == ["CortexBench protocol",
                                           "Reduced protocol: sweep quick (NOT CortexBench numbers)"]
    full, reduced = sections
    overall, label = full.overall[("alpha", "conv", "last")]
    assert label == "mean of dmc, metaworld" and overall.mean == pytest.approx((45 + 60) / 2 + 2)
    assert "gamma" not in full.encoders and reduced.encoders == ["gamma"]
    assert reduced.deviations == ["bc.epochs=8 (CortexBench: 100)"]


def test_superseded_rows_are_not_counted_twice():
    rows = grid_rows()
    again = make_row("alpha", "metaworld/a", "conv", 100, "last", 0.0, config_hash="other-config",
                     recorded_at="2026-02-01T00:00:00+00:00")
    (sec,), dropped = build_leaderboard(frame(rows + [again]))
    assert dropped == 1
    # the newer evaluation (0 instead of 41) replaces the old one: seed-100 metaworld mean = (0 + 51) / 2
    assert sec.task_stats[("alpha", "conv", "last", "metaworld/a")].n == 3
    assert sec.suite_stats[("alpha", "conv", "last", "metaworld")].mean == pytest.approx((25.5 + 47 + 48) / 3)


class Page(HTMLParser):
    """Collects table captions, header cells and inline images of an HTML page."""

    def __init__(self):
        super().__init__()
        self.captions, self.images, self.headers, self._tag = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._tag == "caption":
            self.captions.append(data)
        elif self._tag == "th":
            self.headers.append(data)

    def handle_endtag(self, tag):
        self._tag = None


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


def test_written_leaderboard_md_csv_html(tmp_path, capsys):
    store = ResultsStore(tmp_path / "r.sqlite")
    rows = grid_rows() + [make_row("alpha", t, "mlp", s, c, score=20.0) for t in ("metaworld/a", "dmc/c", "adroit/d")
                          for s in (100, 200, 300) for c in ("last", "best")]
    store.append(rows)
    assert main(["leaderboard", f"results={tmp_path / 'r.sqlite'}", f"out_dir={tmp_path / 'lb'}"]) == 0
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "60.3 ± 0.6 (n=3)" in md  # alpha conv last MuJoCo subset: 175/3 + 2
    assert "conv (spatial)" in md and "mlp (CLS)" in md
    table = list(csv.DictReader(io.StringIO((tmp_path / "lb" / "leaderboard.csv").read_text())))
    row = next(r for r in table if r["encoder"] == "alpha" and r["head"] == "conv" and r["checkpoint"] == "best"
               and r["scope"] == "suite" and r["name"] == "metaworld")
    assert float(row["mean"]) == pytest.approx(52.0) and float(row["sem"]) == pytest.approx(SE3)
    for name in ("leaderboard.html", "report.html"):
        page = parse(tmp_path / "lb" / name)
        assert any(c.startswith("Leaderboard: CortexBench protocol") for c in page.captions)
        assert any(c.startswith("Spatial vs CLS") for c in page.captions)
        assert any(c.startswith("Per task") for c in page.captions)
        assert "metaworld last" in page.headers and "overall best" in page.headers
        assert page.images and all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
                                   for s in page.images)
        assert "http" not in "".join(page.images)  # nothing to fetch: opens offline
    spatial_vs_cls = (tmp_path / "lb" / "leaderboard.md").read_text().split("Spatial vs CLS")[1]
    # conv rows have no whole success count (41 % of 25): mean ± s.e.; mlp rows (20 % of 25 = 5/25) get a
    # bootstrap interval from their counts; unpaired, so the difference is the difference of the means
    assert re.search(r"\| alpha \| 60\.3 ± 0\.6 \(n=3\) \| 20\.0 \[\d+\.\d, \d+\.\d\] \| 40\.3 \|", spatial_vs_cls)
    assert (tmp_path / "lb" / "results.parquet").is_file()


def test_empty_and_missing_results(tmp_path, capsys):
    ResultsStore(tmp_path / "empty.sqlite")
    assert main(["leaderboard", f"results={tmp_path / 'empty.sqlite'}", f"out_dir={tmp_path / 'lb'}"]) == 0
    assert "is empty: no evaluations yet" in capsys.readouterr().out
    assert "is empty" in (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "is empty" in (tmp_path / "lb" / "report.html").read_text()
    assert main(["leaderboard", f"results={tmp_path / 'nope' / 'r.sqlite'}"]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nope").exists()
    assert main(["leaderboard"]) == 2
    assert "pass results=PATH" in capsys.readouterr().err


def test_plot_labels_of_nearby_points_are_stacked_not_overprinted():
    from theia_eval.analysis.plots import label_offsets

    assert label_offsets([(0.0, 0.0), (0.1, 1.0), (5.0, 5.0), (0.0, 0.5)], 0.5, 2.0) == [(5, 4), (5, -7), (5, 4),
                                                                                           (5, -18)]


def test_leaderboard_tables_have_one_cell_per_header():
    from theia_eval.analysis.report import section_tables

    rows = grid_rows() + [make_row("alpha", "metaworld/a", "mlp", s, c) for s in (100, 200) for c in ("last", "best")]
    (sec,), _ = build_leaderboard(frame(rows))
    tables = section_tables(sec)
    assert [t.caption.split(":")[0] for t in tables] == [
        "Leaderboard", "Paired comparison with the top entry", "Spatial vs CLS heads (overall, last checkpoint)",
        "Per task (successes k/n, Wilson 95% interval)"]
    for t in tables:
        assert t.rows and all(len(r) == len(t.header) for r in t.rows)
