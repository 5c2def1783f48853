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


def test_logging_reconfiguration_leaves_pytest_capture_open(capsys):
    """Hydra reconfigures logging in every sweep job; absl's handler (dm_control imports absl) must not close
    pytest's capture file then (tests/conftest.py points it at the real stderr)."""
    import logging.config

    import absl.logging

    stream = absl.logging.get_absl_handler().python_handler.stream
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert not stream.closed
    print("still capturing", file=sys.stderr)
    assert capsys.readouterr().err == "still capturing\n"
