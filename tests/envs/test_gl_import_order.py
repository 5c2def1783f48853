"""Rendering first and importing torchvision later must not crash the process (EGL + torchvision segfault)."""
import subprocess
import sys

SCRIPT = """
from theia_eval.envs.env import make_env
env = make_env("metaworld/drawer-open", resolution=32, crop=None)
frame = env.reset(0)["rgb"]
import torchvision  # noqa: F401  (segfaulted when imported after the first GL context)
from theia_eval.encoders import create_encoder
print(tuple(create_encoder("pixels")(frame[None]).tokens.shape))
env.close()
"""


def test_render_then_import_torchvision_does_not_crash():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(1, 16, 16, 48)" in proc.stdout
