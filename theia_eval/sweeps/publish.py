"""`theia-eval publish`: a sweep's finished cells as a portable folder to commit beside its tables.

From a sweep's out_dir (plan.json, results.sqlite, runs/, jobs.jsonl) to DEST:
- runs/...            every finished cell's light files: config.yaml, metrics.json, rows.json, eval/*.json,
                      eval_info*.json (per-episode outcomes); never checkpoints, caches or videos;
- results.csv         the store's rows, run_dir relative to DEST, machine paths made portable;
- cells.md / .json    one line per planned cell (grid=plan: the last plan.json; grid=config: the shipped
                      sweep config's whole grid): finished or not, best/last score, wall time;
- run_info.md / .json the machine(s), every job's wall time and the stage totals (from jobs.jsonl,
                      else from the Hydra stage folders and the cells' own timestamps);
- sweep.yaml          the sweep config the plan was built from (configs/sweep/<name>.yaml);
- leaderboard/        `theia-eval leaderboard` on results.csv (with claims= when given).
Nothing in DEST may hold an absolute path of this machine: the publish fails (exit 2) naming the file, and
DEST is left as it was (everything is built in a temporary sibling folder, checked, then moved in).
Re-running refreshes DEST from the sweep (finished cells only grow).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, atomic_write_text, read_json, remove_stale_temp_files, temp_sibling
from theia_eval.provenance import absolute_paths, machine_line, portable

LIGHT_FILES = ("config.yaml", "metrics.json", "rows.json", "eval_info*.json", "eval/*.json", "*.md")
TEXT_SUFFIXES = {".json", ".yaml", ".md", ".csv", ".html", ".txt", ".jsonl"}
log = logging.getLogger(__name__)


def stored_path(value: str, sweep_dir: Path) -> Path:
    """A run_dir as stored (relative to where the sweep ran, or absolute), found on this machine."""
    path = Path(value)
    if path.exists():
        return path
    runs = Path(*path.parts[path.parts.index("runs"):]) if "runs" in path.parts else path
    return sweep_dir / runs


def relative_run(path: Path, sweep_dir: Path) -> Path:
    """runs/<label>/<hash>/<task>/<encoder>/<head>/seed<N> of a cell, from its run directory."""
    parts = path.resolve().parts
    root = (sweep_dir / "runs").resolve().parts
    if parts[:len(root)] == root:
        return Path("runs", *parts[len(root):])
    if "runs" in parts:
        return Path(*parts[len(parts) - parts[::-1].index("runs") - 1:])
    raise InputError(f"run directory {path} is not under {sweep_dir / 'runs'}: publish a sweep's out_dir.")


def copy_light(src: Path, dst: Path, root: Path) -> int:
    """Copy a cell's light files with machine paths made portable; returns the number of files."""
    count = 0
    for pattern in LIGHT_FILES:
        for f in sorted(src.glob(pattern)):
            target = dst / f.relative_to(src)
            atomic_write_text(target, portable(f.read_text(), root))
            count += 1
    return count


def parse_time(text) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def minutes_between(a, b) -> float | None:
    ta, tb = parse_time(a), parse_time(b)
    return None if ta is None or tb is None else round((tb - ta).total_seconds() / 60, 1)


GRIDS = ("plan", "config")


def planned_cells(plan: dict, sweep_dir: Path, grid: str = "plan") -> list[dict]:
    """The cells of the last plan.json (grid=plan), or of the sweep's whole grid as shipped in
    configs/sweep/<name>.yaml plus those of plan.json (grid=config: for a sweep run piecewise with
    `sweep.encoders=[...]` overrides, where plan.json holds only the last piece)."""
    from theia_eval.config import compose
    from theia_eval.sweeps.plan import build_plan

    if grid not in GRIDS:
        raise InputError(f"grid={grid}: use grid=plan (the last plan.json) or grid=config (the shipped sweep config).")
    if grid == "plan":
        return plan["train"]
    full = build_plan(compose("sweep", [f"sweep={plan['name']}", f"out_dir={sweep_dir}"]))
    known = {c.config_hash for c in full.train}
    return [asdict(c) for c in full.train] + [c for c in plan["train"] if c["config_hash"] not in known]


