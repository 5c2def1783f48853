"""Task/suite registry: names, suites, specs, lookups with suggestions."""
from __future__ import annotations

import numpy as np
import pytest

from theia_eval.envs import get_suite, get_task, list_suites, list_tasks, resolve_tasks
from theia_eval.envs.metaworld import upstream_names
from theia_eval.envs.tasks import SuiteSpec, episode_seeds, final_step_success, register_suite
from theia_eval.errors import InputError, UnknownNameError


def test_all_fifty_metaworld_tasks():
    names = list_tasks("metaworld/*")
    assert len(names) == 50 == len(upstream_names())
    assert {f"metaworld/{u.removesuffix('-v3')}" for u in upstream_names()} == set(names)
    assert get_suite("metaworld").tasks == tuple(get_task(n).name for n in get_suite("metaworld").tasks)


def test_cortexbench_suite_and_spec():
    suite = get_suite("cortexbench-metaworld")
    assert suite.tasks == ("metaworld/assembly", "metaworld/bin-picking",
                           "metaworld/button-press-topdown", "metaworld/drawer-open", "metaworld/hammer")
    assert suite.demos_per_task == 25 and suite.eval_episodes == 25
    spec = get_task("metaworld/hammer")
    assert (spec.suite, spec.camera, spec.horizon, spec.action_dim, spec.proprio_dim, spec.state_dim) == \
        ("metaworld", "top_cap2", 500, 4, 4, 39)
    assert spec.upstream_id == "hammer-v3" and spec.make_expert is not None
    np.testing.assert_array_equal(spec.proprio(np.arange(39.0)), [0, 1, 2, 3])
    assert set(list_suites()) >= {"metaworld", "cortexbench-metaworld"}


def test_success_rule_is_final_step():
    assert final_step_success(np.array([0, 1, 1], bool))
    assert not final_step_success(np.array([1, 1, 0], bool))
    assert not final_step_success(np.array([], bool))


def test_unknown_names_suggest():
    with pytest.raises(UnknownNameError, match="Did you mean: metaworld/drawer-open"):
        get_task("metaworld/drawer-opn")
    with pytest.raises(UnknownNameError, match="Did you mean: cortexbench-metaworld"):
        get_suite("cortexbench-metaword")


def test_resolve_tasks():
    assert [t.name for t in resolve_tasks(task="metaworld/reach")] == ["metaworld/reach"]
    assert len(resolve_tasks(suite="cortexbench-metaworld")) == 5
    with pytest.raises(InputError, match="exactly one of suite=NAME or task=NAME"):
        resolve_tasks()
    with pytest.raises(InputError, match="exactly one"):
        resolve_tasks("metaworld", "metaworld/reach")


def test_registry_rejects_duplicates_and_unknown_members():
    with pytest.raises(InputError, match="already registered"):
        register_suite(SuiteSpec("metaworld", ()))
    with pytest.raises(UnknownNameError):
        register_suite(SuiteSpec("new-suite", ("metaworld/nope",)))


def test_episode_seeds():
    assert episode_seeds(100, 3) == [100, 101, 102]
