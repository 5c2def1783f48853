"""Bundle a finished distillation run as a shipped student asset (what `theia-offline` is).

    python -m theia_eval.distill.bundle RUN_DIR ASSET_DIR --name theia-offline --recipe scripts/theia_offline.sh

ASSET_DIR gets the run's final export with float16 weights (`export_half`), and, from the run's own files
(nothing typed by hand): heldout_fit.json (held-out fit per teacher at every validation, export steps
marked), heldout_fit.png (its plot), heldout_by_suite.json (the final student's held-out cosine per suite,
beside any --baseline students on the same frames) and CARD.md: the recipe, the data (frame sets, tasks,
held-out rule), held-out cosine per teacher at every export step (intermediate exports stay in
RUN_DIR/exports/), per suite, timings and the run's own card. Paths are written as given (pass repository-relative ones to keep the card portable).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from theia_eval.distill.export import export_half
from theia_eval.distill.fitcurve import CURVE_JSON, plot_fit_curve
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json

FIT_JSON = "heldout_fit.json"
FIT_PNG = "heldout_fit.png"
FAMILY_JSON = "heldout_by_suite.json"


def read_run(run_dir: Path) -> tuple[dict, dict, dict]:
    """(summary.json, fit_curve.json, config.yaml) of a finished run."""
    from omegaconf import OmegaConf

    files = [run_dir / "summary.json", run_dir / CURVE_JSON, run_dir / "config.yaml", run_dir / "export" / "CARD.md"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"{run_dir} is not a finished distillation run (missing {missing}); run `theia-eval distill` "
                         "to the end first (train.export_at for intermediate exports).")
    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=True)
    return json.loads(files[0].read_text()), json.loads(files[1].read_text()), config


def frame_sets(config: dict) -> list[tuple[str, dict]]:
    """(data spec, frame set manifest) of every frame set the run read."""
    from theia_eval.distill.framesets import MANIFEST
    from theia_eval.distill.sources import resolve_spec

    specs = config["data"] if isinstance(config["data"], list) else [config["data"]]
    out = []
    for spec in specs:
        kind, path = resolve_spec(str(spec))
        if kind == "frames":
            out.append((str(spec), json.loads((path / MANIFEST).read_text())))
    return out


def data_rows(sets: list[tuple[str, dict]]) -> list[str]:
    rows = ["| frame set | tasks | left out | frames | episodes | cameras | render wall time |",
            "|---|---|---|---|---|---|---|"]
    for spec, m in sets:
        cams = sorted({c for cs in (m.get("cameras") or {}).values() for c in cs}) or m["settings"].get("cameras")
        tasks = m["tasks"]
        shown = ", ".join(t.split("/", 1)[1] for t in tasks) if len(tasks) <= 6 else f"{len(tasks)} tasks"
        left_out = ", ".join(m["settings"].get("exclude_tasks") or []) or "-"
        rows.append(f"| `{spec}` | {m['suite']}: {shown} | {left_out} | {m['num_frames']} | {m['episodes']} | "
                    f"{', '.join(cams)} | "
                    f"{m['wall_s']:.0f} s ({1000 * m['wall_s'] / max(m['num_frames'], 1):.0f} ms/frame) |")
    long = [(spec, m["tasks"]) for spec, m in sets if len(m["tasks"]) > 6]
    if long:
        rows += ["", "Tasks of the larger frame sets:", ""]
        rows += [f"- `{spec}` ({len(tasks)}): " + ", ".join(t.split("/", 1)[1] for t in tasks) for spec, tasks in long]
    return rows


def fit_rows(curve: dict, summary: dict, run_dir: Path, asset: Path) -> list[str]:
    """Held-out cosine per teacher at every export step (the final one is the shipped asset)."""
    teachers = list(curve["points"][0]["cos"]) if curve["points"] else []
    per_step = {p["step"]: p for p in curve["points"]}
    rows = ["| step | images seen | " + " | ".join(f"{t} cosine" for t in teachers) + " | export |",
            "|---|---|" + "---|" * len(teachers) + "---|"]
    for step in curve["exports"]:
        p = per_step.get(step)
        if p is None:
            continue
        where = (f"shipped: `{asset}`" if step == curve.get("final_step")
                 else f"`{run_dir / 'exports' / f'step-{step:06d}'}`")
        cos = " | ".join(f"{p['cos'][t]:.4f}" for t in teachers)
        rows.append(f"| {step} | {step * summary['batch_size']:,} | {cos} | {where} |")
    return rows


def schedule(train: dict) -> str:
    warmup = f"{train.get('warmup_ratio', 0.1):.0%} warm-up"
    if train.get("lr_decay", "none") == "cosine":
        return f"{warmup}, then cosine decay to {train.get('lr_final_factor', 0.0)} x lr"
    return f"{warmup}, then constant"


def family_rows(fits: list[dict], teachers: list[str]) -> list[str]:
    """Held-out cosine per family (suite) and teacher for each evaluated student (this one, baselines)."""
    rows = ["| student | suite | frames | " + " | ".join(f"{t} cosine" for t in teachers) + " |",
            "|---|---|---|" + "---|" * len(teachers)]
    for fit in fits:
        for family, cos in fit["cos_by_family"].items():
            rows.append(f"| {fit['label']} | {family} | {cos['images']} | "
                        + " | ".join(f"{cos[t]:.4f}" for t in teachers) + " |")
        rows.append(f"| {fit['label']} | all | {fit['images']} | "
                    + " | ".join(f"{fit['teachers'][t]['cos']:.4f}" for t in teachers) + " |")
    return rows


def parse_target(text: str) -> tuple[str, float]:
    """'TEACHER=COSINE' (e.g. efficientnet-lite0=0.80) -> (teacher, cosine)."""
    teacher, sep, value = text.partition("=")
    try:
        cos = float(value)
    except ValueError:
        cos = float("nan")
    if not sep or not teacher or not -1.0 <= cos <= 1.0:
        raise InputError(f"--target must be TEACHER=COSINE with a cosine in [-1, 1] (e.g. efficientnet-lite0=0.80), "
                         f"got '{text}'.")
    return teacher, cos


def target_rows(target: tuple[str, float], curve: dict, summary: dict, fits: list[dict] | None) -> list[str]:
    """Whether the run met its held-out target, and what the run's own numbers say about why not: the fit on the
    training frames (capacity), the spread between suites (unseen domains) and the gain over the last half of
    training (plateau). Every figure comes from the run's files."""
    teacher, goal = target
    points = [p for p in curve["points"] if teacher in p["cos"]]
    if not points:
        raise InputError(f"--target names '{teacher}', which the run's held-out curve does not have (teachers: "
                         f"{', '.join(curve['points'][0]['cos']) if curve['points'] else 'none'}).")
    best = max(points, key=lambda p: p["cos"][teacher])
    final = points[-1]
    met = final["cos"][teacher] >= goal
    lines = ["## Held-out target", "",
             f"Target: held-out cosine to {teacher} >= {goal:.2f} on frames of tasks the student never saw. "
             f"Final step {final['step']}: {final['cos'][teacher]:.3f} (best {best['cos'][teacher]:.3f} at step "
             f"{best['step']}): **{'met' if met else 'not met'}**."]
    if met:
        return lines + [""]
    half = min(points, key=lambda p: abs(p["step"] - final["step"] / 2))
    gain = final["cos"][teacher] - half["cos"][teacher]
    train_cos = ((summary.get("train") or {}).get("teachers") or {}).get(teacher, {}).get("cos")
    lines += ["", "What stopped it, from this run's own numbers:", ""]
    per_k = 1000 * gain / max(final["step"] - half["step"], 1)
    reach = (f"at that rate the target is about {(goal - final['cos'][teacher]) / per_k * 1000:,.0f} steps away "
             "(a linear extrapolation; the curve is flattening, so it is optimistic)" if per_k > 0 else
             "the curve has stopped rising")
    lines.append(f"- plateau: {gain:+.3f} from step {half['step']} ({half['cos'][teacher]:.3f}) to step "
                 f"{final['step']} ({per_k:+.4f} per 1000 steps); {reach}.")
    if train_cos is not None:
        lines.append(f"- fit on the training frames: cosine {train_cos:.3f} (last logged batch), "
                     f"{'itself below' if train_cos < goal else 'above'} the target: "
                     + (f"this {summary['student']} student ({summary['params_m']} M parameters) does not fit "
                        f"{teacher}'s features even on frames it trains on."
                        if train_cos < goal else "the student fits the frames it trains on; the gap is generalization."))
    own = (fits or [{}])[0].get("cos_by_family") or {}
    suites = {f: c[teacher] for f, c in own.items() if teacher in c}
    if len(suites) > 1:
        hi, lo = max(suites, key=suites.get), min(suites, key=suites.get)
        lines.append(f"- unseen domains: per suite {', '.join(f'{f} {c:.3f}' for f, c in sorted(suites.items()))}; "
                     f"held-out {hi} frames (same scenes as its training tasks) come closest, {lo} (whole domains "
                     "left out) is furthest.")
    lines += ["", "A wider student (tiny, about 4x the compute per step) or frames of more domains are the next "
              "levers; both cost more CPU-hours than this run (see the wall time above).", ""]
    return lines


