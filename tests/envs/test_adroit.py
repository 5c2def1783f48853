"""Adroit tasks: protocol facts, seeding, the success rule, expert rewards, the Minari importer."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from theia_eval.envs import get_suite, get_task, make_env
from theia_eval.envs.adroit import ADROIT_TASKS, AdroitSim
from theia_eval.envs.adroit.importer import import_minari_adroit, main
from theia_eval.envs.dataset import dataset_info, open_demos
from theia_eval.envs.adroit.expert import (PEN_SENSORS, RELOCATE_SENSORS, make_expert, pen_reward,
                                          relocate_reward)
from theia_eval.envs.renderer import FrameRenderer, RenderSpec
from theia_eval.envs.simstate import set_param_values, split_state
from theia_eval.errors import InputError, UnknownNameError

SMALL = RenderSpec("fast", 64, 56)


def test_suite_and_protocol_facts():
    suite = get_suite("cortexbench-adroit")
    assert suite.tasks == ("adroit/pen", "adroit/relocate") and suite.demos_per_task == 100
    expected = {"adroit/pen": (100, 24, 24), "adroit/relocate": (200, 30, 30)}
    for name, (horizon, proprio, action) in expected.items():
        spec = get_task(name)
        assert (spec.horizon, spec.proprio_dim, spec.action_dim) == (horizon, proprio, action)
        sim = spec.make_sim(spec)
        cam = sim.model.camera(spec.camera)
        assert spec.camera == "vil_camera" and np.allclose(cam.pos, [0, -1.2, 1.2])
        assert np.allclose(cam.quat, [0.92388, 0.382683, 0, 0], atol=1e-5)
        assert sim.reset(0).shape == (spec.state_dim,)
        sim.close()
    with pytest.raises(UnknownNameError, match="adroit/relocate"):
        get_task("adroit/relocat")


def test_seeds_repeat_and_proprio_is_the_hand_qpos():
    with make_env("adroit/relocate", resolution=64, crop=56) as env:
        a, b, c = env.reset(5), env.reset(5), env.reset(6)
        assert np.array_equal(a["state"], b["state"]) and np.array_equal(a["rgb"], b["rgb"])
        assert not np.allclose(a["state"][-6:], c["state"][-6:])  # other ball and target
        assert np.allclose(c["proprio"], env.sim.data.qpos[:30]) and c["rgb"].shape == (56, 56, 3)


def align_pen_goal(sim: AdroitSim) -> None:
    """Make the goal orientation the pen's current one (the pen rests at the goal position)."""
    import mujoco

    sim.model.body_quat[sim.env.target_obj_body_id] = sim.data.xquat[sim.env.obj_body_id]
    mujoco.mj_forward(sim.model, sim.data)


def hold_action(sim: AdroitSim) -> np.ndarray:
    """The normalized action whose position targets are the current joint angles."""
    env = sim.env
    return np.clip((sim.data.actuator_length - env.act_mean) / env.act_rng, -1.0, 1.0)


def test_goal_rule_matches_the_env_and_the_flag_counts_goal_steps():
    """Flag = goal achieved on more than 20 steps so far; episode success = flag at the end."""
    with make_env("adroit/pen", resolution=32, crop=None, horizon=22) as env:
        env.reset(0, render=False)
        align_pen_goal(env.sim)
        hold, flags = hold_action(env.sim), []
        for _ in range(22):
            _, _, done, info = env.step(hold, render=False)
            flags.append(info["success"])
            assert env.sim.goal_achieved()
        assert flags == [False] * 20 + [True, True] and done
        assert info["episode_success"] and info["first_success_step"] == 20


