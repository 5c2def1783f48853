"""The quickstart flow end to end on a tiny grid (the smoke sweep plus a student distilled in the same sweep):
sweep -> leaderboard -> entropy -> report.html -> run_info; a second run reuses everything."""
import json
from html.parser import HTMLParser

from theia_eval.analysis.store import ResultsStore
from theia_eval.cli import main

STUDENT = ("sweep.students=[{label:tiny-student,teachers:offline,student:nano,"
           "frames:{tasks:[metaworld/drawer-open],num_frames:8,cameras:[top_cap2],frames_per_episode:4},"
           "overrides:{train:{steps:2,batch_size:4,num_workers:0,val_every:2,ckpt_every:2,progress:false}}}]")
TINY = ["grid=smoke", "threads=1", "entropy.num_images=6", "entropy.bins_list=[10,100]",
        f"sweep_overrides=['{STUDENT}','sweep.train.bc.epochs=1','sweep.train.eval.episodes=1',"
        "'sweep.train.eval.horizon=10','+sweep.train.bc.head_config.channels=16']"]


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_quickstart_on_a_tiny_grid_then_a_second_run_reuses_everything(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", f"out_dir={out}", *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"Open {out / 'report.html'}" in printed and "entropy vs score:" in printed
    df = ResultsStore(out / "work" / "results.sqlite").frame()
    assert set(df.encoder) == {"tiny-student", "pixels", "blind"} and len(df) == 6
    student = df[df.encoder == "tiny-student"].iloc[0]
    assert student.encoder_name == "theia" and student.weights.endswith(student.weights.split("/")[-1])
    assert (out / "work" / "students").is_dir() and student.params_m > 1.0  # the nano student, as loaded
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "score_vs_gflops.png", "entropy.md",
                 "entropy.json", "norm_hist.png", "entropy_bins.png", "report.html", "run_info.md"):
        assert (out / name).is_file(), name
    ent = json.loads((out / "entropy.json").read_text())
    assert {r["encoder"] for r in ent["records"]} == {"tiny-student", "pixels", "blind"}
    corr = ent["correlation"]
    assert "blind" in corr["constant_norms"] and corr["n"] == 3 - len(corr["constant_norms"])
    assert "No conclusion" in corr["verdict"] or "Too few encoders" in corr["verdict"]
    page = Tags()
    page.feed((out / "report.html").read_text())
    assert sum(t == "table" for t, _ in page.tags) >= 4
    assert sum(t == "img" and a["src"].startswith("data:image/png;base64,") for t, a in page.tags) >= 4
    assert "REDUCED PROTOCOL" in (out / "leaderboard.md").read_text()

    built = {p: p.stat().st_mtime_ns for p in (out / "work").rglob("*")  # demos, caches, student, checkpoints
             if p.suffix in (".hdf5", ".npy", ".pt", ".safetensors")}
    assert any(p.suffix == ".npy" for p in built) and any(p.suffix == ".pt" for p in built)
    assert main(["quickstart", f"out_dir={out}", *TINY]) == 0
    assert {p: p.stat().st_mtime_ns for p in built} == built  # nothing collected, encoded or trained again
    assert "nothing to run: every cell is finished" in capsys.readouterr().out
    runs = json.loads((out / "run_info.json").read_text())["runs"]
    assert [r["cells_run"] for r in runs] == [3, 0] and runs[1]["cells_reused"] == 3
    assert len(ResultsStore(out / "work" / "results.sqlite")) == 6
