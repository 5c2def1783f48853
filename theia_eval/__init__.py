"""theia-eval: which frozen image encoder makes the best robot policy, and why."""
import os as _os

# Headless MuJoCo rendering is the project default; users may still override it.
_os.environ.setdefault("MUJOCO_GL", "egl")
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])
# OpenMP threads that busy-wait after each torch op steal the cores from the simulator/render
# workers: on 2 cores an evaluation lock-step took 21.6 ms instead of 12.5 ms. Sleeping waits cost
# nothing measurable on large matmuls. Takes effect only when torch is imported after theia_eval
# (the CLI does); set OMP_WAIT_POLICY yourself to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["create_encoder", "list_encoders", "__version__"]


def __getattr__(name: str):
    """Import the encoder registry (and torch) only when it is used, not in simulator worker processes."""
    if name in ("create_encoder", "list_encoders"):
        from theia_eval import encoders

        return getattr(encoders, name)
    raise AttributeError(f"module 'theia_eval' has no attribute {name!r}")
