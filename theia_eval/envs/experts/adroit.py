"""Moved to `theia_eval.envs.adroit.expert`; this name re-exports it."""
from theia_eval.envs.adroit.expert import *  # noqa: F401,F403