def cell_lines(cells: list[dict], rows) -> list[dict]:
    """Every planned cell with its status, scores and wall time; then finished cells the plan does not list."""
    out = []
    planned = {c["config_hash"] for c in cells}
    extra = rows[~rows.config_hash.isin(planned)].drop_duplicates("config_hash")
    cells = cells + [{"label": r.encoder, "head": r.head, "task": r.task, "seed": int(r.seed),
                      "config_hash": r.config_hash} for r in extra.itertuples()]
    for cell in cells:
        mine = rows[rows.config_hash == cell["config_hash"]]
        by_ckpt = {r.checkpoint: r for r in mine.itertuples()}
        best, last = by_ckpt.get("best"), by_ckpt.get("last")
        out.append({"encoder": cell["label"], "head": cell["head"], "task": cell["task"], "seed": cell["seed"],
                    "config_hash": cell["config_hash"], "finished": bool(best is not None and last is not None),
                    "best": None if best is None else {"epoch": int(best.epoch), "score": float(best.score)},
                    "last": None if last is None else {"epoch": int(last.epoch), "score": float(last.score)},
                    "wall_min": None if last is None else minutes_between(last.started_at, last.finished_at)})
    return out


def cells_markdown(cells: list[dict], name: str) -> str:
    done = sum(c["finished"] for c in cells)
    lines = [f"# Cells of sweep {name}", "", f"{done} of {len(cells)} cells finished (generated by `theia-eval "
             "publish` from results.csv and the plan).", "",
             "| encoder | head | task | seed | best (epoch) | last (epoch) | wall (min) | config hash |",
             "|---|---|---|---|---|---|---|---|"]
    def fmt(e):
        return "-" if e is None else f"{e['score']:.1f} ({e['epoch']})"
    for c in cells:
        lines.append(f"| {c['encoder']} | {c['head']} | {c['task']} | {c['seed']} | {fmt(c['best'])} | "
                     f"{fmt(c['last'])} | {c['wall_min'] if c['wall_min'] is not None else '-'} | "
                     f"`{c['config_hash'][:12]}` |")
    return "\n".join(lines) + "\n"


def read_journal(path: Path) -> list[dict]:
    """The records of jobs.jsonl. A last line without its newline is a record a killed job was writing: skipped
    (that job is not finished). Any other line that is not JSON means the file is damaged: an InputError."""
    text = path.read_text()
    lines = text.split("\n")
    complete, cut = lines[:-1], lines[-1]  # cut: "" when the file ends with a newline
    jobs = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            jobs.append(json.loads(line))
        except ValueError as exc:
            raise InputError(f"{path} line {number} is not valid JSON ({exc}): the job journal is damaged. Delete "
                             "that line (or the file: run_info then falls back to the stage folders) and publish "
                             "again.") from exc
    if cut.strip():
        log.warning("%s ends with a record cut short (a job killed while writing it): skipped", path)
    return jobs


def stage_times(sweep_dir: Path) -> tuple[list[dict], dict[str, float], list[dict]]:
    """(jobs, seconds per stage, machines) from jobs.jsonl (written by every finished sweep job)."""
    from theia_eval.sweeps.launch import JOURNAL

    path = sweep_dir / JOURNAL
    jobs = read_journal(path) if path.is_file() else []
    totals: dict[str, float] = {}
    machines: list[dict] = []
    for j in jobs:
        totals[j["stage"]] = round(totals.get(j["stage"], 0.0) + float(j.get("seconds") or 0.0), 1)
        if j.get("machine") and j["machine"] not in machines:
            machines.append(j["machine"])
    return jobs, totals, machines


