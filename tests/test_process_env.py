"""Process-wide defaults set by importing theia_eval before torch (the CLI's order)."""
import os
import subprocess
import sys


def test_cli_process_gets_headless_gl_and_passive_openmp_waits():
    code = "import theia_eval, os; print(os.environ['MUJOCO_GL'], os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "OMP_WAIT_POLICY", "PYOPENGL_PLATFORM")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["egl", "PASSIVE"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["egl", "ACTIVE"]  # a user's own setting wins
