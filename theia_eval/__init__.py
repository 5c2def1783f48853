"""theia-eval: which frozen image encoder makes the best robot policy, and why."""
import os as _os

# Headless MuJoCo rendering is the project default; users may still override it.
_os.environ.setdefault("MUJOCO_GL", "egl")
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])
# OpenMP (libgomp) threads spin about 3 ms after each torch op by default, stealing the cores from the
# simulator/render workers; never spinning (OMP_WAIT_POLICY=PASSIVE) makes every small op wake sleeping
# threads (EfficientNet-Lite0 on 2 frames: 55 ms instead of 34). A short spin (about 0.3 ms) keeps both
# fast (docs/environment.md). Takes effect only when torch is imported after theia_eval (the CLI does);
# setting OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself overrides it.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "30000")

from theia_eval.version import __version__  # noqa: E402
__all__ = ["create_encoder", "list_encoders", "load_theia", "__version__"]


def __getattr__(name: str):
    """Import the encoder registry (and torch) only when it is used, not in simulator worker processes."""
    if name in ("create_encoder", "list_encoders"):
        from theia_eval import encoders

        return getattr(encoders, name)
    if name == "load_theia":
        from theia_eval.encoders.theia_student import load_theia

        return load_theia
    raise AttributeError(f"module 'theia_eval' has no attribute {name!r}")
