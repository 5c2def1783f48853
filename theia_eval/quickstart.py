"""`theia-eval quickstart` (`make quickstart`): the whole pipeline, small, on a CPU, in under ten minutes.

1. runs the sweep configs/sweep/quickstart.yaml: collects a few Meta-World demos (fast render preset),
   renders frames and distills a nano student from the `offline` teacher set, caches embeddings, trains
   and evaluates a spatial head for each encoder (the student, theia-offline, efficientnet-lite0, a random
   ViT of the student's size, pixels) and an mlp head for the proprio-only `blind` control (what vision
   adds) on two tasks (a reduced protocol, labelled as such everywhere);
2. writes the leaderboard (markdown, CSV, HTML, score-vs-GFLOPs plot; intervals, paired comparisons with the
   top entry and the claims of configs/claim_sets/<claims>.yaml), the feature-norm-entropy report and
   report.html (everything in one offline page) to out_dir, plus run_info.md (command, machine, times).
A second run finds everything done and only rewrites the reports.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from theia_eval.config import compose
from theia_eval.verbs import parse_words, verb_parser
from theia_eval.io import atomic_write_json, atomic_write_text, read_json
from theia_eval.provenance import machine, machine_line


def sweep_config(cfg: DictConfig) -> DictConfig:
    """The `sweep` verb's config for the quickstart: everything under work_dir, in this process."""
    work = Path(cfg.work_dir)
    return compose("sweep", [f"sweep={cfg.grid}", f"out_dir={work}", f"store={work / 'results.sqlite'}",
                             f"demos_dir={work / 'demos'}", f"cache_dir={work / 'cache'}",
                             f"students_dir={work / 'students'}", "launcher=sequential", f"device={cfg.device}",
                             f"threads={'null' if cfg.threads is None else cfg.threads}",
                             f"embed_batch={cfg.embed_batch}", "leaderboard=false",
                             *cfg.sweep_overrides])


def entropy_config(cfg: DictConfig, store: Path, sweep_name: str) -> DictConfig:
    images = f"demos:{Path(cfg.work_dir) / 'demos'}" if cfg.entropy.images == "demos" else cfg.entropy.images
    e = cfg.entropy
    return compose("entropy", ["encoders=results", f"results={store}", f"images={images}",
                               f"num_images={e.num_images}", f"bins={e.bins}",
                               f"bins_list=[{','.join(str(b) for b in e.bins_list)}]", f"token_set={e.token_set}",
                               f"score.sweep={sweep_name}", f"out_dir={cfg.out_dir}", f"device={cfg.device}"])


def stage_seconds(report) -> dict[str, float]:
    return {s: round(sum(r.get("seconds", 0) for r in rs), 1) for s, rs in report.results.items()}


def write_run_info(out: Path, info: dict) -> None:
    """run_info.json keeps every run (newest last); run_info.md shows them with the machine of each."""
    path = out / "run_info.json"
    runs = read_json(path, "the quickstart run record").get("runs", []) if path.is_file() else []
    runs.append(info)
    lines = ["# Quickstart runs", "", "Protocol: REDUCED (see the deviations in leaderboard.md); not CortexBench "
             "numbers.", "", "| finished | command | machine | wall time (s) | stages (s) | cells run / reused |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        m = r["machine"]
        lines.append(f"| {r['finished']} | `{r['command']}` | {machine_line(m)} | {r['wall_s']} | {r['stages_s'] or 'all reused'} | {r['cells_run']} / {r['cells_reused']} |")
    atomic_write_json(path, {"runs": runs})
    atomic_write_text(out / "run_info.md", "\n".join(lines) + "\n")


def run(argv: list[str]) -> int:
    from theia_eval.analysis.outputs import write_entropy, write_leaderboard
    from theia_eval.analysis.store import now
    from theia_eval.sweeps.run import run_sweep

    parser = verb_parser("quickstart", __doc__, "The grid: configs/sweep/quickstart.yaml.")
    _, overrides = parse_words(parser, argv)
    t0 = time.perf_counter()
    cfg = compose("quickstart", overrides)
    out = Path(cfg.out_dir)
    scfg = sweep_config(cfg)
    report = run_sweep(scfg)
    store = Path(scfg.store)
    paths = write_leaderboard(store, out, report.plan.name, claims=cfg.get("claims"))
    entropy = write_entropy(entropy_config(cfg, store, report.plan.name))
    ran = len(report.results.get("train", []))
    info = {"command": shlex.join(["theia-eval", "quickstart", *argv]), "finished": now(),
            "machine": machine(cfg.threads),
            "wall_s": round(time.perf_counter() - t0, 1), "stages_s": stage_seconds(report), "cells_run": ran,
            "cells_reused": len(report.plan.train) - ran, "failures": report.failures, "blocked": report.blocked}
    write_run_info(out, info)
    if not paths.get("empty"):
        print(paths["md"].read_text())
    corr = json.loads(entropy["json"].read_text()).get("correlation")
    print("entropy vs score: " + (corr["verdict"] if corr else "no scores to correlate with."))
    print(f"\nquickstart finished in {info['wall_s']} s. Open {paths['report']} (everything in one offline page);\n"
          f"tables: {paths['md']}, {paths['csv']}; entropy: {entropy['md']}; plots: {out}/*.png; "
          f"store: {store}; run info: {out / 'run_info.md'}")
    if report.failures or report.blocked:
        print(f"{len(report.failures)} job(s) failed (listed above); re-run `make quickstart` after fixing them: "
              "finished work is kept.", file=sys.stderr)
        return 1
    return 0
