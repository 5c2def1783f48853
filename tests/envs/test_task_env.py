"""Single-env interface: observations, seeding, horizon/done, success info, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from theia_eval.envs import make_env
from theia_eval.errors import InputError


@pytest.fixture(scope="module")
def env():
    e = make_env("metaworld/button-press-topdown", resolution=48, crop=40, horizon=200)
    yield e
    e.close()


def test_observation_dict(env):
    obs = env.reset(7)
    assert obs["rgb"].shape == (40, 40, 3) and obs["rgb"].dtype == np.uint8
    assert obs["proprio"].shape == (4,) and obs["proprio"].dtype == np.float32
    assert obs["state"].shape == (39,) and obs["state"].dtype == np.float32
    np.testing.assert_array_equal(obs["proprio"], obs["state"][:4])


def test_same_seed_same_episode(env):
    def roll(seed):
        obs = [env.reset(seed)]
        for a in np.linspace(-1, 1, 12).reshape(3, 4):
            obs.append(env.step(a)[0])
        return obs

    first, again, other = roll(11), roll(11), roll(12)
    for a, b in zip(first, again):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(first[0]["state"], other[0]["state"])  # the seed moves the objects


def test_reset_without_seed_counts_up():
    with make_env("metaworld/button-press-topdown", resolution=32, crop=None, seed=5) as e:
        e.reset()
        e.reset()
        assert e.seed == 6
        assert e.reset(40) is not None and e.seed == 40
        e.reset()
        assert e.seed == 41


def test_done_at_horizon_with_episode_success(env):
    """The expert presses the button; done comes exactly at the horizon, with the summary."""
    task = env.task
    expert = task.make_expert(task)
    env.reset(3, render=False)
    flags, done, info, t = [], False, {}, 0
    while not done:
        _, _, done, info = env.step(expert.get_action(env.raw_state), render=False)
        flags.append(info["success"])
        t += 1
    assert t == env.horizon == 200 and info["t"] == 200
    assert info["episode_success"] is True and info["first_success_step"] == flags.index(True)
    with pytest.raises(InputError, match="episode is over"):
        env.step(np.zeros(4))


def test_bad_actions(env):
    env.reset(0)
    with pytest.raises(InputError, match=r"actions of shape \(4,\), got \(3,\)"):
        env.step(np.zeros(3))
    with pytest.raises(InputError, match="non-finite"):
        env.step(np.array([0, np.nan, 0, 0]))


def test_actions_are_clipped_and_reported_as_executed(env):
    env.reset(0)
    _, _, _, info = env.step(np.array([2.0, -3.0, 0.5, 1.0]))
    assert np.array_equal(info["action"], [1.0, -1.0, 0.5, 1.0])
    state_clipped = env.raw_state.copy()
    env.reset(0)
    env.step(np.array([1.0, -1.0, 0.5, 1.0]))
    assert np.array_equal(env.raw_state, state_clipped)  # the simulator executed the clipped action


def test_step_before_reset_and_bad_horizon():
    with make_env("metaworld/reach", resolution=32, crop=None) as e:
        with pytest.raises(InputError, match="reset"):
            e.step(np.zeros(4))
    with pytest.raises(InputError, match="horizon must be positive"):
        make_env("metaworld/reach", resolution=32, crop=None, horizon=-1)
