"""Moved to `theia_eval.envs.dmc.expert`; this name re-exports it."""
from theia_eval.envs.dmc.expert import *  # noqa: F401,F403
