"""theia-eval: which frozen image encoder makes the best robot policy, and why."""
import os as _os

# Headless MuJoCo rendering is the project default; users may still override it.
_os.environ.setdefault("MUJOCO_GL", "egl")
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])

__version__ = "0.1.0"

from theia_eval.encoders import create_encoder, list_encoders  # noqa: E402

__all__ = ["create_encoder", "list_encoders", "__version__"]
