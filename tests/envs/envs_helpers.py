"""Constants and config helpers shared by the envs tests."""
from __future__ import annotations

from theia_eval.envs.dataset import Storage
from theia_eval.envs.demos import DemoConfig
from theia_eval.envs.renderer import RenderSpec

TASKS = ("metaworld/button-press-topdown", "metaworld/drawer-open")
SMALL = RenderSpec("fast", 64, 56)


def small_config(**kw) -> DemoConfig:
    """2 demos, 64 px render, 56 px crop, 3 steps kept after success, no progress bar."""
    base = dict(num_demos=2, post_success_steps=3, workers=0, render=SMALL, progress=False,
                valid_fraction=0.5, storage=Storage("gzip", 1))
    base.update(kw)
    return DemoConfig(**base)
