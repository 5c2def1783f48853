"""Distilled DMC experts: state features, the weights file, DAgger (improvement, resume, refusals), the expert
kinds of the demo collector and the `experts` verb."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from theia_eval.cli import main
from theia_eval.envs import get_task
from theia_eval.envs.dataset import Episode, write_demos
from theia_eval.envs.demos import DemoConfig, collect_task, demo_path, recipe_meta, run_expert
from theia_eval.envs.dmc import DMC_TASKS, load_env
from theia_eval.envs.dmc.dagger import TRAIN_SEED_BASE, DaggerConfig, train_expert, train_seed
from theia_eval.envs.dmc.policy import (FEATURES, DistilledExpert, StatePolicy, distilled_source, features_of,
                                        load_policy, save_policy)
from theia_eval.envs.env import TaskEnv
from theia_eval.envs.renderer import RenderSpec
from theia_eval.envs.tasks import ExpertChoice, task_expert
from theia_eval.errors import InputError
from theia_eval.policies.evaluate import aggregate  # noqa: F401  (imports torchvision before any GL context)

REACHER = DMC_TASKS["reacher-easy"]
# tiny DAgger settings on reacher-easy, labelled by its analytic expert (free labels)
TINY = dict(task="dmc/reacher-easy", rounds=4, episodes_per_round=2, hidden=(64, 64), train_steps=1000,
            eval_episodes=4, time_demo=False, progress=False)


def random_policy(task, seed: int = 0, hidden=(8,)) -> StatePolicy:
    rng = np.random.default_rng(seed)
    feats = features_of(task)
    n_in = feats.size(get_task(f"dmc/{task.name}").state_dim)
    sizes = [n_in, *hidden, task.action_dim]
    layers = [(rng.normal(size=(b, a)), rng.normal(size=b)) for a, b in zip(sizes[:-1], sizes[1:])]
    return StatePolicy(task, feats, rng.normal(size=n_in), rng.uniform(0.5, 2.0, n_in), layers)


# ------------------------------------------------------------------------------------------- features
@pytest.mark.parametrize("name", sorted(DMC_TASKS))
def test_features_drop_root_x_and_give_free_angles_as_sin_cos(name):
    task = DMC_TASKS[name]
    feats = FEATURES[task.domain]
    env = load_env(task)
    model = env.physics.model.ptr
    joints = [model.joint(i).name for i in range(model.njnt)]
    env.close()
    assert feats.nq == model.nq
    assert [joints[i] for i in feats.drop_qpos] == (["rootx"] if task.domain in ("walker", "cheetah") else [])
    assert [joints[i] for i in feats.angle_qpos] == {"walker": ["rooty"], "cheetah": ["rooty"], "finger": ["hinge"],
                                                     "reacher": ["shoulder", "wrist"]}[task.domain]
    spec = get_task(f"dmc/{name}")
    state = np.random.default_rng(1).normal(size=(3, spec.state_dim))
    out = feats(state)
    assert out.shape == (3, feats.size(spec.state_dim))
    moved = state.copy()
    for i in feats.drop_qpos:
        moved[:, 1 + i] += 5.0  # far along x
    for i in feats.angle_qpos:
        moved[:, 1 + i] += 2 * np.pi  # one more turn
    moved[:, 0] += 3.0  # later in time
    np.testing.assert_allclose(feats(moved), out, atol=1e-12)


def test_training_seeds_never_meet_demo_or_evaluation_seeds():
    seeds = {train_seed(0, r, e) for r in range(20) for e in range(10)}
    assert len(seeds) == 200 and min(seeds) >= TRAIN_SEED_BASE and max(seeds) < 2 ** 32
    assert train_seed(0, 1, 2) == train_seed(0, 1, 2) != train_seed(1, 1, 2)


# ------------------------------------------------------------------------------------------- weights
def test_weights_round_trip_and_source_names_the_weights(tmp_path):
    policy = random_policy(REACHER)
    path = tmp_path / "reacher-easy.safetensors"
    save_policy(policy, path, {"labeller": "privileged expert: test labeller"})
    loaded = load_policy(path, REACHER)
    states = np.random.default_rng(2).normal(size=(16, get_task("dmc/reacher-easy").state_dim))
    as_float32 = StatePolicy(REACHER, policy.features, *[np.float32(a) for a in (policy.mean, policy.std)],
                             [(np.float32(w), np.float32(b)) for w, b in policy.layers])
    np.testing.assert_array_equal(loaded(states), as_float32(states))
    assert loaded(states).shape == (16, 2) and np.abs(loaded(states)).max() <= 1.0
    assert loaded.hidden == (8,) and loaded.meta["labeller"] == "privileged expert: test labeller"
    # the folder form finds <task>.safetensors; the source names the network, the labeller and the weights
    source = distilled_source(REACHER, str(tmp_path))
    assert "MLP (8, elu)" in source and "test labeller" in source and "weights sha256" in source
    save_policy(random_policy(REACHER, seed=1), path, {"labeller": "privileged expert: test labeller"})
    assert distilled_source(REACHER, str(tmp_path)) != source  # other weights: another source, never mixed
    expert = DistilledExpert(REACHER, str(path))
    np.testing.assert_array_equal(expert.get_action(states[0]), expert.policy(states[0]))


def test_bad_weights_files_are_refused_clearly(tmp_path):
    with pytest.raises(InputError, match=r"no distilled expert weights for dmc/reacher-easy .*theia-eval experts "
                                         r"task=dmc/reacher-easy"):
        load_policy(tmp_path / "missing.safetensors", REACHER)
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_policy(text, REACHER)
    finger = DMC_TASKS["finger-spin"]
    save_policy(random_policy(finger), tmp_path / "finger-spin.safetensors", {})
    with pytest.raises(InputError, match="holds the distilled expert of dmc/finger-spin, not dmc/reacher-easy"):
        load_policy(tmp_path / "finger-spin.safetensors", REACHER)
    bad = random_policy(REACHER)
    bad.layers[0] = (bad.layers[0][0][:, :-1], bad.layers[0][1])  # one input too few
    save_policy(bad, tmp_path / "short.safetensors", {})
    with pytest.raises(InputError, match="do not map the 8 state features of dmc/reacher-easy"):
        load_policy(tmp_path / "short.safetensors", REACHER)
    from theia_eval.io import save_safetensors
    import torch

    save_safetensors({"w": torch.zeros(2)}, tmp_path / "other.safetensors", {"format": "something else"})
    with pytest.raises(InputError, match="is not a distilled DMC expert"):
        load_policy(tmp_path / "other.safetensors", REACHER)


# ------------------------------------------------------------------------------------------- DAgger
def test_dagger_improves_the_policy_on_reacher(tmp_path):
    """4 rounds x 2 labelled episodes: the policy alone goes from about nothing to a clearly better return, and the
    published weights are the selected round's."""
    report = train_expert(DaggerConfig(out_dir=str(tmp_path), **TINY))
    means = [r["eval_mean"] for r in report["rounds"]]
    assert means[0] < 30 and max(means[1:]) > means[0] + 80, means
    assert report["selected_round"] == int(np.argmax(means)) and report["eval"]["mean"] == max(means)
    assert [r["labels_total"] for r in report["rounds"]] == [500, 1000, 1500, 2000]
    assert [r["beta"] for r in report["rounds"]] == [1.0, 0.5, 0.25, 0.125]
    assert report["labeller"]["labels"] == 2000 and report["labeller"]["seconds_per_label"] > 0
    assert min(report["labeller"]["round0_returns"]) > 900  # round 0: the analytic expert alone
    on_disk = json.loads((tmp_path / "reacher-easy" / "report.json").read_text())
    assert on_disk["eval"] == report["eval"]
    # the published expert acts as evaluated: its return on the first evaluation seed is the report's
    spec = get_task("dmc/reacher-easy")
    with TaskEnv(spec, RenderSpec("fast", 32, None)) as env:
        run = run_expert(env, task_expert(spec, ExpertChoice("distilled", str(tmp_path))),
                         report["eval"]["seeds"][0], None)
    assert sum(run.rewards) == pytest.approx(report["eval"]["returns"][0])
    # a rerun finds every round done: nothing is labelled again, the figures are the same
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "reacher-easy").rglob("episode_*.npz")}
    again = train_expert(DaggerConfig(out_dir=str(tmp_path), **TINY))
    assert again["rounds"] == report["rounds"]
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_resumed_dagger_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    small = dict(TINY, episode_steps=40, hidden=(16,), train_steps=40, eval_episodes=1)
    whole = train_expert(DaggerConfig(out_dir=str(tmp_path / "whole"), **dict(small, rounds=3)))
    train_expert(DaggerConfig(out_dir=str(tmp_path / "parts"), **dict(small, rounds=2)))
    (tmp_path / "parts" / "reacher-easy" / "round_002").mkdir()
    (tmp_path / "parts" / "reacher-easy" / "round_002" / ".episode_000.npz.999999.tmp").write_text("killed")
    resumed = train_expert(DaggerConfig(out_dir=str(tmp_path / "parts"), **dict(small, rounds=3)))
    assert resumed["rounds"] == whole["rounds"]
    for r in range(3):
        a = load_policy(tmp_path / "whole" / "reacher-easy" / f"round_{r:03d}" / "policy.safetensors", REACHER)
        b = load_policy(tmp_path / "parts" / "reacher-easy" / f"round_{r:03d}" / "policy.safetensors", REACHER)
        assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(a.layers, b.layers))
    assert not list((tmp_path / "parts" / "reacher-easy" / "round_002").glob(".*.tmp"))
    # other settings in the same folder are refused; evaluation settings may change
    with pytest.raises(InputError, match="holds a DAgger run with other settings.*hidden"):
        train_expert(DaggerConfig(out_dir=str(tmp_path / "parts"), **dict(small, rounds=3, hidden=(32,))))
    wider = train_expert(DaggerConfig(out_dir=str(tmp_path / "parts"), **dict(small, rounds=3, eval_episodes=2)))
    assert len(wider["eval"]["returns"]) == 2


