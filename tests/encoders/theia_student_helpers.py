"""A tiny distilled-student fixture (every head kind) and its export, shared by the load_theia / decode tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from theia_eval.distill.student import DistillModel
from theia_eval.encoders.theia_format import StudentSize, export_theia

SIZE = StudentSize(width=32, depth=2, heads=2, mlp=64)  # 224 px, 14x14 grid
TARGETS = {  # teacher id -> (C, H, W): reference lconv 16x16, 7x7 and 64x64 heads, and our general head
    "facebook/dinov2-large": (24, 16, 16),
    "efficientnet-lite0": (40, 7, 7),
    "facebook/sam-vit-huge": (8, 64, 64),
    "odd/teacher": (6, 5, 5),
}
NAMES = {"facebook/dinov2-large": "dinov2-vit-l14", "efficientnet-lite0": "efficientnet-lite0",
         "facebook/sam-vit-huge": "sam-vit-h", "odd/teacher": "odd/teacher"}


def tiny_student(targets: dict = TARGETS, seed: int = 0) -> DistillModel:
    """A DistillModel whose every parameter is perturbed (LayerNorms away from 1/0), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DistillModel(SIZE, targets)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def tiny_stats(targets: dict = TARGETS, seed: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {t: (torch.randn(c, generator=g), 0.5 + torch.rand(c, generator=g)) for t, (c, _, _) in targets.items()}


def export_tiny(path: Path, model: DistillModel, stats: dict | None = None, names: dict = NAMES) -> Path:
    teachers = [{"id": t, "name": names.get(t, t)} for t in model.translator.translator_heads]
    return export_theia(model.backbone, path, translators=dict(model.translator.translator_heads.items()),
                        metadata={"teachers": teachers}, feature_stats=stats, min_std=1e-4)


def uint8_images(n: int = 2, h: int = 224, w: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def channels_first(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
