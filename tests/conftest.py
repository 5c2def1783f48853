import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402

import absl.logging  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # CI has 2 cores shared with env worker processes

# absl (imported by dm_control) gives its log handler the sys.stderr of its import time, and closes that
# stream when logging is reconfigured (logging.config.dictConfig, which Hydra runs for every sweep job)
# unless it is the current sys.stderr. Under pytest it is pytest's capture file: a DMC test followed by
# a sweep test closed it ("I/O operation on closed file"). The real stderr is never closed.
absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def images(rng) -> np.ndarray:
    """A small batch of random uint8 RGB images (B,H,W,3)."""
    return rng.integers(0, 256, size=(3, 70, 90, 3), dtype=np.uint8)
