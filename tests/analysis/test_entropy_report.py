"""The entropy report: known distributions through the encoder path, correlations, verdicts, caching, HTML."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from theia_eval.analysis import correlation as corr
from theia_eval.analysis.entropy_report import encode_norms, entropy_record, load_images
from theia_eval.analysis.store import ResultsStore
from theia_eval.cli import main
from theia_eval.errors import InputError, UnknownNameError

from analysis_helpers import make_row


class NormEncoder:
    """A stand-in encoder whose token norms are exactly the given values (one token per value, C = 2)."""

    name, weights_id, token_dim = "norms", "none", 2

    def __init__(self, norms: np.ndarray, grid=(4, 4)):
        self.norms, self.grid, self.used = np.asarray(norms, np.float64), grid, 0

    def __call__(self, images):
        h, w = self.grid
        n = len(images)
        vals = torch.as_tensor(self.norms[self.used:self.used + n * h * w].reshape(n, h, w), dtype=torch.float64)
        self.used += n * h * w
        tokens = torch.stack([vals * 0.6, vals * 0.8], dim=-1)  # |(0.6v, 0.8v)| = v
        return SimpleNamespace(tokens=tokens, summary=tokens.mean((1, 2)))


def images(n: int):
    from theia_eval.analysis.entropy_report import Images

    return Images(np.zeros((n, 8, 8, 3), np.uint8), "test", f"{n} blank images")


def test_uniform_norms_give_log_bins_and_constant_norms_give_zero():
    uniform = (np.arange(32 * 16) + 0.5) / (32 * 16)  # 512 values, exactly 16 per bin for 32 bins
    rec = entropy_record("u", NormEncoder(uniform), images(32), "all", 32, [8, 32])
    assert rec["entropy"] == pytest.approx(math.log(32), abs=1e-9)
    assert rec["normalized"] == pytest.approx(1.0) and rec["num_tokens"] == 512 and rec["bins"] == 32
    assert rec["by_bins"]["8"] == pytest.approx(math.log(8), abs=1e-9)
    assert rec["relative_spread"] == pytest.approx((511 / 512) / 0.5)
    assert sum(rec["hist"]["counts"]) == 512 and len(rec["hist"]["edges"]) == 33
    const = entropy_record("c", NormEncoder(np.full(512, 3.0)), images(32), "all", 32, [8, 32])
    assert const["entropy"] == 0.0 and const["norm_mean"] == pytest.approx(3.0) and const["relative_spread"] == 0.0
    # norms equal up to float rounding (a final LayerNorm with unit scale): flagged, not correlated
    layernormed = entropy_record("ln", NormEncoder(np.sqrt(128) * (1 + 1e-7 * np.sin(np.arange(512)))), images(32),
                                 "all", 32, [8, 32])
    assert layernormed["entropy"] > 0.5 and layernormed["relative_spread"] < 1e-6  # rounding noise, binned
    scores = {"u": (50.0, 1.0), "c": (10.0, 1.0), "ln": (30.0, 1.0)}
    res = corr_of([rec, const, layernormed], scores)
    assert res["constant_norms"] == ["c", "ln"] and res["n"] == 1 and res["encoders"] == ["u"]


def corr_of(records, scores):
    from theia_eval.analysis.entropy_report import correlate

    return correlate(records, scores, [8, 32], 100, 0, 8, min_spread=1e-4)


def test_token_sets_select_what_they_say():
    norms = np.arange(2 * 16, dtype=np.float64)
    assert sorted(encode_norms(NormEncoder(norms), np.zeros((2, 8, 8, 3), np.uint8), "all")) == pytest.approx(norms)
    inner = encode_norms(NormEncoder(norms), np.zeros((2, 8, 8, 3), np.uint8), "interior")
    assert sorted(inner) == pytest.approx([5, 6, 9, 10, 21, 22, 25, 26])  # the 2x2 centre of each 4x4 grid
    with pytest.raises(UnknownNameError, match="unknown token set"):
        encode_norms(NormEncoder(norms), np.zeros((1, 8, 8, 3), np.uint8), "cls")


def test_correlations_match_definitions_and_verdicts_are_plain():
    from scipy import stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = 2 * x + rng.normal(scale=0.3, size=12)
    assert corr.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert corr.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert corr.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4])[0])
    res = [corr.bootstrap(x, y, m, 500, 0) for m in ("pearson", "spearman")]
    assert all(c.ci95[0] <= c.value <= c.ci95[1] and c.ci95[0] > 0 for c in res)
    assert corr.verdict(res, min_encoders=8).startswith("Higher entropy goes with higher scores")
    few = [corr.bootstrap(x[:5], y[:5], m, 200, 0) for m in ("pearson", "spearman")]
    assert corr.verdict(few, min_encoders=8).startswith("Too few encoders to conclude anything: n = 5")
    two = [corr.bootstrap(x[:2], y[:2], "pearson", 200, 0)]
    assert math.isnan(two[0].value) and "No conclusion can be drawn" in corr.verdict(two, 8)
    noise = [corr.bootstrap(x, rng.normal(size=12), "pearson", 500, 1)]
    assert corr.verdict(noise, 8).startswith(("No clear relation", "Higher", "Lower"))


def write_pngs(folder, n=6):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_entropy_verb_with_scores_cache_and_report(tmp_path, capsys, monkeypatch):
    write_pngs(tmp_path / "imgs")
    store = ResultsStore(tmp_path / "r.sqlite")
    store.append([make_row(e, "metaworld/a", "conv", s, c, score=sc, encoder_name=e)
                  for e, sc in (("pixels", 30.0), ("blind", 10.0)) for s in (100, 200) for c in ("last", "best")])
    args = ["entropy", "encoders=results", f"results={tmp_path / 'r.sqlite'}", f"images=folder:{tmp_path / 'imgs'}",
            "bins=20", "bins_list=[5,20]", f"out_dir={tmp_path / 'out'}", "bootstrap=200"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Only 1 encoder(s) have both an entropy and a score" in out  # blind's norms are constant (all 0)
    rep = json.loads((tmp_path / "out" / "entropy.json").read_text())
    recs = {r["encoder"]: r for r in rep["records"]}
    assert set(recs) == {"pixels", "blind"} and rep["bins"] == 20 and rep["token_set"] == "all"
    assert recs["blind"]["entropy"] == 0.0 and recs["pixels"]["entropy"] > 2.0
    assert recs["pixels"]["num_tokens"] == 6 * 16 * 16 and recs["pixels"]["images"] == 6
    assert rep["correlation"]["n"] == 1 and rep["correlation"]["constant_norms"] == ["blind"]
    assert "conv head, last checkpoint" in rep["correlation"]["score_label"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Feature-norm entropy (20 bins, all spatial tokens" in html and html.count("data:image/png;base64,") >= 3
    assert "Leaderboard: CortexBench protocol" in html  # the report gathers both sections

    import theia_eval.encoders as encoders

    monkeypatch.setattr(encoders, "create_encoder", lambda *a, **k: pytest.fail("re-encoded a cached record"))
    assert main(args) == 0  # second run: every record comes from entropy.json
    assert json.loads((tmp_path / "out" / "entropy.json").read_text())["records"] == rep["records"]


def test_entropy_bad_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["entropy", "encoders=results"]) == 2
    assert not (tmp_path / "results").exists()  # nothing written on bad input
    assert "needs results=PATH" in capsys.readouterr().err
    assert main(["entropy", "encoders=[pixels]", "images=movies:/x", f"out_dir={tmp_path}"]) == 2
    assert "unknown image source 'movies'" in capsys.readouterr().err
    assert main(["entropy", "encoders=[pixels]", "token_set=cls", f"out_dir={tmp_path}"]) == 2
    assert "token_set must be one of all, interior" in capsys.readouterr().err
    with pytest.raises(InputError, match="no demo files"):
        load_images(f"demos:{tmp_path}", 4)


def test_entropy_tables_have_one_cell_per_header():
    from theia_eval.analysis.entropy_report import entropy_tables

    rec = entropy_record("u", NormEncoder(np.linspace(1, 2, 512)), images(32), "all", 16, [4, 16])
    report = {"bins": 16, "bins_list": [4, 16], "token_set": "all", "token_set_description": "all spatial tokens",
              "min_relative_spread": 1e-4, "images": {"description": "blank"}, "records": [rec],
              "ranking_stability": {}, "correlation": None}
    for table in entropy_tables(report):
        assert all(len(row) == len(table.header) for row in table.rows)
    tiny = entropy_record("tiny", NormEncoder(np.linspace(1e-7, 3e-7, 512)), images(32), "all", 16, [4, 16])
    main = entropy_tables({**report, "records": [tiny]})[0]
    row = dict(zip(main.header, main.rows[0]))
    assert row["norm mean"] == "2e-07" and row["norm std"].endswith("e-08")  # small norms keep their digits


def write_sweep(tmp_path):
    """A sweep folder as `theia-eval sweep` leaves it: plan.json (4 encoders x 2 tasks, conv; one mlp cell), two
    tasks' demo files and a store whose rows include a cell reused from another sweep and a row of no plan cell."""
    from theia_eval.envs.dataset import DatasetMeta, Episode, write_demos
    from theia_eval.envs.renderer import RenderSpec

    rng = np.random.default_rng(0)
    tasks, files = ("metaworld/bin-picking", "metaworld/hammer"), {}
    for i, task in enumerate(tasks):
        eps = [Episode(rgb=(rng.integers(0, 256, (6, 32, 32, 3)) // (1 + 3 * i)).astype(np.uint8),
                       proprio=np.zeros((6, 4)), state=np.zeros((6, 5)), actions=np.zeros((6, 4)),
                       rewards=np.zeros(6), success=np.zeros(6, bool), seed=j) for j in range(2)]
        meta = DatasetMeta(task=task, suite="metaworld", camera="top_cap2", render=RenderSpec("fast", 32, 32),
                           horizon=500)
        files[task] = str(write_demos(tmp_path / "demos" / f"{task.split('/')[1]}.hdf5", eps, meta))
    encoders = [("pixels", "pixels", None), ("eff", "efficientnet-lite0", None),
                ("eff-random", "efficientnet-lite0", "random"), ("student", "theia-offline", None)]
    train, rows = [], []
    score = {"bin-picking": [20.0, 40.0, 60.0, 80.0], "hammer": [10.0, 30.0, 20.0, 50.0]}
    for i, (label, name, weights) in enumerate(encoders):
        for task in tasks:
            h = f"{label}|{task}"
            train.append({"config_hash": h, "label": label, "task": task, "head": "conv",
                          "config": {"encoder": name, "weights": weights}})
            if (label, task) != ("student", "metaworld/hammer"):  # one cell not scored yet
                sweep = "part-1" if label == "pixels" else "part-3"  # pixels' cells reused from another sweep
                rows += [make_row(label, task, "conv", 100, c, score=score[task.split("/")[1]][i], config_hash=h,
                                  encoder_name=name, sweep=sweep) for c in ("last", "best")]
    train.append({"config_hash": "m", "label": "pixels", "task": tasks[0], "head": "mlp",
                  "config": {"encoder": "pixels", "weights": None}})
    rows.append(make_row("pixels", tasks[0], "conv", 200, "last", score=99.0, config_hash="other-sweep"))
    store = ResultsStore(tmp_path / "r.sqlite")
    store.append(rows)
    plan = {"name": "part-3", "store": str(tmp_path / "r.sqlite"), "train": train,
            "demos": [{"task": t, "path": f} for t, f in files.items()]}
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "plan.json").write_text(json.dumps(plan))
    return tmp_path / "sweep", score


