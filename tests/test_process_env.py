"""Process-wide defaults set by importing theia_eval before torch (the CLI's order)."""
import os
import subprocess
import sys


def _env_after_import(env: dict) -> list[str]:
    code = ("import theia_eval, os; print(*(os.environ.get(k, '-') for k in "
            "('MUJOCO_GL', 'GOMP_SPINCOUNT', 'OMP_WAIT_POLICY')))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_cli_process_gets_headless_gl_and_a_short_openmp_spin():
    env = {k: v for k, v in os.environ.items()
           if k not in ("MUJOCO_GL", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PYOPENGL_PLATFORM")}
    assert _env_after_import(env) == ["egl", "30000", "-"]
    # a user's own setting wins: their spin count, or their wait policy (which the spin count would override)
    assert _env_after_import({**env, "GOMP_SPINCOUNT": "5"}) == ["egl", "5", "-"]
    assert _env_after_import({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == ["egl", "-", "ACTIVE"]


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