def test_dagger_refuses_bad_tasks_and_settings(tmp_path):
    for task in ("metaworld/drawer-open", "dmc/walker-run", "walker-stand"):
        with pytest.raises(InputError, match="distilled experts are trained for DMC tasks only"):
            train_expert(DaggerConfig(out_dir=str(tmp_path), **dict(TINY, task=task)))
    with pytest.raises(InputError, match=r"unknown MPC settings \['sampels'\]"):
        train_expert(DaggerConfig(out_dir=str(tmp_path), **dict(TINY, task="dmc/finger-spin",
                                                                  planner={"sampels": 8})))
    with pytest.raises(InputError, match="analytic .* takes no MPC settings"):
        train_expert(DaggerConfig(out_dir=str(tmp_path), **dict(TINY, planner={"samples": 8})))
    with pytest.raises(InputError, match="select must be best or last"):
        DaggerConfig(**dict(TINY, select="first"))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------- demos
def test_demo_files_record_which_expert_made_them_and_never_mix(tmp_path):
    spec = get_task("dmc/reacher-easy")
    weights = tmp_path / "weights"
    save_policy(random_policy(REACHER), weights / "reacher-easy.safetensors", {"labeller": "test"})
    analytic = recipe_meta(spec, DemoConfig())
    distilled = recipe_meta(spec, DemoConfig(expert="distilled", expert_weights=str(weights)))
    per_task = recipe_meta(spec, DemoConfig(expert={"dmc/reacher-easy": "distilled"}, expert_weights=str(weights)))
    assert "inverse kinematics" in analytic.source and "distilled expert" in distilled.source
    assert per_task.source == distilled.source and not analytic.same_recipe(distilled)
    assert recipe_meta(spec, DemoConfig(expert={"dmc/finger-spin": "distilled"})).source == analytic.source
    # a file of the analytic expert is refused when the distilled one is asked for (and the reverse)
    cfg = DemoConfig(num_demos=2, workers=0, progress=False, render=RenderSpec("fast", 32, None), horizon=3)
    rng = np.random.default_rng(0)
    episode = Episode(rgb=np.zeros((3, 32, 32, 3), np.uint8), proprio=np.zeros((3, 0), np.float32),
                      state=rng.normal(size=(3, spec.state_dim)).astype(np.float32),
                      actions=np.zeros((3, 2), np.float32), rewards=np.ones(3, np.float32),
                      success=np.array([False, False, True]), seed=54321)
    path = demo_path(tmp_path / "demos", spec)
    write_demos(path, [episode], replace(recipe_meta(spec, cfg), seeds=(54321,)), valid_fraction=0.0)
    with pytest.raises(InputError, match="holds demos made with other settings.*source"):
        collect_task(spec, tmp_path / "demos", replace(cfg, expert="distilled", expert_weights=str(weights)))
    write_demos(path, [episode], replace(recipe_meta(spec, replace(cfg, expert="distilled",
                                                                     expert_weights=str(weights))), seeds=(54321,)),
                valid_fraction=0.0)
    with pytest.raises(InputError, match="holds demos made with other settings.*source"):
        collect_task(spec, tmp_path / "demos", cfg)


