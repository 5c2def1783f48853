"""How close decoded simulator-teacher predictions are to the simulator's exact depth and segmentation.

depth (sim-depth)          the decoded (grid*sub)^2 depth map vs the exact depth pooled the way the teacher pools
                           it (clipped at max_depth, average per cell): abs-rel = mean |d - d*| / d*, RMSE in
                           metres, delta1 = share of cells with max(d/d*, d*/d) < 1.25
segmentation (sim-seg.)    the decoded label map (class frequencies upsampled bilinearly, argmax) vs the exact
                           per-pixel labels at the panel size: IoU per class over all scored images, mIoU over
                           the classes present, pixel accuracy; `ceiling_miou` is what the same decoder gives on
                           the teacher's exact frequencies (the best a perfect student could score this way)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from theia_eval.decoding.decoders import segmentation_classes, sim_depth_map, sim_depth_truth, sim_label_map


@dataclass
class DepthScore:
    cells: int = 0
    abs_rel: float = 0.0
    sq_err: float = 0.0
    delta1: int = 0

    def add(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        valid = truth > 1e-6
        p, t = pred[valid].double(), truth[valid].double()
        self.cells += int(valid.sum())
        self.abs_rel += float(((p - t).abs() / t).sum())
        self.sq_err += float(((p - t) ** 2).sum())
        self.delta1 += int((torch.maximum(p / t.clamp_min(1e-6), t / p.clamp_min(1e-6)) < 1.25).sum())

    def summary(self) -> dict:
        n = max(self.cells, 1)
        return {"abs_rel": round(self.abs_rel / n, 4), "rmse_m": round((self.sq_err / n) ** 0.5, 4),
                "delta1": round(self.delta1 / n, 4), "cells": self.cells}


@dataclass
class SegmentationScore:
    classes: tuple[str, ...]
    confusion: np.ndarray = field(default=None)  # (truth, prediction) pixel counts
    ceiling: np.ndarray = field(default=None)

    def __post_init__(self):
        k = len(self.classes)
        self.confusion = np.zeros((k, k), np.int64)
        self.ceiling = np.zeros((k, k), np.int64)

    @staticmethod
    def count(confusion: np.ndarray, truth: torch.Tensor, pred: torch.Tensor) -> None:
        k = confusion.shape[0]
        idx = (truth.long().clamp(0, k - 1) * k + pred.long().clamp(0, k - 1)).flatten()
        confusion += torch.bincount(idx, minlength=k * k).reshape(k, k).numpy()

    @staticmethod
    def ious(confusion: np.ndarray) -> tuple[dict, float, float]:
        tp = np.diag(confusion).astype(np.float64)
        union = confusion.sum(0) + confusion.sum(1) - tp
        present = union > 0
        iou = np.where(present, tp / np.maximum(union, 1), np.nan)
        return iou, float(np.nanmean(iou)) if present.any() else float("nan"), float(tp.sum() / max(confusion.sum(), 1))

    def summary(self) -> dict:
        iou, miou, acc = self.ious(self.confusion)
        _, ceiling, _ = self.ious(self.ceiling)
        return {"miou": round(miou, 4), "pixel_accuracy": round(acc, 4), "ceiling_miou": round(ceiling, 4),
                "iou": {c: (None if np.isnan(v) else round(float(v), 4)) for c, v in zip(self.classes, iou)},
                "pixels": int(self.confusion.sum())}


class Fidelity:
    """Accumulates depth and segmentation scores over batches of predictions and exact extras."""

    def __init__(self, teachers: dict[str, str], size: int):
        self.size = size
        self.depth_ids = [t for t, name in teachers.items() if name == "sim-depth"]
        self.seg_ids = [t for t, name in teachers.items() if name == "sim-segmentation"]
        self.depth = {t: DepthScore() for t in self.depth_ids}
        self.seg: dict[str, SegmentationScore] = {}
        self.images = 0

    @property
    def active(self) -> bool:
        return bool(self.depth_ids or self.seg_ids)

    def add(self, features: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> None:
        """features: {teacher id: (B, g, g, C)} in the teacher's scale; truth: depth / segmentation (B, S, S)."""
        self.images += len(next(iter(features.values())))
        if "depth" in truth:
            for t in self.depth_ids:
                f = features[t].cpu()
                sub = int(round(f.shape[-1] ** 0.5))
                self.depth[t].add(sim_depth_map(f), sim_depth_truth(truth["depth"], f.shape[1], sub))
        if "segmentation" in truth:
            seg = F.interpolate(torch.as_tensor(truth["segmentation"])[:, None].float(), size=(self.size,) * 2,
                                mode="nearest")[:, 0].long()
            for t in self.seg_ids:
                f = features[t].cpu()
                score = self.seg.setdefault(t, SegmentationScore(segmentation_classes(f.shape[-1])))
                score.count(score.confusion, seg, sim_label_map(f, self.size))
                exact = F.one_hot(torch.as_tensor(truth["segmentation"]).long().clamp(0, f.shape[-1] - 1),
                                  f.shape[-1]).permute(0, 3, 1, 2).float()
                frequencies = F.adaptive_avg_pool2d(exact, f.shape[1:3]).permute(0, 2, 3, 1)
                score.count(score.ceiling, seg, sim_label_map(frequencies, self.size))

    def summary(self) -> dict:
        return {"images": self.images, "depth": {t: s.summary() for t, s in self.depth.items()},
                "segmentation": {t: s.summary() for t, s in self.seg.items()}}


def fidelity_lines(summary: dict) -> list[str]:
    """Markdown lines for a card: one per simulator teacher."""
    lines = []
    for t, s in summary.get("depth", {}).items():
        lines.append(f"- {t}: depth abs-rel {s['abs_rel']:.3f}, RMSE {s['rmse_m']:.3f} m, delta<1.25 "
                     f"{s['delta1']:.3f} ({s['cells']} cells)")
    for t, s in summary.get("segmentation", {}).items():
        per = ", ".join(f"{c} {v:.2f}" for c, v in s["iou"].items() if v is not None)
        lines.append(f"- {t}: segmentation mIoU {s['miou']:.3f} ({per}), pixel accuracy {s['pixel_accuracy']:.3f}; "
                     f"the same decoder on the teacher's exact 16x16 frequencies: mIoU {s['ceiling_miou']:.3f}")
    return lines