def bundle_card(name: str, recipe: str, run_dir: Path, asset: Path, summary: dict, curve: dict, config: dict,
                fits: list[dict] | None = None, target: tuple[str, float] | None = None) -> str:
    """CARD.md of a bundled student, generated from the run's files."""
    sets = frame_sets(config)
    train = summary.get("train") or {}
    rate = summary["steps_done"] * summary["batch_size"] / max(summary["timings_s"].get("train_s", 0.0), 1e-9)
    final = curve["points"][-1] if curve["points"] else {"cos": {}, "images": 0}
    lines = [
        f"# {name}: a {summary['student']} Theia student distilled offline on a CPU", "",
        f"Registry entry `{name}` (`create_encoder(\"{name}\")`): {summary['student']} ViT at {summary['image_size']} px, "
        f"{summary['params_m']} M backbone parameters. Weights are stored in float16 (the loader upcasts to float32) in the "
        "official Theia layout (backbone.model.*, translator.translator_heads.<teacher>.*), so "
        "`create_encoder(\"theia\", weights=THIS_DIR)` reads it too; feature_stats/ holds each teacher's target mean/std.", "",
        "## How it was made", "",
        f"One command from the repository root re-creates it and its intermediate exports: `{recipe}` "
        "(frames, target extraction, training with exports, then this folder). The distillation command it ran:", "",
        "```", summary.get("command") or "(library call)", "```", "",
        f"- teachers: {', '.join(t['name'] for t in summary['teachers'])} (teacher set `{config.get('teachers')}`)",
        f"- training: {summary['steps_done']} steps x batch {summary['batch_size']} = "
        f"{summary['steps_done'] * summary['batch_size']:,} images "
        f"({summary['steps_done'] * summary['batch_size'] / max(summary['train_images'], 1):.1f} epochs of "
        f"{summary['train_images']:,} training frames), lr {summary['lr']:.3g} ({schedule(config['train'])}), "
        f"{'bf16 autocast' if summary.get('amp') == 'bfloat16' else 'float32'}, {summary.get('attention')} "
        f"attention, {summary.get('threads')} thread(s) on {summary['device']}",
        f"- wall time: {summary['wall_s'] / 60:.1f} min in the distill command (targets "
        f"{summary['timings_s'].get('targets_s', 0) / 60:.1f} min, training {summary['timings_s'].get('train_s', 0) / 60:.1f} "
        f"min = {rate:.1f} img/s including data loading and validation)", "",
        "## Data", "",
        *data_rows(sets), "",
        f"Held out: {summary.get('held_out')}: {summary['val_images']:,} frames of tasks the student never trained on "
        f"(validated on {final['images']:,} of them).",
        "Target statistics (per-channel mean/std) are computed over every frame of the data, held-out ones included.", "",
        "## Held-out fit per export step", "",
        "Mean per-image cosine between the translator outputs and the standardised teacher targets on the held-out "
        "frames. Intermediate exports are not shipped (the recipe re-creates them); each loads with "
        "`create_encoder(\"theia\", weights=DIR)`.", "",
        *fit_rows(curve, summary, run_dir, asset), "",
        f"![held-out cosine per teacher against the training step]({FIT_PNG})", "",
        *(["Per suite at the final step (`python -m theia_eval.distill.heldout`; every row is one student on these "
            "same held-out frames, each target standardised with that student's own statistics):", "",
            *family_rows(fits, [t["id"] for t in summary["teachers"]]), ""] if fits else []),
        *(target_rows(target, curve, summary, fits) if target else []),
        f"Every validation: `{FIT_JSON}`. Last logged training cosine: "
        + ", ".join(f"{t} {v['cos']:.4f}" for t, v in (train.get("teachers") or {}).items()) + ".", "",
        "It has seen only simulator frames and three teachers (one real ImageNet network and two exact simulator "
        "channels); it is a working offline Theia-format encoder for CPU pipelines and studies, not a reproduction "
        "of the paper's students.", "",
        "The run's own card follows.", ""]
    run_card = (run_dir / "export" / "CARD.md").read_text().replace("# ", "## Run card: ", 1)
    return "\n".join(lines) + "\n" + run_card


