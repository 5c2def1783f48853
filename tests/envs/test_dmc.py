"""DMC tasks: registry facts, seeding, action repeat, the success/score rules, experts, demos, CLI."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

import pytest

from theia_eval.cli import main
from theia_eval.envs import get_suite, get_task, make_env
from theia_eval.envs.dataset import open_demos
from theia_eval.envs.demos import DemoConfig, collect, demo_path
from theia_eval.envs.dmc import DMC_TASKS, STATE_DIMS, facts, load_env, state_dim
from theia_eval.envs.dmc.expert import ReacherExpert, make_expert
from theia_eval.envs.family import get_family
from theia_eval.envs.renderer import RenderSpec
from theia_eval.errors import InputError, UnknownNameError
from theia_eval.policies.evaluate import aggregate  # imports torchvision before any GL context

SMALL = RenderSpec("fast", 64, 56)
SUITE = ("dmc/walker-stand", "dmc/walker-walk", "dmc/reacher-easy", "dmc/cheetah-run",
         "dmc/finger-spin")


def test_suite_and_protocol_facts():
    suite = get_suite("cortexbench-dmc")
    assert suite.tasks == SUITE and suite.demos_per_task == 100 and suite.eval_episodes == 10
    repeats = {t: facts(get_task(t)).action_repeat for t in SUITE}
    assert repeats == {"dmc/walker-stand": 2, "dmc/walker-walk": 2, "dmc/reacher-easy": 4,
                       "dmc/cheetah-run": 4, "dmc/finger-spin": 2}
    for name in SUITE:
        spec, dmc = get_task(name), facts(get_task(name))
        assert spec.horizon * dmc.action_repeat == 1000 and spec.proprio_dim == 0
        assert spec.suite == "dmc" and spec.upstream_id.startswith("dmc_")
        env = load_env(dmc)
        model = env.physics.model.ptr
        assert model.camera(0).name == spec.camera  # the protocol's camera_id 0
        assert model.nu == spec.action_dim
        env.close()


@pytest.mark.parametrize("task", sorted(DMC_TASKS))
def test_state_dims_match_models(task):
    dmc = DMC_TASKS[task]
    assert state_dim(dmc) == get_task(f"dmc/{task}").state_dim
    assert STATE_DIMS[dmc.domain] + len(dmc.params) * 2 == get_task(f"dmc/{task}").state_dim


def test_unknown_task_names_suggest_close_ones():
    with pytest.raises(UnknownNameError, match="dmc/walker-walk"):
        get_task("dmc/walker-wlk")
    with pytest.raises(UnknownNameError, match="cortexbench-dmc"):
        get_suite("cortexbench-dcm")


def test_seeded_episodes_repeat_and_differ():
    with make_env("dmc/reacher-easy", resolution=64, crop=56) as env:
        a, b = env.reset(7), env.reset(7)
        c = env.reset(8)
    assert np.array_equal(a["state"], b["state"]) and np.array_equal(a["rgb"], b["rgb"])
    assert not np.allclose(a["state"][-2:], c["state"][-2:])  # another target
    assert a["rgb"].shape == (56, 56, 3) and a["proprio"].shape == (0,)


def test_step_repeats_the_action_and_sums_the_reward():
    """One policy step = action_repeat dm_control steps of the same action, rewards summed."""
    spec = get_task("dmc/cheetah-run")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    ref = load_env(facts(spec))
    sim.reset(3)
    ref.task._random = np.random.RandomState(3)
    ref.reset()
    action = np.linspace(-1, 1, spec.action_dim)
    _, reward, _ = sim.step(action)
    expected = sum(ref.step(action).reward for _ in range(4))
    assert reward == pytest.approx(expected, abs=1e-12)
    assert np.array_equal(sim.data.qpos, ref.physics.data.qpos)
    assert sim.data.time == pytest.approx(4 * ref.control_timestep())
    sim.close()
    ref.close()


def test_dm_control_never_loads_its_gl_backend():
    """dm_control's EGL backend loads libOpenGL globally at import, after which importing
    torchvision segfaults; we render with mujoco.Renderer, so that backend stays disabled.
    (Any GL context created before importing torchvision crashes it too: import it first.)"""
    import subprocess
    import sys

    code = ("from theia_eval.envs import make_env\n"
            "env = make_env('dmc/walker-walk', resolution=32, crop=None); env.reset(0, render=False)\n"
            "import dm_control._render as r; assert r.BACKEND == 'off', r.BACKEND\n"
            "import torchvision; assert env.render().shape == (32, 32, 3); env.close(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_success_flag_only_at_the_end_with_expert_level_return():
    """reacher-easy, horizon 3: the flag is False before the last step; at the last step it is
    return >= 900 x (12 / 1000)."""
    with make_env("dmc/reacher-easy", resolution=64, crop=56, horizon=3) as env:
        env.reset(0, render=False)
        expert = make_expert(facts(env.task))
        total, flags = 0.0, []
        for _ in range(3):
            _, reward, done, info = env.step(expert.get_action(env.raw_state), render=False)
            total += reward
            flags.append(info["success"])
    assert flags[:2] == [False, False] and done
    assert flags[2] == (total >= 900 * 12 / 1000) and info["episode_success"] == flags[2]


def test_score_is_return_over_ten_and_reaches_the_evaluation():
    assert get_family("dmc").score(873.0) == pytest.approx(87.3)
    out = aggregate([{"success": True, "return": 900.0}, {"success": False, "return": 500.0}],
                    "dmc", elapsed=1.0)
    assert out["normalized_score"] == pytest.approx(70.0)
    assert "normalized_score" not in aggregate([{"success": True, "return": 1.0}], "metaworld", 1.0)


def test_reacher_expert_reaches_the_expected_return():
    """A full 1000-step episode (250 policy steps) of the analytic expert scores >= 900."""
    spec = get_task("dmc/reacher-easy")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    expert = make_expert(facts(spec))
    assert isinstance(expert, ReacherExpert)
    returns = []
    for seed in (0, 1):
        state, total = sim.reset(seed), 0.0
        for _ in range(spec.horizon):
            state, reward, info = sim.step(expert.get_action(state))
            total += reward
        returns.append(total)
        assert info["success"]
    sim.close()
    assert min(returns) >= 900


@pytest.mark.parametrize("task", ["walker-stand", "walker-walk", "cheetah-run"])
def test_planning_rewards_are_the_task_rewards(task):
    """The MPC scores rollouts with dm_control's own reward, written on arrays."""
    from theia_eval.envs.dmc.expert import RECIPES

    env = load_env(DMC_TASKS[task], seed=2)
    env.reset()
    rng = np.random.default_rng(0)
    reward_fn = RECIPES[task].reward(env.physics.model.ptr)
    for _ in range(20):
        reward = env.step(rng.uniform(-1, 1, 6)).reward
        data = env.physics.data
        ours = reward_fn(data.qpos[None, None], data.qvel[None, None], data.sensordata[None, None])
        assert ours[0, 0] == pytest.approx(reward, abs=1e-9)
    env.close()