def test_entropy_of_a_sweep_per_task_and_pooled(tmp_path, capsys, monkeypatch):
    sweep_dir, score = write_sweep(tmp_path)
    out = tmp_path / "out"
    args = ["entropy", f"sweep_dir={sweep_dir}", "num_images=4", "bins=10", "bins_list=[5,10]", f"out_dir={out}",
            "bootstrap=100", "min_encoders=3"]
    assert main(args) == 0
    rep = json.loads((out / "entropy.json").read_text())
    assert [p["task"] for p in rep["per_task"]] == ["metaworld/bin-picking", "metaworld/hammer"]
    assert [r["encoder"] for r in rep["records"]] == ["pixels", "eff", "eff-random", "student"]
    for part in rep["per_task"]:
        assert part["images"]["count"] == 4 and [r["images"] for r in part["records"]] == [4] * 4
    # pooled: the norms of both tasks' frames together (tokens add up), the entropy of that histogram
    for i, rec in enumerate(rep["records"]):
        parts = [p["records"][i] for p in rep["per_task"]]
        assert rec["images"] == 8 and rec["num_tokens"] == sum(p["num_tokens"] for p in parts)
        assert sum(rec["hist"]["counts"]) == rec["num_tokens"]
    # per-task scores: exactly the plan's conv cells (a reused cell counts, another sweep's row does not)
    bp = {p["encoder"]: p["score"] for p in rep["per_task"][0]["correlation"]["points"]}
    assert bp == dict(zip(["pixels", "eff", "eff-random", "student"], score["bin-picking"]))
    hammer = rep["per_task"][1]["correlation"]
    assert hammer["n"] == 3 and hammer["missing_scores"] == ["student"]
    pooled = {p["encoder"]: p["score"] for p in rep["correlation"]["points"]}
    assert pooled == {"pixels": 15.0, "eff": 35.0, "eff-random": 40.0}  # student lacks hammer: left out
    assert rep["scope"]["missing_scores"] == ["student on metaworld/hammer"] and rep["scope"]["cells"] == 8
    assert "mean success over 2 task(s), conv head, last checkpoint" in rep["correlation"]["score_label"]
    md = (out / "entropy.md").read_text()
    assert "pooled (all tasks)" in md and "**metaworld/hammer:**" in md and "Not yet scored: student on" in md
    assert (out / "entropy_vs_score_metaworld_bin-picking.png").is_file()
    assert (out / "entropy_vs_score_metaworld_hammer.png").is_file()
    csv = (out / "entropy.csv").read_text().splitlines()
    assert csv[0].startswith("frames,encoder") and len(csv) == 1 + 4 * 3
    import theia_eval.encoders as encoders

    monkeypatch.setattr(encoders, "create_encoder", lambda *a, **k: pytest.fail("re-encoded a cached record"))
    assert main(args) == 0  # every record, per task and pooled, comes from entropy.json


