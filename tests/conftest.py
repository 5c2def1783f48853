import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # CI has 2 cores shared with env worker processes


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def images(rng) -> np.ndarray:
    """A small batch of random uint8 RGB images (B,H,W,3)."""
    return rng.integers(0, 256, size=(3, 70, 90, 3), dtype=np.uint8)
