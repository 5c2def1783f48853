"""The distillation objective: per teacher 0.9 x (1 - per-image cosine) + 0.1 x smooth-L1, teachers averaged.

The cosine is taken over each image's whole flattened feature map (one cosine per image, averaged over
the batch); smooth-L1 (beta 1) and MSE use mean reduction over every element. Predictions and the
standardised targets are compared in float32. MSE is logged only (the reference logs it too).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    cos: float = 0.9
    l1: float = 0.1


def image_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each image's flattened prediction and target: (B,)."""
    p = F.normalize(pred.flatten(1).float(), dim=1)
    t = F.normalize(target.flatten(1).float(), dim=1)
    return (p * t).sum(1)


def teacher_terms(pred: torch.Tensor, target: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """loss, cos (mean per-image cosine), smooth_l1 and mse of one teacher."""
    pred, target = pred.float(), target.float().reshape(pred.shape)
    cos = image_cosine(pred, target).mean()
    l1 = F.smooth_l1_loss(pred, target)
    with torch.no_grad():
        mse = F.mse_loss(pred, target)
    return {"loss": weights.cos * (1.0 - cos) + weights.l1 * l1, "cos": cos, "smooth_l1": l1, "mse": mse}


def distill_loss(preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                 weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """(total loss averaged over teachers, {teacher id: terms})."""
    terms = {tid: teacher_terms(preds[tid], targets[tid], weights) for tid in preds}
    total = torch.stack([t["loss"] for t in terms.values()]).mean()
    return total, terms