def hydra_stage_starts(sweep_dir: Path) -> list[tuple[str, str]]:
    """(stage, start time) of every launch, from the Hydra folder names <stage>-YYYYmmdd-HHMMSS."""
    out = []
    for d in sorted((sweep_dir / "hydra").glob("*-*-*")):
        stage, day, clock = d.name.rsplit("-", 2)
        out.append((stage, f"{day[:4]}-{day[4:6]}-{day[6:]} {clock[:2]}:{clock[2:4]}:{clock[4:]}"))
    return sorted(out, key=lambda s: s[1])


def run_info(sweep_dir: Path, cells: list[dict], command: str | None) -> tuple[str, dict]:
    jobs, totals, machines = stage_times(sweep_dir)
    launches = hydra_stage_starts(sweep_dir)
    walls = [c["wall_min"] for c in cells if c["wall_min"] is not None]
    info = {"command": command, "machines": machines, "stage_seconds_from_jobs": totals, "launches": launches,
            "jobs": jobs, "finished_cells": sum(c["finished"] for c in cells), "planned_cells": len(cells),
            "cell_wall_min_total": round(sum(walls), 1)}
    lines = ["# Run info", "", "Generated by `theia-eval publish` from the sweep's jobs.jsonl, its Hydra stage folders "
             "and the cells' own timestamps.", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += ["Machine(s): " + ("; ".join(machine_line(m) for m in machines) if machines else
                                "not recorded in jobs.jsonl (jobs of an older theia-eval)"), ""]
    lines += [f"Cells finished: {info['finished_cells']} of {info['planned_cells']}; summed cell wall time "
              f"{info['cell_wall_min_total']} min (training + evaluations, from each cell's start/finish).", ""]
    if totals:
        lines += ["| stage | wall time (s), summed over its jobs |", "|---|---|"]
        lines += [f"| {s} | {v} |" for s, v in totals.items()] + [""]
    if launches:
        lines += ["Stage launches (each `theia-eval sweep` invocation launches the stages with work left):", "",
                  "| stage | launched at (UTC) |", "|---|---|"] + [f"| {s} | {t} |" for s, t in launches] + [""]
    return "\n".join(lines), info


def check_portable(dest: Path, shown_as: Path | None = None) -> None:
    """Refuse a folder whose text files hold a machine path (named as under `shown_as` when given)."""
    for f in sorted(dest.rglob("*")):
        if f.is_file() and f.suffix in TEXT_SUFFIXES:
            found = absolute_paths(f.read_text(errors="replace"))
            if found:
                name = shown_as / f.relative_to(dest) if shown_as else f
                raise InputError(f"{name} still holds a machine path ({found[0]}) after publishing: it cannot be "
                                 "committed as is. Make that value relative (or a package name + version), then "
                                 "re-run `theia-eval publish`.")


def publish_sweep(sweep_dir: str | Path, dest: str | Path, claims=None, command: str | None = None,
                  grid: str = "plan") -> dict:
    """Copy a sweep's finished cells and tables into `dest` (see the module doc); returns a summary."""
    sweep_dir, dest = Path(sweep_dir), Path(dest)
    plan_file = sweep_dir / "plan.json"
    plan = read_json(plan_file, "the sweep plan (written by `theia-eval sweep`)") if plan_file.is_file() else {}
    store = Path(plan.get("store") or sweep_dir / "results.sqlite")  # a sweep may write to a shared store
    if not plan or not store.is_file():
        raise InputError(f"{sweep_dir} is not a sweep's out_dir (plan.json naming an existing results store "
                         "expected): pass the out_dir of `theia-eval sweep`.")
    if dest.resolve() == sweep_dir.resolve() or sweep_dir.resolve() in dest.resolve().parents:
        raise InputError(f"dest {dest} is inside the sweep folder {sweep_dir}: publish to another folder.")
    remove_stale_temp_files(dest.parent)  # what a killed publish left beside dest
    tmp = temp_sibling(dest)
    try:  # built apart and checked, then moved into dest file by file: a refused publish changes nothing there
        summary = build_publication(plan, store, sweep_dir, tmp, dest, claims, command, grid)
        check_portable(tmp, shown_as=dest)
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            target = dest / f.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**summary, "dest": str(dest), "leaderboard": str(dest / "leaderboard" / "leaderboard.md")}


