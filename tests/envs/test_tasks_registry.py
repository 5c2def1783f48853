"""Task/suite registry: names, suites, specs, lookups with suggestions; suite families and their registration."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from theia_eval.envs import get_family, get_suite, get_task, list_families, list_suites, list_tasks, resolve_tasks
from theia_eval.envs.family import Family, episode_scores, mujoco_subset, normalized_scores, register_family
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


def test_every_family_registers_its_tasks_and_suites_once():
    families = [get_family(n) for n in list_families()]
    assert [f.name for f in families] == ["metaworld", "dmc", "adroit"]
    for fam in families:
        assert {t.name for t in fam.tasks} == set(list_tasks(f"{fam.name}/*"))
        assert all(get_task(t.name) is t and t.suite == fam.name for t in fam.tasks)
        assert all(get_suite(s.name) is s for s in fam.suites)
        assert set(get_suite(fam.name).tasks) == {t.name for t in fam.tasks}
        assert fam.protocol_suite() is get_suite(f"cortexbench-{fam.name}")
    assert mujoco_subset() == ("metaworld", "dmc", "adroit")
    assert [get_family(n).has_proprio for n in list_families()] == [True, False, True]
    with pytest.raises(InputError, match="already registered"):
        register_family(get_family("dmc"))
    with pytest.raises(UnknownNameError, match="Did you mean: dmc"):
        get_family("dmcc")


def test_family_registration_is_checked_before_anything_registers():
    task = replace(get_task("metaworld/reach"), name="toy/reach")
    with pytest.raises(InputError, match="must have suite='toy'"):
        register_family(Family("toy", (task,), ()))
    with pytest.raises(InputError, match="not one of its suites"):
        register_family(Family("toy", (replace(task, suite="toy"),), (), cortexbench="cortexbench-toy"))
    assert "toy/reach" not in list_tasks("toy/*") and "toy" not in list_families()


def test_episode_scores_follow_the_family_score_rule():
    per_episode = [{"success": True, "return": 900.0}, {"success": False, "return": 450.0}]
    assert episode_scores({"suite": "dmc", "per_episode": per_episode}) == ("normalized_score", [90.0, 45.0])
    assert episode_scores({"suite": "metaworld", "per_episode": per_episode}) == ("success", [100.0, 0.0])
    assert episode_scores({"suite": "unregistered", "per_episode": per_episode}) == ("success", [100.0, 0.0])
    assert normalized_scores("adroit", [1.0]) is None and normalized_scores("dmc", [10.0]) == [1.0]


def test_only_adroit_imports_public_datasets():
    from theia_eval.envs.adroit.importer import import_minari_adroit

    assert get_family("adroit").importer is import_minari_adroit
    assert get_family("metaworld").importer is None and get_family("dmc").importer is None


def test_old_module_paths_still_import():
    import theia_eval.envs.adroit_import as adroit_import
    import theia_eval.envs.experts.adroit as adroit_expert
    import theia_eval.envs.experts.dmc as dmc_expert
    import theia_eval.envs.experts.mpc as mpc
    from theia_eval.envs import mpc as mpc_new
    from theia_eval.envs.adroit import AdroitSim, expert, importer
    from theia_eval.envs.adroit import facts as adroit_facts
    from theia_eval.envs.dmc import DMCSim, load_env, normalized_score
    from theia_eval.envs.dmc import expert as dmc_new
    from theia_eval.envs.dmc import facts as dmc_facts
    from theia_eval.envs.metaworld import MetaWorldSim, gripper_proprio

    assert adroit_import.import_minari_adroit is importer.import_minari_adroit and adroit_import.main is importer.main
    assert adroit_expert.make_expert is expert.make_expert and dmc_expert.make_expert is dmc_new.make_expert
    assert mpc.SamplingMPC is mpc_new.SamplingMPC
    assert adroit_facts(get_task("adroit/pen")).name == "pen" and dmc_facts(get_task("dmc/walker-walk")).domain == "walker"
    assert normalized_score(500.0) == 50.0 and all(callable(f) for f in (AdroitSim, DMCSim, MetaWorldSim, load_env))
    np.testing.assert_array_equal(gripper_proprio(np.arange(39.0)), [0, 1, 2, 3])