def test_reacher_inverse_kinematics_puts_the_tip_on_the_target():
    expert = ReacherExpert(DMC_TASKS["reacher-easy"])
    target = np.array([0.1, -0.15])
    q = expert.joint_targets(target, np.array([0.0, 0.5]))
    tip = (expert.l1 * np.array([np.cos(q[0]), np.sin(q[0])])
           + expert.l2 * np.array([np.cos(q[0] + q[1]), np.sin(q[0] + q[1])]))
    assert np.allclose(tip, target, atol=1e-9) and q[1] > 0


def test_walker_stand_mpc_gets_up():
    """The MPC expert lifts the walker from a random fallen pose to standing height in 1.5 s."""
    spec = get_task("dmc/walker-stand")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    expert = make_expert(facts(spec), samples=16, horizon=12)
    state = sim.reset(0)
    rewards = []
    for _ in range(30):
        state, reward, _ = sim.step(expert.get_action(state))
        rewards.append(reward)
    height = 1.3 + sim.data.qpos[0]
    sim.close()
    assert height > 1.1 and np.mean(rewards[-5:]) > 1.6  # max 2 per step (repeat 2)


def test_finger_spin_mpc_keeps_the_spinner_above_the_goal_speed():
    """After spinning up, the MPC expert keeps the hinge at <= -15 rad/s most of the time."""
    spec = get_task("dmc/finger-spin")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    expert = make_expert(facts(spec))
    state, rewards = sim.reset(0), []
    for _ in range(120):
        state, reward, _ = sim.step(expert.get_action(state))
        rewards.append(reward)
    sim.close()
    assert np.sum(rewards[60:]) >= 0.7 * 2 * 60  # reward 1 per control step, 2 per policy step


def test_mpc_expert_does_not_touch_the_env_and_resets_per_episode():
    spec = get_task("dmc/finger-spin")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    expert = make_expert(facts(spec), samples=8, horizon=3)
    state = sim.reset(1)
    before = sim.state()
    first = expert.get_action(state)
    assert np.array_equal(sim.state(), before)
    for _ in range(3):
        state, _, _ = sim.step(expert.get_action(state))
    again = expert.get_action(sim.reset(1))  # time went back: a fresh plan and sampler
    sim.close()
    assert np.array_equal(first, again)


def test_unknown_expert_and_bad_mpc_settings():
    from theia_eval.envs.dmc import DMCTask
    from theia_eval.envs.mpc import MPCConfig

    with pytest.raises(InputError, match="no expert for dmc/walker-run"):
        make_expert(DMCTask("walker-run", "walker", "run", 2, "side", 6, 700.0))
    with pytest.raises(InputError, match="samples >= 2"):
        MPCConfig(samples=1)