def test_entropy_of_a_sweep_bad_inputs(tmp_path, capsys):
    sweep_dir, _ = write_sweep(tmp_path)
    out = tmp_path / "out"
    for extra, message in ((["images=skimage"], "measures each task's own demo frames"),
                           (["encoders=[pixels]"], "measures the encoders of the sweep's plan"),
                           (["score.head=attn"], "no cells with the attn head (heads there: conv, mlp)")):
        assert main(["entropy", f"sweep_dir={sweep_dir}", f"out_dir={out}", *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["entropy", f"sweep_dir={tmp_path}", f"out_dir={out}"]) == 2
    assert "has no plan.json" in capsys.readouterr().err
    assert main(["entropy", "encoders=[pixels]", "images=plan", f"out_dir={out}"]) == 2
    assert "images=plan (each task's demo frames) needs sweep_dir" in capsys.readouterr().err
    assert not out.exists()


def test_entropy_of_a_sweep_whose_plan_lacks_the_head_says_how_to_write_the_whole_plan(tmp_path, capsys, monkeypatch):
    """plan.json of a sweep run in pieces holds only the last piece; the error names the dry run that writes the
    whole grid's plan (the analysis layer reads plans, it does not build them)."""
    monkeypatch.chdir(tmp_path)
    ResultsStore(tmp_path / "r.sqlite").append([make_row("pixels", "metaworld/drawer-open", "conv", 100, "last")])
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "plan.json").write_text(json.dumps(
        {"name": "smoke", "store": str(tmp_path / "r.sqlite"), "demos": [],
         "train": [{"config_hash": "m", "label": "blind", "task": "metaworld/drawer-open", "head": "mlp",
                    "config": {"encoder": "blind", "weights": None}}]}))
    assert main(["entropy", "sweep_dir=sweep", "out_dir=out"]) == 2
    err = capsys.readouterr().err
    assert "has no cells with the conv head (heads there: mlp)" in err
    assert "theia-eval sweep sweep=smoke out_dir=sweep --dry-run" in err
    assert not (tmp_path / "out").exists()


