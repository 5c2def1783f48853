"""Helpers of the distillation tests (configs for fast CPU runs)."""
from __future__ import annotations

from pathlib import Path

from theia_eval.config import compose


def teacher_list(tiny: dict[str, Path]) -> str:
    """The test teacher set as a Hydra override value: two tiny HF teachers plus real efficientnet-lite0."""
    return (f"teachers=[{{name: dinov2-vit-s14, weights: '{tiny['dino']}', id: tiny/dinov2}},"
            f"{{name: clip-vit-b16, weights: '{tiny['clip']}', id: tiny/clip}},efficientnet-lite0]")


def distill_cfg(run_dir: Path, data: Path, *overrides: str):
    """A composed distill config for a fast CPU run (float32: amp=auto would pick bf16 on CPUs with AMX only)."""
    base = [f"run_dir={run_dir}", f"data={data}", "student=nano", "device=cpu", "train.amp=off", "train.num_workers=0",
            "train.progress=false", "train.batch_size=8", "train.steps=6", "train.log_every=1", "train.val_every=100",
            "train.ckpt_every=100", "train.base_lr=0.25", "shard_size=12", "val_fraction=0.15", "extract_batch=16"]
    return compose("distill", base + list(overrides))