def test_collect_one_reacher_demo_full_length(tmp_path):
    cfg = DemoConfig(num_demos=1, workers=0, render=SMALL, progress=False, valid_fraction=0.0)
    (report,) = collect(["dmc/reacher-easy"], tmp_path, cfg)
    assert report.demos == 1 and report.path == demo_path(tmp_path, get_task("dmc/reacher-easy"))
    with open_demos(report.path, expect_preset="fast", expect_resolution=64) as demos:
        demo = demos[0]
        assert len(demo) == 250  # post_success_steps never shortens a DMC episode
        assert demo.rewards.sum() >= 900 and demo.success[-1] and not demo.success[:-1].any()
        assert demo.frames(0, 2).shape == (2, 56, 56, 3) and demo.proprio.shape == (250, 0)
        assert demos.meta.camera == "fixed" and demos.meta.suite == "dmc"
        assert demos.meta.source == "privileged expert: inverse kinematics + PD (kp 4.0, kd 0.4)"


def test_demos_of_other_expert_settings_are_refused(tmp_path, monkeypatch):
    from dataclasses import dataclass

    import theia_eval.envs.dmc.expert as dmc_expert

    cfg = DemoConfig(num_demos=1, workers=0, render=SMALL, progress=False, valid_fraction=0.0)
    (report,) = collect(["dmc/reacher-easy"], tmp_path, cfg)
    before = report.path.read_bytes()

    @dataclass(frozen=True)
    class Retuned(dmc_expert.ReacherGains):
        kp: float = 5.0

    monkeypatch.setattr(dmc_expert, "ReacherGains", Retuned)
    with pytest.raises(InputError, match="other settings.*source.*kp 4.0.*kp 5.0"):
        collect(["dmc/reacher-easy"], tmp_path, replace(cfg, num_demos=2))
    assert report.path.read_bytes() == before  # nothing added to, or removed from, the file


def test_cli_lists_and_collects_dmc(tmp_path, capsys):
    assert main(["tasks", "suite=cortexbench-dmc"]) == 0
    out = capsys.readouterr().out
    assert "dmc/cheetah-run" in out and "camera side, horizon 250, action 6, proprio 0, expert" in out
    args = ["demos", "task=dmc/reacher-easy", "num_demos=1", f"out_dir={tmp_path}",
            "resolution=48", "crop=null", "workers=0", "progress=false"]
    assert main(args) == 0
    assert "dmc/reacher-easy: 1 demos (1 new, 0 failed seeds)" in capsys.readouterr().out


def test_replanning_every_k_calls_plans_k_times_less_and_plays_the_plan_between():
    from theia_eval.envs.mpc import MPCConfig

    spec = get_task("dmc/finger-spin")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    every = {k: make_expert(facts(spec), samples=8, horizon=4, replan_every=k) for k in (1, 2)}
    scored = {k: 0 for k in every}
    for k, expert in every.items():
        inner = expert.mpc.scores

        def counting(state, plans, k=k, inner=inner):
            scored[k] += 1
            return inner(state, plans)

        expert.mpc.scores = counting
    state = sim.reset(3)
    actions = {k: [] for k in every}
    for _ in range(6):
        for k, expert in every.items():
            actions[k].append(expert.get_action(state))
        state, _, _ = sim.step(actions[1][-1])
    sim.close()
    assert scored == {1: 6, 2: 3}  # one planning round (iterations=1) per planning call
    assert np.array_equal(actions[1][0], actions[2][0])  # both plan on the first call of the episode
    assert not np.array_equal(actions[1][1], actions[2][1])  # k=2 plays its plan's second knot, unrefined
    with pytest.raises(InputError, match="replan_every"):
        MPCConfig(replan_every=0)
    with pytest.raises(InputError, match="must not exceed the plan's horizon"):
        MPCConfig(horizon=3, replan_every=4)