def test_planning_rewards_equal_the_env_rewards():
    """The MPC rewards read the right positions: with the env's weights they equal its reward."""
    from mujoco import rollout

    shaped = {"pen": pen_reward, "relocate": relocate_reward}
    for name, sensors in (("pen", PEN_SENSORS), ("relocate", RELOCATE_SENSORS)):
        spec = get_task(f"adroit/{name}")
        sim, expert = spec.make_sim(spec), make_expert(ADROIT_TASKS[name])
        state = sim.reset(3)
        actions = np.random.default_rng(0).uniform(-0.3, 0.3, (10, spec.action_dim))
        env_rewards = [sim.step(a)[1] for a in actions]
        physics, params = split_state(expert.task.params, state)
        set_param_values(expert.task.params, expert.model, params)
        ctrl = np.repeat(expert.act_mean + actions * expert.act_rng, 5, axis=0)[None]
        _, sensordata = rollout.rollout(expert.model, expert.mpc.datas, physics[None], ctrl)
        index = np.concatenate([expert.model.sensor(f"plan_{k}").adr[0] + np.arange(3)
                                for k in sensors])
        picked = sensordata[0, 4::5][:, index]
        if name == "pen":  # the env's weights: distance 1, drop below z 0.075
            ours = shaped[name](sim.env.pen_length, sim.env.tar_length, 0.075, 1.0)(None, None, picked)
        else:  # gymnasium-robotics 1.4.2 rewards +0.1 |palm - ball| (D4RL: -0.1)
            ours = shaped[name](None, None, picked, reach_weight=-0.1, hold_radius=np.inf, push_weight=0.0,
                                fall_penalty=0.0)
        assert np.allclose(ours, env_rewards, atol=1e-9)
        sim.close()


def test_relocate_planning_reward_credits_only_a_held_ball_and_costs_pushes_and_drops():
    """The shaping against the ways the planner lost the ball: a ball off the table but away from the palm (flung)
    earns no carry credit, moving it on the table costs, and a ball below the table surface costs."""
    def sensors(palm, obj, target):
        return np.array([[*palm, *obj, *target]], dtype=np.float64)

    target, qpos = (0.0, 0.0, 0.3), np.zeros((1, 36))
    held = relocate_reward(qpos, None, sensors((0.1, 0.0, 0.1), (0.1, 0.0, 0.12), target))
    flung = relocate_reward(qpos, None, sensors((0.5, 0.0, 0.1), (0.1, 0.0, 0.12), target))
    env_flung = relocate_reward(qpos, None, sensors((0.5, 0.0, 0.1), (0.1, 0.0, 0.12), target),
                                hold_radius=np.inf, push_weight=0.0, fall_penalty=0.0)
    # the env's reward would credit the flung ball's carry term (1 - 0.5|palm - target| - 0.5|ball - target|)
    assert env_flung[0] - flung[0] == pytest.approx(1.0 - 0.5 * np.linalg.norm([0.5, 0.0, -0.2])
                                                     - 0.5 * np.linalg.norm([0.1, 0.0, -0.18]))
    assert held[0] > flung[0]
    on_table = sensors((0.3, 0.0, 0.1), (0.1, 0.0, 0.035), target)
    pushed = qpos.copy()
    pushed[0, 30:32] = (0.06, 0.08)  # the ball slid 0.1 m on the table
    assert relocate_reward(qpos, None, on_table)[0] - relocate_reward(pushed, None, on_table)[0] \
        == pytest.approx(2.0 * 0.1)
    dropped = sensors((0.3, 0.0, 0.1), (0.1, 0.0, -0.5), target)
    assert relocate_reward(qpos, None, dropped, push_weight=0.0)[0] == pytest.approx(
        relocate_reward(qpos, None, dropped, push_weight=0.0, fall_penalty=0.0)[0] - 5.0)


def test_pen_expert_turns_the_pen_towards_the_goal():
    spec = get_task("adroit/pen")
    sim = spec.make_sim(spec)
    expert = make_expert(ADROIT_TASKS["pen"], samples=16)
    state = sim.reset(1)
    goals = []
    for _ in range(25):
        state, _, info = sim.step(expert.get_action(state))
        goals.append(info["goal_achieved"])
    sim.close()
    assert any(goals)