def bundle(run_dir: str | Path, asset: str | Path, name: str, recipe: str, baselines: list[str] = (),
           target: tuple[str, float] | None = None) -> Path:
    """Write the asset folder from a finished run (replacing it). baselines: heldout.py JSON files of other
    students on the same held-out frames (e.g. the previously shipped one), shown beside this one."""
    from theia_eval.distill.heldout import heldout_fit

    run_dir, asset = Path(run_dir), Path(asset)
    summary, curve, config = read_run(run_dir)
    fits = [{"label": f"{name} (this one)", **heldout_fit(str(run_dir), run_dir)}]
    fits += [json.loads(Path(b).read_text()) for b in baselines]
    card = bundle_card(name, recipe, run_dir, asset, summary, curve, config, fits, target)
    export_half(run_dir / "export", asset, card_text=card)
    shutil.copyfile(run_dir / CURVE_JSON, asset / FIT_JSON)
    atomic_write_json(asset / FAMILY_JSON, fits)
    if curve["points"]:
        plot_fit_curve(curve, asset / FIT_PNG, title=f"{name}: held-out cosine ({curve['points'][-1]['images']} "
                                                     "frames of unseen tasks; dotted: exports)"
                       if config.get("val_tasks") else None)
    for p in (asset / FIT_JSON, asset / FIT_PNG, asset / FAMILY_JSON):
        if p.exists():
            p.chmod(0o644)
    return asset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("asset")
    p.add_argument("--name", default="theia-offline")
    p.add_argument("--recipe", default="scripts/theia_offline.sh", help="the command that re-creates the run")
    p.add_argument("--baseline", action="append", default=[], help="a `python -m theia_eval.distill.heldout` JSON "
                   "of another student on the same held-out frames, shown in the card (repeatable)")
    p.add_argument("--target", default=None, metavar="TEACHER=COSINE", help="the held-out cosine the run aimed at "
                   "(e.g. efficientnet-lite0=0.80); the card says whether it was met and, if not, what the run's "
                   "numbers say stopped it")
    args = p.parse_args(argv)
    target = parse_target(args.target) if args.target else None
    out = bundle(args.run_dir, args.asset, args.name, args.recipe, args.baseline, target)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"bundled {args.run_dir} into {out} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
