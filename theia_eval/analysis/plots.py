"""Figures of the reports (matplotlib, Agg backend, PNG written atomically)."""
from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

MARKERS = {"tokens": "o", "summary": "s"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wrap(title: str, width: int = 75) -> str:
    return "\n".join(textwrap.wrap(title, width))


def label_offsets(xy: Sequence[tuple[float, float]], x_tol: float, y_tol: float) -> list[tuple[int, int]]:
    """Text offsets (points) that stack the labels of nearby points (within the tolerances) instead of
    overprinting them."""
    out, seen = [], []
    for x, y in xy:
        near = sum(1 for qx, qy in seen if abs(qx - x) <= x_tol and abs(qy - y) <= y_tol)
        out.append((5, 4 - 11 * near))
        seen.append((x, y))
    return out


def _log_x(x: float) -> float:
    return float(np.log10(max(x, 0.05)))


def save(fig, path: Path, dpi: int = 110) -> Path:
    """Save a figure as PNG via a temp file, then close it."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def score_vs_gflops(points: Sequence[Mapping], path: Path, ylabel: str, title: str) -> Path:
    """The paper's Figure 1: score vs GFLOPs per image (symlog x, 0 allowed), one labelled point per encoder/head.

    points: {encoder, head, head_input, gflops, last, best}; best is drawn hollow and joined to last.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    offsets = label_offsets([(_log_x(p["gflops"]), p["last"]) for p in points], x_tol=0.25, y_tol=4.0)
    for p, offset in zip(points, offsets):
        marker = MARKERS.get(p["head_input"], "^")
        ax.plot([p["gflops"], p["gflops"]], [p["last"], p["best"]], color="0.75", lw=0.8, zorder=1)
        ax.scatter([p["gflops"]], [p["best"]], facecolors="none", edgecolors="tab:blue", marker=marker, zorder=2)
        ax.scatter([p["gflops"]], [p["last"]], color="tab:blue", marker=marker, zorder=3)
        ax.annotate(f"{p['encoder']} ({p['head']})", (p["gflops"], p["last"]), textcoords="offset points",
                    xytext=offset, fontsize=8)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlim(-0.02, max([1.0] + [2 * p["gflops"] for p in points]))
    ax.set_ylim(-3, 103)
    ax.set_xlabel("GFLOPs per image (multiply-add = 2; symlog axis, 0 = no encoder)")
    ax.set_ylabel(ylabel)
    ax.set_title(wrap(title), fontsize=10)
    handles = [plt.Line2D([], [], marker="o", ls="", color="tab:blue", label="last checkpoint"),
               plt.Line2D([], [], marker="o", ls="", mfc="none", color="tab:blue", label="best checkpoint"),
               plt.Line2D([], [], marker="o", ls="", color="0.4", label="spatial head"),
               plt.Line2D([], [], marker="s", ls="", color="0.4", label="CLS / summary head")]
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return save(fig, path)


def norm_histograms(hists: Mapping[str, Mapping], path: Path) -> Path:
    """One panel per encoder: the histogram of token norms that the entropy was computed from."""
    plt = _pyplot()
    n = max(1, len(hists))
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, h) in zip(axes.flat, hists.items()):
        edges = np.asarray(h["edges"])
        ax.stairs(np.asarray(h["counts"]), edges, fill=True, color="tab:blue")
        ax.set_title(f"{name}\nH = {h['entropy']:.3f} nats ({len(edges) - 1} bins)", fontsize=8)
        ax.set_xlabel("token L2 norm", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(hists):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)


def bin_sensitivity(entropies: Mapping[str, Mapping[int, float]], path: Path) -> Path:
    """Entropy / log(bins) against the bin count, one line per encoder: does the ranking depend on the bins?"""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for name, by_bins in entropies.items():
        bins = sorted(int(b) for b in by_bins)
        ax.plot(bins, [by_bins[b] / np.log(b) if b > 1 else 0 for b in bins], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("histogram bins")
    ax.set_ylabel("entropy / log(bins)")
    ax.set_title("Bin-count sensitivity of the feature-norm entropy", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save(fig, path)


def entropy_vs_score(points: Sequence[Mapping], path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    """Labelled scatter of entropy (x) against score (y), with the s.e. of the score as error bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    xs, ys = [p["entropy"] for p in points], [p["score"] for p in points]
    def span(v):
        return (max(v) - min(v)) if v else 0.0
    offsets = label_offsets(list(zip(xs, ys)), 0.1 * span(xs) + 1e-9, 0.05 * span(ys) + 1e-9)
    for p, offset in zip(points, offsets):
        err = p.get("sem")
        ax.errorbar([p["entropy"]], [p["score"]], yerr=None if err is None or err != err else [err], fmt="o",
                    color="tab:blue", capsize=3)
        ax.annotate(p["encoder"], (p["entropy"], p["score"]), textcoords="offset points", xytext=offset, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(wrap(title), fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)
