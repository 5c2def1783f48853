"""Export a distilled student in the official Theia layout, with its target statistics and a card.

export/
  model.safetensors   backbone.model.* + translator.translator_heads.<teacher id>.* (official key names)
  config.json         architecture, teacher ids, each head's layout and feature statistics, the run's metadata
                      (teachers, data, steps, fit), and the AutoModel fields (model_type, auto_map)
  modeling_theia.py   self-contained modeling code: AutoModel.from_pretrained(export, trust_remote_code=True)
  feature_stats/      per-teacher mean/std of the targets in the reference layout (imagenet_mean_<id>.npy,
                      imagenet_var_<id>.npy holding the std), to turn translator outputs into teacher features
  CARD.md             the exact command, data, steps, wall time and per-teacher fit
The directory loads with theia_eval.load_theia(RUN_DIR) (translators included), with
create_encoder("theia", weights=RUN_DIR) (the backbone as an encoder), and with transformers' AutoModel.
"""
from __future__ import annotations

from pathlib import Path

from theia_eval.distill.stats import RunningStats
from theia_eval.io import atomic_write_text

META_KEYS = ("command", "student", "image_size", "params_m", "targets", "data", "images", "train_images",
             "val_images", "steps", "steps_done", "batch_size", "lr", "world_size", "device", "wall_s", "val",
             "stats_from")


def export_run(model, path: Path, summary: dict, stats: dict[str, RunningStats]) -> Path:
    """Write the export directory (atomically replaced) and its card; returns its path."""
    from theia_eval.encoders.theia_format import export_theia

    meta = {k: summary.get(k) for k in META_KEYS}
    meta["teachers"] = [{k: t[k] for k in ("name", "id", "grid", "dim", "weights")} for t in summary["teachers"]]
    heads = dict(model.translator.translator_heads.items())
    export_theia(model.backbone, path, translators=heads, metadata=meta,
                 feature_stats={tid: (s.mean, s.std) for tid, s in stats.items()},
                 min_std=float(summary.get("min_std", 1e-4)))
    atomic_write_text(path / "CARD.md", card(summary))
    return path


def fit_rows(summary: dict) -> list[str]:
    """Markdown rows: teacher, grid x width, held-out cosine and MSE, last train cosine."""
    val = summary.get("val") or {}
    train = (summary.get("train") or {}).get("teachers", {})
    rows = []
    for t in summary["teachers"]:
        v, tr = val.get(t["id"], {}), train.get(t["id"], {})
        cos = f"{v['cos']:.4f}" if "cos" in v else "n/a"
        mse = f"{v['mse']:.4f}" if "mse" in v else "n/a"
        tcos = f"{tr['cos']:.4f}" if "cos" in tr else "n/a"
        rows.append(f"| {t['name']} | `{t['id']}` | {t['grid'][0]}x{t['grid'][1]}x{t['dim']} | {cos} | {mse} | {tcos} |")
    return rows


def steps_line(summary: dict) -> str:
    """'N' for a finished run, 'N of M (stopped early; ...)' for one stopped with train.stop_at."""
    done = summary.get("steps_done", summary["steps"])
    if summary.get("export_step") is not None and done < summary["steps"]:
        return f"{done} of {summary['steps']} (an intermediate export of the run: train.export_at)"
    if done >= summary["steps"]:
        return str(summary["steps"])
    return f"{done} of {summary['steps']} (stopped early; rerunning the command resumes and finishes)"


def card(summary: dict) -> str:
    """CARD.md: how the student was made and how well it fits each teacher."""
    lines = [
        f"# Theia student: {summary['student']} distilled from {len(summary['teachers'])} teachers", "",
        "Command:", "", "```", summary.get("command") or "(library call)", "```", "",
        f"- data: {summary['data']} ({summary['train_images']} training / {summary['val_images']} held-out images)",
        *([f"- held out: {summary['held_out']}"] if summary.get("held_out") else []),
        f"- student: {summary['student']} at {summary['image_size']} px, {summary['params_m']} M backbone parameters",
        f"- steps: {steps_line(summary)} at global batch {summary['batch_size']} (lr {summary['lr']:.3g}), "
        f"{summary['world_size']} process(es) on {summary['device']}",
        f"- targets: {summary['targets']}; wall time {summary['wall_s']} s (timings {summary['timings_s']})",
        *([f"- target statistics: read from {summary['stats_from']} (stats=), not computed from the data"]
          if summary.get("stats_from") else []),
        *([f"- compute: autocast {summary['amp']}, attention {summary['attention']}, {summary['threads']} thread(s)"]
          if summary.get("attention") else []), "",
        "Fit per teacher (standardised targets; cosine = mean per-image cosine of the whole map):", "",
        "| teacher | id | grid x width | held-out cosine | held-out MSE | last train cosine |",
        "|---|---|---|---|---|---|", *fit_rows(summary), "",
        "Load: `theia_eval.load_theia(PATH)` (student + translators), `create_encoder(\"theia\", weights=PATH)` "
        "(the backbone as an encoder) or `transformers.AutoModel.from_pretrained(PATH, trust_remote_code=True)`, "
        "with this directory or its run directory (AutoModel: the export directory).", ""]
    return "\n".join(lines)


def export_half(src: str | Path, dst: str | Path, card_text: str | None = None) -> Path:
    """Copy an export directory with its weights stored in float16 (loaders upcast), e.g. to ship it in a package."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from theia_eval.io import remove_stale_temp_files, save_safetensors, temp_sibling

    src, dst = Path(src), Path(dst)
    if dst.parent.is_dir():
        remove_stale_temp_files(dst.parent)  # what a killed copy left
    tmp = temp_sibling(dst)
    shutil.copytree(src, tmp)
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(src / "model.safetensors").items()}
    save_safetensors(state, tmp / "model.safetensors", metadata={"format": "pt", "stored_dtype": "float16"})
    if card_text is not None:
        (tmp / "CARD.md").write_text(card_text)
    for p in tmp.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    from theia_eval.encoders.theia_format import replace_dir

    dst.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(tmp, dst)
    return dst
