"""benchmarks/gpu_check.py: every section runs in --smoke mode (CPU, toy sizes) and reports numbers; a failing,
hanging or out-of-budget section is recorded as such while the others still run."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ["machine", "distill_cached", "distill_online", "distill_compile", "encode", "bc", "eval", "torchrun",
            "quickstart"]


def run_check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "THEIA_EVAL_DATA": str(tmp_path / "data_root")}
    # --slack 4: the caps are sized for a quiet machine; test machines are often shared
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--slack", "4", "--out", str(out),
                           "--work", str(tmp_path / "work"), *args], env=env, capture_output=True, text=True,
                          timeout=1200, cwd=ROOT)
    assert (out / "gpu_check.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "gpu_check.json").read_text())


def positive(rows: list[dict], key: str) -> bool:
    return bool(rows) and all(isinstance(r[key], (int, float)) and r[key] > 0 for r in rows)


# slow (1.5 minutes and more under load: every benchmark section end to end): the section runner is covered by
# the two tests below; the library path of each section by its own faster tests (distill: tests/distill/test_train.py,
# encode: tests/test_registries.py, bc/eval: tests/policies/, torchrun: tests/distill/test_cache.py +
# test_train.py, quickstart: tests/sweeps/test_quickstart.py). Only the benchmark wrappers run here alone.
@pytest.mark.slow
def test_smoke_runs_every_section_and_reports_numbers(tmp_path):
    proc, report = run_check(tmp_path)
    res = report["results"]
    assert list(res) == SECTIONS
    failed = {s: (r.get("error"), r.get("log_tail")) for s, r in res.items() if r["status"] != "ok"}
    assert proc.returncode == 0 and not failed, failed
    for r in res.values():
        assert r["seconds"] > 0 and r["cap_s"] > 0 and r["summary"]
    assert res["machine"]["machine"]["cores"] >= 1
    assert {r["variant"] for r in res["distill_cached"]["rows"]} == {"plain", "tuned"}
    assert positive(res["distill_cached"]["rows"], "img_s") and positive(res["distill_compile"]["rows"], "img_s")
    assert res["distill_compile"]["rows"][0]["variant"] == "tuned+compile"
    online = res["distill_online"]["rows"][0]
    assert online["teachers_img_s"] > 0 and 0 < online["online_vs_teachers"]
    assert [r["encoder"] for r in res["encode"]["rows"]] == ["random-vit-nano", "r3m-18"]
    assert positive(res["encode"]["rows"], "bare_img_s") and positive(res["encode"]["rows"], "contract_img_s")
    assert {r["head"] for r in res["bc"]["rows"]} == {"mlp", "conv"} and positive(res["bc"]["rows"], "samples_s")
    assert {r["groups"] for r in res["eval"]["rows"]} == {1, 2} and positive(res["eval"]["rows"], "env_steps_s")
    assert res["torchrun"]["world_size"] == 2 and res["torchrun"]["img_s"] > 0
    assert res["quickstart"]["cells_run"] >= 1 and res["quickstart"]["wall_s"] > 0
    # the targets are printed next to the measured figures; at toy sizes they are not judged
    assert len(report["targets"]) == 3
    assert all(t["measured"] is not None and t["verdict"] == "n/a (smoke)" for t in report["targets"])
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    assert all(f"| {s} | ok |" in md for s in SECTIONS) and "## Targets (issue 18)" in md
    assert f"wrote {tmp_path / 'out' / 'gpu_check.json'}" in proc.stdout
    assert "===== torchrun (ok) =====" in (tmp_path / "out" / "gpu_check.log").read_text()
    assert (tmp_path / "out" / "quickstart_leaderboard.md").is_file()


def test_a_failing_and_a_hanging_section_are_recorded_and_the_rest_still_run(tmp_path):
    proc, report = run_check(tmp_path, "--sections", "bc", "encode", "distill_online", "machine",
                             "--inject", "fail:machine", "hang:distill_online", "--caps", "distill_online=3")
    res = report["results"]
    assert proc.returncode == 1 and list(res) == ["machine", "distill_online", "encode", "bc"]  # the check's order
    assert res["machine"]["status"] == "failed"
    assert "injected failure" in res["machine"]["error"] and "Traceback" in res["machine"]["log_tail"]
    hung = res["distill_online"]
    assert hung["status"] == "timeout" and "cap of 3 s" in hung["error"] and hung["seconds"] < 30
    assert res["encode"]["status"] == "ok" and res["bc"]["status"] == "ok"
    assert positive(res["encode"]["rows"], "contract_img_s") and positive(res["bc"]["rows"], "samples_s")
    assert report["targets"][2]["measured"] is None and report["targets"][2]["verdict"] == "not measured"
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| machine | failed |" in md and "| distill_online | timeout |" in md and "| bc | ok |" in md


def test_sections_past_the_budget_are_skipped_with_the_reason(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    gpu_check = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    rc = gpu_check.main(["--smoke", "--sections", "bc", "eval", "--budget", "0.01", "--out", str(tmp_path / "out"),
                         "--work", str(tmp_path / "work")])
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert rc == 0 and [r["status"] for r in report["results"].values()] == ["skipped", "skipped"]
    assert all("budget" in r["reason"] for r in report["results"].values())
    assert "bc: skipped" in capsys.readouterr().out