# -------------------------------------------------------------------------------- importer
def record(task: str, seed: int, steps: int, prepare=None) -> dict:
    """One episode in the Minari layout, recorded from our env (env.get_env_state per step)."""
    sim = AdroitSim(ADROIT_TASKS[task])
    sim.reset(seed)
    if prepare is not None:
        prepare(sim)
    env, rng, hold = sim.env, np.random.default_rng(seed), hold_action(sim)
    obs, states, success, actions, rewards = [env._get_obs()], [env.get_env_state()], [False], [], []
    for _ in range(steps):
        action = rng.uniform(-0.05, 0.05, env.model.nu) if prepare is None else hold
        o, r, _, _, info = env.step(action)
        obs.append(o), states.append(env.get_env_state()), success.append(info["success"])
        actions.append(action), rewards.append(r)
    sim.close()
    return {"observations": np.array(obs), "actions": np.array(actions, dtype=np.float32),
            "rewards": np.array(rewards), "success": np.array(success), "seed": seed,
            "states": {k: np.array([s[k] for s in states]) for k in states[0]}}


def write_minari(root, episodes: list[dict], env_id: str, layout: str = "json",
                 state_key: str = "state", dataset_id: str = "D4RL/pen/expert-v2"):
    """A Minari dataset directory: data/main_data.hdf5 (+ metadata.json, or root attributes)."""
    import gymnasium as gym

    from theia_eval.envs.adroit import make_gym_env

    make_gym_env(ADROIT_TASKS["pen"]).close()  # registers the Adroit ids
    spec = gym.spec(env_id.replace("-v2", "-v1")).to_json().replace("-v1\"", f"-{env_id[-2:]}\"", 1)
    meta = {"dataset_id": dataset_id, "env_spec": spec, "total_episodes": len(episodes),
            "total_steps": sum(len(e["actions"]) for e in episodes), "minari_version": "0.5.2"}
    (root / "data").mkdir(parents=True)
    with h5py.File(root / "data" / "main_data.hdf5", "w") as f:
        for i, ep in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g.attrs.update({"id": i, "total_steps": len(ep["actions"]), "seed": ep["seed"]})
            for key in ("observations", "actions", "rewards"):
                g[key] = ep[key]
            g["terminations"] = np.zeros(len(ep["actions"]), dtype=bool)
            g["truncations"] = np.arange(len(ep["actions"])) == len(ep["actions"]) - 1
            g["infos/success"] = ep["success"]
            for k, v in ep["states"].items():
                g[f"{state_key}/{k}"] = v
        if layout == "attrs":
            f.attrs.update({k: v for k, v in meta.items() if k != "total_episodes"})
    if layout == "json":
        (root / "metadata.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def pen_episodes():
    """A successful pen episode (goal aligned, 25 goal steps) and a failing one (random goal)."""
    return [record("pen", 11, 25, prepare=align_pen_goal), record("pen", 12, 25)]


@pytest.mark.parametrize("layout,state_key", [("json", "state"), ("attrs", "infos/state")])
def test_import_pen_round_trip(tmp_path, pen_episodes, layout, state_key):
    src = write_minari(tmp_path / "pen", pen_episodes, "AdroitHandPen-v1", layout, state_key)
    out = tmp_path / "pen.hdf5"
    report = import_minari_adroit(src, "adroit/pen", out, render=SMALL, valid_fraction=0.0)
    assert (report.demos, report.skipped_failed, report.dataset_id) == (1, 1, "D4RL/pen/expert-v2")
    ep = pen_episodes[0]
    with open_demos(out, expect_preset="fast", expect_resolution=64, expect_crop=56) as demos:
        demo = demos[0]
        assert demos.meta.source == "minari:D4RL/pen/expert-v2" and demos.meta.seeds == (11,)
        assert demos.meta.camera == "vil_camera" and len(demo) == 25 and demo.seed == 11
        assert np.allclose(demo.proprio, ep["states"]["qpos"][:25, :24], atol=1e-6)
        assert np.array_equal(demo.actions, ep["actions"])
        assert np.allclose(demo.rewards, ep["rewards"], atol=1e-5)
        assert demo.first_success_step == 20 and demo.success[-1]
        frames = demo.frames()
    sim = AdroitSim(ADROIT_TASKS["pen"])
    sim.reset(0)
    renderer = FrameRenderer(sim.model, SMALL)
    for t in (0, 12, 24):  # what our env shows at the recorded states
        sim.env.set_env_state({k: v[t] for k, v in ep["states"].items()})
        assert np.array_equal(frames[t], renderer.render(sim.data, "vil_camera"))
    renderer.close()
    sim.close()
    assert dataset_info(out)["demos"] == 1


def test_import_stores_the_actions_the_simulator_executed(tmp_path, pen_episodes):
    """Minari records the policy's raw actions; the demo file holds them clipped to [-1, 1] as Adroit executes them."""
    ep = dict(pen_episodes[0])
    raw = np.linspace(-3, 3, ep["actions"].size, dtype=np.float32).reshape(ep["actions"].shape)
    src = write_minari(tmp_path / "pen", [{**ep, "actions": raw}], "AdroitHandPen-v1", "json", "state")
    import_minari_adroit(src, "adroit/pen", tmp_path / "pen.hdf5", render=SMALL, valid_fraction=0.0)
    with open_demos(tmp_path / "pen.hdf5") as demos:
        assert np.array_equal(demos[0].actions, np.clip(raw, -1, 1)[:25]) and (np.abs(raw) > 1).mean() > 0.5


def test_import_relocate_recovers_the_ball_placement(tmp_path):
    def slide_ball(sim):  # the ball starts displaced from its body position: qpos slides != 0
        qpos, qvel = sim.data.qpos.copy(), sim.data.qvel.copy()
        qpos[30:33] = [0.03, -0.02, 0.0]
        sim.env.set_state(qpos, qvel)

    ep = record("relocate", 4, 6, prepare=slide_ball)
    sim = AdroitSim(ADROIT_TASKS["relocate"])
    sim.reset(4)
    body, target = sim.model.body("Object").pos.copy(), sim.data.site_xpos[sim.env.target_obj_site_id].copy()
    src = write_minari(tmp_path / "reloc", [ep], "AdroitHandRelocate-v1",
                       dataset_id="D4RL/relocate/expert-v2")
    out = tmp_path / "relocate.hdf5"
    report = import_minari_adroit(src, "adroit/relocate", out, render=SMALL, successful_only=False)
    assert report.demos == 1 and report.skipped_failed == 0
    with open_demos(out) as demos:
        state = demos[0].state
        assert np.allclose(state[:, -6:-3], body, atol=1e-6) and np.allclose(state[:, -3:], target, atol=1e-6)
        frame0 = demos[0].frames(0, 1)[0]
    sim.set_state(state[0].astype(np.float64))
    renderer = FrameRenderer(sim.model, SMALL)
    assert np.abs(renderer.render(sim.data, "vil_camera").astype(int) - frame0).max() <= 2
    renderer.close()
    sim.close()


def test_import_refuses_other_envs_versions_and_bad_files(tmp_path, pen_episodes):
    out = tmp_path / "out.hdf5"
    door = write_minari(tmp_path / "door", pen_episodes[:1], "AdroitHandDoor-v1")
    with pytest.raises(InputError, match="not an adroit/pen dataset"):
        import_minari_adroit(door, "adroit/pen", out, render=SMALL)
    pen = write_minari(tmp_path / "pen", pen_episodes[:1], "AdroitHandPen-v1")
    with pytest.raises(InputError, match="not an adroit/relocate dataset"):
        import_minari_adroit(pen, "adroit/relocate", out, render=SMALL)
    with pytest.raises(InputError, match="not an Adroit task"):
        import_minari_adroit(pen, "dmc/walker-walk", out, render=SMALL)
    with pytest.raises(InputError, match="does not exist"):
        import_minari_adroit(tmp_path / "nothing.hdf5", "adroit/pen", out, render=SMALL)
    assert not out.exists()


def test_import_refuses_another_version(tmp_path, pen_episodes):
    v2 = write_minari(tmp_path / "v2", pen_episodes[:1], "AdroitHandPen-v2")
    with pytest.raises(InputError, match="AdroitHandPen-v2.*other versions"):
        import_minari_adroit(v2, "adroit/pen", tmp_path / "o.hdf5", render=SMALL)


def test_import_detects_misaligned_or_missing_states(tmp_path, pen_episodes):
    shifted = dict(pen_episodes[0], observations=np.roll(pen_episodes[0]["observations"], 1, axis=0))
    src = write_minari(tmp_path / "shifted", [shifted], "AdroitHandPen-v1")
    out = tmp_path / "o.hdf5"
    with pytest.raises(InputError, match="recorded observation does not match"):
        import_minari_adroit(src, "adroit/pen", out, render=SMALL)
    assert not out.exists()  # atomic: nothing half-written
    src = write_minari(tmp_path / "nostate", pen_episodes[:1], "AdroitHandPen-v1", state_key="extra")
    with pytest.raises(InputError, match="did not record simulator states"):
        import_minari_adroit(src, "adroit/pen", out, render=SMALL)
    flat = tmp_path / "pen-expert-v1.hdf5"
    with h5py.File(flat, "w") as f:  # the original D4RL layout: flat arrays, infos/qpos ...
        f["observations"], f["infos/qpos"] = np.zeros((3, 45)), np.zeros((3, 30))
    with pytest.raises(InputError, match="original D4RL"):
        import_minari_adroit(flat, "adroit/pen", out, render=SMALL)


def test_import_command_line(tmp_path, pen_episodes, capsys):
    src = write_minari(tmp_path / "pen", pen_episodes[:1], "AdroitHandPen-v1")
    out = tmp_path / "cli.hdf5"
    assert main([str(src), "--task", "adroit/pen", "--out", str(out), "--resolution", "48",
                 "--crop", "40"]) == 0
    assert "1 demos (0 failing the success rule skipped)" in capsys.readouterr().out
    with open_demos(out) as demos:
        assert demos[0].frames(0, 1).shape == (1, 40, 40, 3)


def test_demos_verb_imports_minari_adroit(tmp_path, pen_episodes, capsys):
    """`theia-eval demos --import DIR task=adroit/pen out=...` runs the Minari importer with the config's render."""
    from theia_eval.cli import main as cli

    src = write_minari(tmp_path / "pen", pen_episodes, "AdroitHandPen-v1")
    out = tmp_path / "verb.hdf5"
    assert cli(["demos", "--import", str(src), "task=adroit/pen", f"out={out}", "resolution=48", "crop=40",
                "valid_fraction=0"]) == 0
    assert "1 demos (1 failing the success rule skipped)" in capsys.readouterr().out
    with open_demos(out) as demos:
        assert len(demos) == 1 and demos[0].frames(0, 1).shape == (1, 40, 40, 3)
    both = tmp_path / "both.hdf5"
    assert cli(["demos", "--import", str(src), "task=adroit/pen", f"out={both}", "resolution=48", "crop=40",
                "keep_failed=true", "import_num_demos=2"]) == 0
    with open_demos(both) as demos:
        assert len(demos) == 2
    # a Minari dataset given for a Meta-World task, and another env's dataset: clear errors, no output
    bad = tmp_path / "bad.hdf5"
    assert cli(["demos", "--import", str(src), "task=metaworld/hammer", f"out={bad}"]) == 2
    assert "imports only into adroit/pen or adroit/relocate" in capsys.readouterr().err
    assert cli(["demos", "--import", str(src), "task=adroit/relocate", f"out={bad}", "resolution=48",
                "crop=40"]) == 2
    assert "AdroitHandPen-v1" in capsys.readouterr().err
    assert not bad.exists()
