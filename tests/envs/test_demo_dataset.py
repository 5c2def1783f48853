"""Demo files: lazy reader, render-setting checks, corrupt files, info, robomimic compatibility."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from envs_helpers import SMALL, TASKS

from theia_eval.envs.dataset import (DatasetMeta, Episode, dataset_info, format_info, open_demos,
                                     split_names, verify_frames, write_demos)
from theia_eval.envs.demos import demo_path
from theia_eval.envs.tasks import get_task
from theia_eval.errors import InputError


@pytest.fixture
def path(demo_dir):
    return demo_path(demo_dir[0], get_task(TASKS[0]))


def test_lazy_frames_match_full_read(path):
    with open_demos(path) as demos:
        demo = demos[1]
        full = demo.frames()
        blocks = list(demo.iter_frames(batch=4))
        assert [len(b) for b in blocks[:-1]] == [4] * (len(blocks) - 1)
        np.testing.assert_array_equal(np.concatenate(blocks), full)
        np.testing.assert_array_equal(demo.rgb_dataset[2:5], full[2:5])
        ep = demo.load()
        assert len(ep) == len(demo) == full.shape[0] and ep.seed == demo.seed
        assert demos["demo_1"].name == "demo_1" and demos.mask("valid") == ["demo_1"]


def test_render_settings_are_checked(path):
    with open_demos(path, expect_preset="fast", expect_resolution=64, expect_crop=56):
        pass
    with pytest.raises(InputError, match="preset=fast resolution=64 crop=56.*preset=full"):
        open_demos(path, expect_preset="full")
    with pytest.raises(InputError, match="force=true"):
        open_demos(path, expect_resolution=256)
    with pytest.raises(InputError, match="crop=None"):
        open_demos(path, expect_crop=None)
    with open_demos(path, expect_preset="full", force=True) as demos:
        assert demos.meta.render == SMALL


def test_truncated_file_names_the_file(path, tmp_path):
    bad = tmp_path / "truncated.hdf5"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"truncated\.hdf5 is not a readable HDF5 file.*truncated"):
        open_demos(bad)
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(InputError, match="junk.hdf5 is not a readable HDF5"):
        dataset_info(junk)
    with pytest.raises(InputError, match="does not exist"):
        open_demos(tmp_path / "missing.hdf5")


def test_incomplete_demo_names_group_and_key(path, tmp_path):
    broken = tmp_path / "broken.hdf5"
    shutil.copy(path, broken)
    with h5py.File(broken, "a") as f:
        del f["data/demo_1/actions"]
    with pytest.raises(InputError, match=r"broken.hdf5:/data/demo_1 is missing actions"):
        open_demos(broken)
    with h5py.File(broken, "a") as f:
        f["data/demo_1/actions"] = np.zeros((3, 4), np.float32)
    with pytest.raises(InputError, match=r"demo_1: num_samples=\d+ but \{'actions': 3\}"):
        open_demos(broken)
    with h5py.File(broken, "a") as f:
        del f["data"].attrs["env_args"]
    with pytest.raises(InputError, match="env_args'\\] is missing"):
        open_demos(broken)


def test_corrupt_chunk_is_reported_on_read(path, tmp_path):
    """Flip bytes inside the compressed frame data: reading names the file and dataset."""
    bad = tmp_path / "corrupt.hdf5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r") as f:
        offset = f["data/demo_0/obs/rgb"].id.get_chunk_info(2).byte_offset
    raw = bytearray(bad.read_bytes())
    raw[offset:offset + 64] = bytes(64)
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"corrupt.hdf5:/data/demo_0/obs/rgb cannot be read"):
        verify_frames(bad)


def test_info_summarizes(path):
    info = dataset_info(path)
    assert info["task"] == TASKS[0] and info["demos"] == 2 and info["final_success_rate"] == 1.0
    assert info["render"] == {"preset": "fast", "resolution": 64, "crop": 56}
    assert info["image_shape"] == (56, 56, 3) and info["size_mb"] > 0
    assert info["frames"] == sum(info["length"][k] for k in ("min", "max"))
    with open_demos(path) as demos:
        returns = sorted(float(np.sum(d.rewards)) for d in demos)
    assert (info["return"]["min"], info["return"]["max"]) == (round(returns[0], 1), round(returns[-1], 1))
    text = format_info(info)
    assert "demos 2" in text and "preset fast" in text and "100%" in text
    assert f"return (sum of rewards) min/mean/max {info['return']['min']}/" in text
    assert verify_frames(path) == info["frames"]


def test_split_names():
    names = [f"demo_{i}" for i in range(25)]
    train, valid = split_names(names, 0.1)
    assert valid == ["demo_23", "demo_24"] and train + valid == names  # round(2.5) = 2
    assert split_names(names[:1], 0.5) == (names[:1], [])
    with pytest.raises(InputError, match="valid_fraction"):
        split_names(names, 1.0)


def test_episode_rejects_inconsistent_arrays():
    n = 3
    with pytest.raises(InputError, match="different lengths"):
        Episode(rgb=np.zeros((n, 8, 8, 3), np.uint8), proprio=np.zeros((n, 4)), state=np.zeros((n, 5)),
                actions=np.zeros((n + 1, 4)), rewards=np.zeros(n), success=np.zeros(n, bool))


def test_robomimic_reads_our_files(path):
    """robomimic 0.3.0's own file utilities and SequenceDataset load the demos."""
    import robomimic.utils.file_utils as FileUtils
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["proprio", "state"],
                                                          "rgb": ["rgb"]}})
    env_meta = FileUtils.get_env_metadata_from_dataset(str(path))
    assert env_meta["env_name"] == TASKS[0] and env_meta["env_kwargs"]["render"]["preset"] == "fast"
    shapes = FileUtils.get_shape_metadata_from_dataset(str(path), all_obs_keys=["rgb", "proprio"])
    assert shapes["ac_dim"] == 4 and shapes["use_images"]
    assert list(shapes["all_shapes"]["rgb"]) == [3, 56, 56]
    ds = SequenceDataset(str(path), obs_keys=("rgb", "proprio"), dataset_keys=("actions", "rewards",
                         "dones"), seq_length=1, filter_by_attribute="train", load_next_obs=False)
    item, size = ds[3], len(ds)
    ds.close_and_delete_hdf5_handle()  # robomimic reads with SWMR; one open mode per process
    with open_demos(path) as demos:
        demo = demos["demo_0"]
        assert size == len(demo)
        np.testing.assert_array_equal(item["actions"][0], demo.actions[3])
        np.testing.assert_array_equal(item["obs"]["proprio"][0], demo.proprio[3])
        frame = demo.frames(3, 4)[0]
    np.testing.assert_array_equal(item["obs"]["rgb"][0], frame)  # raw HWC uint8 as stored
    processed = ObsUtils.process_obs(item["obs"]["rgb"][0], obs_key="rgb")  # robomimic's CHW [0, 1]
    np.testing.assert_allclose(processed, frame.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_write_demos_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    eps = [Episode(rgb=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), proprio=rng.normal(size=(n, 4)),
                   state=rng.normal(size=(n, 6)), actions=rng.normal(size=(n, 4)),
                   rewards=rng.normal(size=n), success=np.arange(n) >= n - 2, seed=10 + n)
           for n in (4, 6)]
    meta = DatasetMeta(task=TASKS[0], suite="metaworld", camera="top_cap2", render=SMALL, horizon=500)
    out = write_demos(tmp_path / "x.hdf5", eps, meta)
    with open_demos(out) as demos:
        assert demos.meta.seeds == (14, 16) and demos.lengths == [4, 6]
        for ep, demo in zip(eps, demos):
            back = demo.load()
            np.testing.assert_array_equal(back.rgb, ep.rgb)
            np.testing.assert_allclose(back.actions, ep.actions.astype(np.float32))
            np.testing.assert_array_equal(back.success, ep.success)
            assert demo.first_success_step == len(ep) - 2
    assert [p.name for p in tmp_path.iterdir()] == ["x.hdf5"]  # no temporary left behind