def build_publication(plan: dict, store: Path, sweep_dir: Path, dest: Path, final: Path, claims, command, grid) -> dict:
    """Write the publication of a sweep into `dest` (a temporary folder that becomes `final`)."""
    from theia_eval.analysis.outputs import write_leaderboard
    from theia_eval.analysis.store import SCHEMA_VERSION, load_results

    rows = load_results(store)
    planned = planned_cells(plan, sweep_dir, grid)  # this sweep's cells, and the rows of a shared store that are its own
    mine = {c["config_hash"] for c in planned} | set(rows[rows.sweep == plan["name"]].config_hash)
    rows = rows[rows.config_hash.isin(mine)]
    root = Path.cwd()
    copied = 0
    runs = []
    for value in rows.run_dir.unique():
        src = stored_path(str(value), sweep_dir)
        if not src.is_dir():
            raise InputError(f"the run directory {value} of a finished cell is missing: the sweep folder is "
                             "incomplete; re-run the sweep (it re-creates what is missing) before publishing.")
        rel = relative_run(src, sweep_dir)
        copied += copy_light(src, dest / rel, root)
        runs.append((value, rel.as_posix()))
    rows = rows.copy()
    rows["run_dir"] = rows.run_dir.map(dict(runs))
    for col in ("weights", "weights_id"):
        rows[col] = rows[col].map(lambda v: portable(v, root) if isinstance(v, str) else v)
    rows.insert(0, "schema_version", SCHEMA_VERSION)
    atomic_write_text(dest / "results.csv", rows.to_csv(index=False))
    cells = cell_lines(planned, rows)
    atomic_write_json(dest / "cells.json", cells)
    atomic_write_text(dest / "cells.md", cells_markdown(cells, plan["name"]))
    text, info = run_info(sweep_dir, cells, command)
    atomic_write_text(dest / "run_info.md", portable(text, root))  # job errors may quote source paths
    atomic_write_text(dest / "run_info.json", portable(json.dumps(info, indent=2, default=str) + "\n", root))
    from theia_eval.config import config_dir

    sweep_yaml = config_dir() / "sweep" / f"{plan['name']}.yaml"
    if sweep_yaml.is_file():
        shutil.copyfile(sweep_yaml, dest / "sweep.yaml")
    write_leaderboard(dest / "results.csv", dest / "leaderboard", None, export=None, claims=claims, runs_root=final,
                      results_label="../results.csv")  # beside the leaderboard folder (not the temporary build path)
    return {"files": copied, "cells": info["finished_cells"], "planned": len(cells)}


def run(argv: list[str]) -> int:
    """`theia-eval publish sweep_dir=DIR dest=DIR [claims=NAME|PATH] [grid=plan|config] [command='...']`."""
    from theia_eval.config import split_args

    overrides, rest = split_args(argv)
    argparse.ArgumentParser(prog="theia-eval publish", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(rest)
    allowed = {"sweep_dir", "dest", "claims", "command", "grid"}
    opts = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in allowed or not value:
            raise InputError(f"bad argument '{item}': use sweep_dir=DIR dest=DIR [claims=NAME|PATH] "
                             "[grid=plan|config] [command='the sweep command'].")
        opts[key] = value
    if "sweep_dir" not in opts or "dest" not in opts:
        raise InputError("pass sweep_dir=DIR (a sweep's out_dir) and dest=DIR (the folder to commit).")
    out = publish_sweep(opts["sweep_dir"], opts["dest"], opts.get("claims"), opts.get("command"),
                        opts.get("grid", "plan"))
    print(f"published {out['cells']} of {out['planned']} cells ({out['files']} files) to {out['dest']}; "
          f"leaderboard: {out['leaderboard']}")
    return 0