def test_the_collector_runs_the_distilled_expert(tmp_path):
    spec = get_task("dmc/reacher-easy")
    save_policy(random_policy(REACHER), tmp_path / "reacher-easy.safetensors", {})
    expert = task_expert(spec, ExpertChoice("distilled", str(tmp_path)))
    with TaskEnv(spec, RenderSpec("fast", 32, None), horizon=5) as env:
        run = run_expert(env, expert, 3, None)
    np.testing.assert_array_equal(np.asarray(run.actions), [expert.policy(s) for s in run.states[:-1]])


@pytest.mark.parametrize("words, message", [
    (["experts"], "name the task: theia-eval experts task=dmc/<task>"),
    (["experts", "task=metaworld/drawer-open"], "distilled experts are trained for DMC tasks only"),
    (["experts", "task=dmc/reacher-easy", "select=first"], "select='first'"),
    (["experts", "task=dmc/finger-spin", "planner={sampels: 8}"], "unknown MPC settings"),
    (["demos", "task=dmc/reacher-easy", "expert=distilled", "expert_weights={case}/none"],
     "no distilled expert weights for dmc/reacher-easy"),
    (["demos", "task=dmc/reacher-easy", "expert=planner"], "dmc/reacher-easy has no 'planner' expert; its experts: "
                                                             "analytic, distilled"),
    (["demos", "task=metaworld/drawer-open", "expert=distilled"], "metaworld/drawer-open has no 'distilled' expert; "
                                                                  "it has one expert"),
    (["demos", "task=dmc/walker-stand", "expert={dmc/walker-stnd: distilled}"], "unknown task 'dmc/walker-stnd'"),
])
def test_cli_bad_expert_inputs_exit_2_and_write_nothing(tmp_path, capsys, words, message):
    case = tmp_path / "case"
    words = [w.replace("{case}", str(case)) for w in words]
    out = ["out_dir=" + str(case / "out")]
    assert main([*words, *out, *(["workers=0"] if words[0] == "demos" else [])]) == 2
    assert message in capsys.readouterr().err
    assert not (case / "out").exists() or not any((case / "out").rglob("*"))


