"""VectorEnv: subprocess workers in lock-step match single environments exactly."""
from __future__ import annotations

import numpy as np
import pytest

from theia_eval.envs import VectorEnv, make_env
from theia_eval.envs.vector import EnvWorkerError
from theia_eval.errors import InputError

TASK = "metaworld/drawer-open"
KW = dict(resolution=48, crop=40)


def _single_rollout(seed: int, actions: np.ndarray) -> list[dict]:
    with make_env(TASK, **KW) as env:
        out = [env.reset(seed)]
        for a in actions:
            out.append(env.step(a)[0])
    return out


def test_lock_step_matches_single_envs():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(4, 2, 4))
    with VectorEnv(TASK, num_envs=2, **KW) as venv:
        batches = [venv.reset([5, 6])]
        for a in actions:
            obs, rewards, dones, infos = venv.step(a)
            batches.append(obs)
            assert rewards.shape == (2,) and dones.shape == (2,) and not dones.any()
            assert all("success" in i for i in infos)
        assert batches[0]["rgb"].shape == (2, 40, 40, 3) and batches[0]["proprio"].shape == (2, 4)
        # a smaller last batch: only the first worker takes part
        one = venv.reset([6])
        assert one["rgb"].shape == (1, 40, 40, 3)
        np.testing.assert_array_equal(one["rgb"][0], batches[0]["rgb"][1])
        with pytest.raises(InputError, match=r"actions of shape \(1, 4\)"):
            venv.step(actions[0])
    for i, seed in enumerate((5, 6)):
        single = _single_rollout(seed, actions[:, i])
        for t, obs in enumerate(single):
            for k in obs:
                np.testing.assert_array_equal(batches[t][k][i], obs[k], err_msg=f"{seed} {t} {k}")


def test_worker_errors_surface():
    with pytest.raises(EnvWorkerError, match="unknown camera 'nope'"):
        VectorEnv(TASK, num_envs=1, camera="nope", **KW)
    with VectorEnv(TASK, num_envs=2, **KW) as venv:
        venv.reset([0, 1])
        with pytest.raises(EnvWorkerError, match="non-finite"):
            venv.step(np.array([[0, 0, 0, 0], [np.nan, 0, 0, 0]]))
        obs, *_ = venv.step(np.zeros((2, 4)))  # pipes stay in step after an error
        assert obs["rgb"].shape[0] == 2
    with pytest.raises(InputError, match="num_envs"):
        VectorEnv(TASK, num_envs=0)
    with pytest.raises(InputError, match="never fork"):
        VectorEnv(TASK, num_envs=1, context="fork")


def test_async_step_matches_step_and_refuses_misuse():
    actions = np.random.default_rng(1).uniform(-1, 1, size=(3, 2, 4))
    with VectorEnv(TASK, num_envs=2, **KW) as a, VectorEnv(TASK, num_envs=2, **KW) as b:
        a.reset([3, 4])
        b.reset([3, 4])
        with pytest.raises(InputError, match="no step in flight"):
            b.step_wait()
        for act in actions:
            b.step_async(act)  # b's workers run while a steps synchronously
            with pytest.raises(InputError, match="in flight"):
                b.step_async(act)
            with pytest.raises(InputError, match="in flight"):
                b.reset([3, 4])
            sync, async_ = a.step(act), b.step_wait()
            for k in sync[0]:
                np.testing.assert_array_equal(sync[0][k], async_[0][k])
            np.testing.assert_array_equal(sync[1], async_[1])
