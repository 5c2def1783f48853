"""Importer for the original CortexBench pickles (list of path dicts)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from theia_eval.envs.dataset import open_demos
from theia_eval.envs.importers import import_cortexbench_pickle
from theia_eval.errors import InputError


def _paths(rng, n_paths=2, t=6, side=32):
    return [{"images": rng.integers(0, 256, (t, side, side, 3), dtype=np.uint8),
             "actions": rng.uniform(-1, 1, (t, 4)), "rewards": rng.normal(size=t),
             "observations": rng.normal(size=(t, 39)),
             "env_infos": {"success": np.arange(t) >= t - 2,
                           "gripper_proprio": rng.normal(size=(t, 4))}}
            for _ in range(n_paths)]


def _dump(tmp_path, obj, name="assembly-v2-goal-observable.pickle"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj))
    return path


def test_import_round_trip(tmp_path):
    paths = _paths(np.random.default_rng(0))
    out = import_cortexbench_pickle(_dump(tmp_path, paths), "metaworld/assembly", tmp_path / "a.hdf5")
    with pytest.raises(InputError, match="preset=cortexbench-mujoco-py resolution=32 crop=None"):
        open_demos(out, expect_preset="fast")  # other renderer: refused unless forced
    with open_demos(out, expect_preset="cortexbench-mujoco-py", expect_resolution=32) as demos:
        meta = demos.meta
        assert meta.source == "cortexbench-pickle:assembly-v2-goal-observable.pickle"
        assert meta.camera == "top_cap2" and meta.render.crop is None and len(demos) == 2
        for p, demo in zip(paths, demos):
            np.testing.assert_array_equal(demo.frames(), p["images"])
            np.testing.assert_allclose(demo.actions, p["actions"].astype(np.float32))
            np.testing.assert_allclose(demo.proprio, p["env_infos"]["gripper_proprio"].astype(np.float32))
            np.testing.assert_allclose(demo.state, p["observations"].astype(np.float32))
            np.testing.assert_array_equal(demo.success.astype(bool), p["env_infos"]["success"])
            assert demo.first_success_step == 4 and demo.seed == -1


def test_proprio_falls_back_to_observations(tmp_path):
    paths = _paths(np.random.default_rng(1), n_paths=1)
    del paths[0]["env_infos"]["gripper_proprio"]
    out = import_cortexbench_pickle(_dump(tmp_path, paths), "metaworld/assembly", tmp_path / "b.hdf5")
    with open_demos(out) as demos:
        np.testing.assert_allclose(demos[0].proprio, paths[0]["observations"][:, :4].astype(np.float32))
    del paths[0]["observations"]
    with pytest.raises(InputError, match="no proprio.*proprio_key"):
        import_cortexbench_pickle(_dump(tmp_path, paths), "metaworld/assembly", tmp_path / "c.hdf5")


def test_bad_pickles(tmp_path):
    with pytest.raises(InputError, match="list of path dicts"):
        import_cortexbench_pickle(_dump(tmp_path, {"a": 1}), "metaworld/assembly", tmp_path / "x.hdf5")
    paths = _paths(np.random.default_rng(2), n_paths=1)
    del paths[0]["actions"]
    with pytest.raises(InputError, match=r"\[0\] lacks \['actions'\]"):
        import_cortexbench_pickle(_dump(tmp_path, paths), "metaworld/assembly", tmp_path / "x.hdf5")
    junk = tmp_path / "junk.pickle"
    junk.write_bytes(b"\x80\x04junk")
    with pytest.raises(InputError, match="not a readable pickle"):
        import_cortexbench_pickle(junk, "metaworld/assembly", tmp_path / "x.hdf5")
    assert not (tmp_path / "x.hdf5").exists()