# ------------------------------------------------------------------------------------------- guided
def test_guided_planner_samples_around_the_policys_open_loop_plan(tmp_path):
    """The prior is the policy's own open-loop rollout on the planning model; the candidates are the warm-started
    plan, the prior and perturbations of the prior; the source names the settings and the weights."""
    import mujoco
    from mujoco import rollout

    from theia_eval.envs.dmc.guided import GUIDED_SAMPLES, GuidedExpert

    finger = DMC_TASKS["finger-spin"]
    save_policy(random_policy(finger, hidden=(16,)), tmp_path / "finger-spin.safetensors", {"labeller": "test"})
    spec = get_task("dmc/finger-spin")
    expert = task_expert(spec, ExpertChoice("guided", str(tmp_path)))
    assert isinstance(expert, GuidedExpert) and expert.mpc.cfg.samples == GUIDED_SAMPLES["finger-spin"] == 48
    sim = spec.make_sim(spec, horizon=10)
    state = sim.reset(5)
    sim.close()
    prior = expert.policy_plan(state, np.zeros(0))
    controls = np.repeat(prior, expert.mpc.knot_steps, axis=0)
    states, _ = rollout.rollout(expert.model, mujoco.MjData(expert.model), state[None], controls[None])
    for k in range(1, len(prior)):  # the state at the start of knot k, and the policy's action there
        at = states[0, k * expert.mpc.knot_steps - 1]
        np.testing.assert_allclose(expert.policy(at), prior[k], atol=1e-9)
    expert.mpc.prior = prior
    plans = expert.mpc.candidates()
    assert plans.shape == (48, 7, 2) and expert.mpc.prior is None  # later refinement rounds: around the plan
    np.testing.assert_array_equal(plans[0], expert.mpc.plan)
    np.testing.assert_array_equal(plans[1], np.clip(prior, -1, 1))
    assert np.abs(np.median(plans[2:], axis=0) - prior).mean() < np.abs(np.median(plans[2:], axis=0)).mean()
    action = expert.get_action(state)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    source = spec.expert_source(spec, ExpertChoice("guided", str(tmp_path)))
    assert source.startswith("guided expert: sampling MPC (horizon 7") and "samples 48" in source
    assert "weights sha256" in source and source != spec.expert_source(spec, ExpertChoice("distilled", str(tmp_path)))
    with pytest.raises(InputError, match="dmc/reacher-easy has no 'guided' expert"):
        task_expert(get_task("dmc/reacher-easy"), ExpertChoice("guided", str(tmp_path)))