def test_settled_plans_draw_fewer_samples_until_their_score_drops():
    """settle_samples applies on the call after one whose current plan scored settle_reward or more per scored
    step, and full sampling returns as soon as a plan scores below; off (0) leaves the sampler unchanged."""
    from theia_eval.envs.mpc import MPCConfig

    spec = get_task("dmc/finger-spin")
    sim = spec.make_sim(spec, horizon=spec.horizon)
    experts = {name: make_expert(facts(spec), samples=8, horizon=4, **kw) for name, kw in (
        ("off", {}), ("always", {"settle_samples": 3, "settle_reward": -1.0}),
        ("never", {"settle_samples": 3, "settle_reward": 2.0}),
        ("short", {"settle_samples": 3, "settle_reward": -1.0, "settle_horizon": 2}))}
    drawn, knots = {name: [] for name in experts}, {name: [] for name in experts}
    for name, expert in experts.items():
        inner = expert.mpc.scores

        def recording(state, plans, name=name, inner=inner):
            drawn[name].append(len(plans))
            knots[name].append(plans.shape[1])
            return inner(state, plans)

        expert.mpc.scores = recording
    state, actions = sim.reset(3), {name: [] for name in experts}
    for _ in range(4):
        for name, expert in experts.items():
            actions[name].append(expert.get_action(state))
        state, _, _ = sim.step(actions["off"][-1])
    sim.close()
    assert drawn == {"off": [8] * 4, "always": [8, 3, 3, 3], "never": [8] * 4, "short": [8, 3, 3, 3]}
    assert knots["always"] == [4] * 4 and knots["short"] == [4, 2, 2, 2]  # settled calls score 2 knots of 4
    assert experts["always"].mpc.settled_calls == 3 and experts["never"].mpc.settled_calls == 0
    assert all(np.array_equal(a, b) for a, b in zip(actions["off"], actions["never"]))  # same draws when unsettled
    # a plan that scores below the bar switches full sampling back on for the next call
    from dataclasses import replace

    expert = experts["always"]
    expert.mpc.cfg = replace(expert.mpc.cfg, settle_reward=2.0)  # finger-spin scores at most 1 per step
    sim = spec.make_sim(spec, horizon=spec.horizon)
    state = sim.reset(3)
    for _ in range(4):  # the episode restarts (time went back): the first call samples in full
        state, _, _ = sim.step(expert.get_action(state))
    sim.close()
    assert drawn["always"][4:] == [8, 8, 8, 8]
    expert.mpc.settled = True  # as if the last plan had scored above the bar
    expert.get_action(state)
    expert.get_action(state)
    assert drawn["always"][8:] == [3, 8]
    with pytest.raises(InputError, match="settle_samples"):
        MPCConfig(samples=8, settle_samples=9)
    with pytest.raises(InputError, match="settle_samples"):
        MPCConfig(samples=8, settle_samples=1)
    with pytest.raises(InputError, match="settle_horizon"):
        MPCConfig(horizon=4, settle_horizon=5)


def test_recorded_planner_settings_leave_out_an_off_settled_phase():
    """Demo files record the planner's settings; an option that is off (the settled phase) is left out, so adding
    it did not change the record of any earlier expert, and it is named once it is on."""
    from theia_eval.envs.mpc import MPCConfig, describe

    off = describe(MPCConfig(samples=48, horizon=16, noise=0.5, temperature=0.1))
    assert off == ("horizon 16, iterations 1, noise 0.5, noise_hold 1, replan_every 1, samples 48, seed 0, "
                   "temperature 0.1")
    on = describe(MPCConfig(samples=48, settle_samples=16, settle_reward=0.9))
    assert "settle_samples 16" in on and "settle_reward 0.9" in on and "threads" not in on


def test_coarser_planning_timestep_spans_the_action_repeat():
    """coarsen may exceed the physics steps of one control step (cheetah: 1) as long as it divides the steps a
    policy action is held (x action repeat): the plan's knots then hold fewer, longer steps; the recipe's own
    settings are unchanged (walker-walk: 2 planning steps per control step, reward read once per control step)."""
    from theia_eval.envs.dmc.expert import RECIPES, MPCExpert

    cheetah = facts(get_task("dmc/cheetah-run"))  # 1 physics step of 0.01 s per control step, action repeat 4
    recipe = RECIPES["cheetah-run"]
    for coarsen, knot, every in ((1, 4, 1), (2, 2, 1), (4, 1, 1)):
        expert = MPCExpert(cheetah, replace(recipe, coarsen=coarsen), replace(recipe.mpc, samples=4, horizon=3))
        assert (expert.mpc.knot_steps, expert.mpc.reward_every) == (knot, every)
        assert expert.model.opt.timestep == pytest.approx(0.01 * coarsen)
    walk = MPCExpert(facts(get_task("dmc/walker-walk")), RECIPES["walker-walk"])
    assert (walk.mpc.knot_steps, walk.mpc.reward_every) == (4, 2)  # 10 physics steps x repeat 2 / 5; 2 per control
    # walker-stand plans on a 4x timestep: a 0.025 s control step is 2.5 planning steps, so the reward is read at
    # every planning step
    stand = MPCExpert(facts(get_task("dmc/walker-stand")), RECIPES["walker-stand"])
    assert (stand.mpc.knot_steps, stand.mpc.reward_every) == (5, 1)
    assert stand.model.opt.timestep == pytest.approx(0.0025 * 4)
    with pytest.raises(InputError, match="coarsen=3 must divide the 4 physics steps of a policy step"):
        MPCExpert(cheetah, replace(recipe, coarsen=3))