def test_a_student_still_distilling_is_listed_not_measured(tmp_path, capsys):
    """A study in progress: a student of the sweep's distill stage without its export yet is named in the report
    (not measured, no error); the encoders that exist are measured as usual."""
    sweep_dir, _ = write_sweep(tmp_path)
    plan = json.loads((sweep_dir / "plan.json").read_text())
    run = tmp_path / "students" / "abl-x-0123"
    for task in ("metaworld/bin-picking", "metaworld/hammer"):
        plan["train"].append({"config_hash": f"abl-x|{task}", "label": "abl-x", "task": task, "head": "conv",
                              "encoder": {"label": "abl-x", "name": "theia", "student": "abl-x"},
                              "config": {"encoder": "theia", "weights": str(run)}})
    (sweep_dir / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "out"
    args = ["entropy", f"sweep_dir={sweep_dir}", "num_images=4", "bins=10", "bins_list=[5,10]", f"out_dir={out}",
            "bootstrap=100", "min_encoders=3"]
    assert main(args) == 0
    rep = json.loads((out / "entropy.json").read_text())
    assert "abl-x" not in [r["encoder"] for r in rep["records"]] and rep["scope"]["not_distilled"] == ["abl-x"]
    assert "Not distilled yet (not measured): abl-x." in (out / "entropy.md").read_text()
    (run / "export").mkdir(parents=True)  # a half-written export (no model.safetensors) is still not a student
    assert main(args) == 0 and json.loads((out / "entropy.json").read_text())["scope"]["not_distilled"] == ["abl-x"]
