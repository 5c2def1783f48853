"""The held-out fit of a run over its steps: fit_curve.json and a plot, from run_dir/metrics.jsonl.

fit_curve.json: {"held_out": how the held-out images were chosen, "exports": [steps with an export],
                 "final_step", "points": [{"step", "images", "cos": {teacher id: mean per-image cosine},
                 "mse": {teacher id: MSE of the standardised targets}}, ...]}
fit_curve.png:  held-out cosine per teacher against the step, export steps marked.
A resumed run appends to metrics.jsonl; the last validation logged for a step wins.
"""
from __future__ import annotations

import json
from pathlib import Path

from theia_eval.io import atomic_write_json

CURVE_JSON = "fit_curve.json"
CURVE_PNG = "fit_curve.png"


def validation_points(metrics: Path) -> list[dict]:
    """Validation records of metrics.jsonl, one per step (the last one logged), in step order."""
    by_step: dict[int, dict] = {}
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            record = json.loads(line) if line.strip() else {}
            val = record.get("val")
            if val:
                by_step[int(record["step"])] = {
                    "step": int(record["step"]), "images": next(iter(val.values()))["images"],
                    "cos": {tid: v["cos"] for tid, v in val.items()}, "mse": {tid: v["mse"] for tid, v in val.items()}}
    return [by_step[s] for s in sorted(by_step)]


def write_fit_curve(run_dir: Path, held_out: str, exports: list[int], final: int | None = None) -> dict:
    """Write run_dir/fit_curve.json and fit_curve.png; returns the curve."""
    points = validation_points(Path(run_dir) / "metrics.jsonl")
    marks = sorted(set(exports) | ({final} if final else set()))
    curve = {"held_out": held_out, "exports": marks, "final_step": final, "points": points}
    atomic_write_json(Path(run_dir) / CURVE_JSON, curve)
    if points:
        plot_fit_curve(curve, Path(run_dir) / CURVE_PNG)
    return curve


def plot_fit_curve(curve: dict, path: Path, title: str | None = None) -> Path:
    """Held-out cosine per teacher against the step (export steps as dotted lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve["points"]
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=110)
    for tid in points[0]["cos"]:
        ax.plot(steps, [p["cos"][tid] for p in points], marker="o", markersize=3, label=tid)
    for s in curve["exports"]:
        ax.axvline(s, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out cosine")
    ax.set_ylim(min(0.0, min(min(p["cos"].values()) for p in points)), 1.0)
    ax.set_title(title or f"held-out fit ({points[-1]['images']} images; dotted: exports)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
