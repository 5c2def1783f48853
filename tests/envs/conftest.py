"""Shared small demo collection: 2 demos x 2 fast tasks at 64 px (crop 56), collected once."""
from __future__ import annotations

import pytest
from envs_helpers import TASKS, small_config

from theia_eval.envs.demos import collect


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """Demo files of TASKS collected in this process (workers=0), and the reports."""
    out = tmp_path_factory.mktemp("demos_inline")
    return out, collect(list(TASKS), out, small_config())
