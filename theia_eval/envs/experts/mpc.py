"""Moved to `theia_eval.envs.mpc`; this name re-exports it."""
from theia_eval.envs.mpc import *  # noqa: F401,F403
