"""Shared fixtures: one small rendered Meta-World frame set and tiny random-weight HF teachers on disk."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch



@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch) -> Path:
    """Keep default caches and frame sets out of the user's ~/.cache."""
    monkeypatch.setenv("THEIA_EVAL_DATA", str(tmp_path / "data_root"))
    return tmp_path / "data_root"


@pytest.fixture(scope="session")
def frameset(tmp_path_factory) -> Path:
    """32 rendered frames (2 tasks x 2 cameras, expert and random episodes) with depth and segmentation."""
    from theia_eval.distill.frames import FrameSettings, render_frameset

    out = tmp_path_factory.mktemp("frames") / "mw"
    settings = FrameSettings(tasks=["metaworld/drawer-open", "metaworld/button-press-topdown"], num_frames=32,
                             cameras=["top_cap2", "corner3"], frames_per_episode=4, frame_stride=10,
                             expert_fraction=0.5, shard_size=12, seed=0, out=str(out))
    render_frameset(settings, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_teachers(tmp_path_factory) -> dict[str, Path]:
    """Tiny random DINOv2 (16x16x32 tokens) and CLIP (7x7x32) vision models written with save_pretrained."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2,
                             patch_size=14, image_size=224)).save_pretrained(root / "dino")
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     patch_size=32, image_size=224)).save_pretrained(root / "clip")
    return {"dino": root / "dino", "clip": root / "clip"}
