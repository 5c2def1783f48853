"""Expert demo collection: layout, success, images, determinism, resume, atomicity, failures."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from envs_helpers import SMALL, TASKS, small_config

from theia_eval.envs.dataset import open_demos
from theia_eval.envs.demos import (DemoConfig, collect_task, demo_path, parts_dir, run_expert)
from theia_eval.envs.env import TaskEnv
from theia_eval.envs.tasks import get_task
from theia_eval.errors import InputError


def _arrays(path) -> dict:
    """Every dataset of a file as numpy arrays, by HDF5 path."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def test_layout_and_success_flags(demo_dir):
    out, reports = demo_dir
    assert [r.task for r in reports] == list(TASKS) and all(r.demos == 2 for r in reports)
    for task in TASKS:
        path = demo_path(out, get_task(task))
        assert path.exists() and not parts_dir(path).exists()
        with h5py.File(path, "r") as f:
            assert sorted(f["data"].keys()) == ["demo_0", "demo_1"]
            assert [n.decode() for n in f["mask/train"][:]] == ["demo_0"]
            assert [n.decode() for n in f["mask/valid"][:]] == ["demo_1"]
            total = 0
            for name in ("demo_0", "demo_1"):
                g = f[f"data/{name}"]
                n = int(g.attrs["num_samples"])
                total += n
                rgb = g["obs/rgb"]
                assert rgb.shape == (n, 56, 56, 3) and rgb.dtype == np.uint8
                assert rgb.chunks == (1, 56, 56, 3) and rgb.compression == "gzip"
                assert g["obs/proprio"].shape == (n, 4) and g["obs/state"].shape == (n, 39)
                assert g["actions"].shape == (n, 4) and g["rewards"].shape == (n,)
                assert np.abs(g["actions"][:]).max() <= 1.0  # the executed (clipped) actions
                assert g["dones"][-1] == 1 and g["dones"][:-1].sum() == 0
                success = g["success"][:].astype(bool)
                first = int(g.attrs["first_success_step"])
                assert success[-1] and not success[:first].any() and success[first]
                assert n == first + 3 + 1  # stopped 3 steps after the first success
                np.testing.assert_allclose(g["obs/proprio"][:], g["obs/state"][:, :4])
            assert int(f["data"].attrs["total"]) == total


def test_files_of_the_raw_action_format_are_refused(demo_dir, tmp_path):
    import json
    import shutil

    out, _ = demo_dir
    old = tmp_path / "old.hdf5"
    shutil.copy(demo_path(out, get_task(TASKS[0])), old)
    with h5py.File(old, "r+") as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        env_args["env_kwargs"]["format"] = "theia-eval-demos/1"
        f["data"].attrs["env_args"] = json.dumps(env_args)
    with pytest.raises(InputError, match="raw actions.*collect it again"):
        open_demos(old)


def test_images_are_not_trivial(demo_dir):
    out, _ = demo_dir
    with open_demos(demo_path(out, get_task(TASKS[0]))) as demos:
        frames = demos[0].frames()
    assert frames.std() > 20  # not a constant image
    assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 100
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the scene moves


def test_metadata_records_render_and_seeds(demo_dir):
    out, reports = demo_dir
    with open_demos(demo_path(out, get_task(TASKS[1]))) as demos:
        meta = demos.meta
        assert meta.render == SMALL and meta.camera == "top_cap2" and meta.suite == "metaworld"
        assert meta.seeds == tuple(d.seed for d in demos) and meta.seeds[0] == meta.base_seed
        assert meta.versions["mujoco"] and meta.versions["metaworld"]
        assert meta.post_success_steps == 3 and meta.horizon == 500


def test_same_seeds_identical_arrays_across_worker_counts(demo_dir, tmp_path):
    """Collected again with 2 worker processes: byte-identical arrays."""
    out, _ = demo_dir
    task = get_task(TASKS[0])
    collect_task(task, tmp_path, small_config(workers=2))
    ours, theirs = _arrays(demo_path(tmp_path, task)), _arrays(demo_path(out, task))
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


class _Killed(Exception):
    pass


def test_resume_after_interrupt_adds_only_missing(demo_dir, tmp_path):
    out, _ = demo_dir
    task = get_task(TASKS[0])
    path = demo_path(tmp_path, task)

    def die(_episode):
        raise _Killed

    with pytest.raises(_Killed):
        collect_task(task, tmp_path, small_config(), on_demo=die)
    assert not path.exists()  # no final file from an interrupted run
    assert [p.name for p in parts_dir(path).glob("*.h5")] == ["seed_54321.h5"]
    seen = []
    report = collect_task(task, tmp_path, small_config(), on_demo=seen.append)
    assert report.demos == 2 and report.new_demos == 1 and [e.seed for e in seen] == [54322]
    assert not parts_dir(path).exists()
    ours, theirs = _arrays(path), _arrays(demo_path(out, task))
    for key in theirs:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    # a complete file: asking again collects nothing; asking for more adds only the new one
    assert collect_task(task, tmp_path, small_config()).new_demos == 0
    report = collect_task(task, tmp_path, small_config(num_demos=3))
    assert report.new_demos == 1
    with open_demos(path) as demos:
        assert [d.seed for d in demos] == [54321, 54322, 54323]
        np.testing.assert_array_equal(demos[0].frames(), theirs["data/demo_0/obs/rgb"])


def test_sigkill_leaves_no_corrupt_file(tmp_path):
    """A real kill mid-run: only complete parts remain, and the rerun finishes the file."""
    task = get_task(TASKS[0])
    path = demo_path(tmp_path, task)
    cmd = [sys.executable, "-m", "theia_eval.cli", "demos", f"task={task.name}", "num_demos=3",
           f"out_dir={tmp_path}", "resolution=64", "crop=56", "workers=0", "progress=false",
           "post_success_steps=3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.time() + 600  # generous: a loaded 2-core machine takes a minute to start
    while not list(parts_dir(path).glob("seed_*.h5")) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not path.exists()
    parts = list(parts_dir(path).glob("seed_*.h5"))
    assert 1 <= len(parts) <= 3
    for part in parts:  # every part left behind is complete and readable
        with open_demos(part) as demos:
            assert len(demos) == 1 and demos[0].frames().shape[0] == len(demos[0])
    report = collect_task(task, tmp_path, small_config(num_demos=3))
    assert report.demos == 3 and report.new_demos == 3 - len(parts)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_failed_seeds_are_skipped_and_recorded(tmp_path):
    """With a horizon shorter than some episodes need, only successful seeds become demos."""
    task = get_task(TASKS[1])
    env = TaskEnv(task, SMALL)
    expert = task.make_expert(task)
    seeds = list(range(54321, 54329))
    firsts = {s: run_expert(env, expert, s, 0).flags.index(True) for s in seeds}
    env.close()
    horizon = sorted(firsts.values())[len(seeds) // 2] + 1
    good = [s for s in seeds if firsts[s] < horizon]
    assert 2 <= len(good) < len(seeds), firsts  # the horizon splits the seeds
    report = collect_task(task, tmp_path, small_config(horizon=horizon, post_success_steps=0))
    tried = [s for s in seeds if s <= good[1]]
    assert report.failed_seeds == [s for s in tried if s not in good[:2]]
    with open_demos(report.path) as demos:
        assert list(demos.meta.seeds) == good[:2] and demos.meta.horizon == horizon
        assert list(demos.meta.failed_seeds) == report.failed_seeds
        assert all(d.success[-1] and len(d) == d.first_success_step + 1 for d in demos)


def test_too_many_failures_raise(tmp_path):
    cfg = small_config(horizon=5, max_failures=2)
    with pytest.raises(InputError, match="failed on 3 seeds"):
        collect_task(TASKS[0], tmp_path, cfg)


def test_rerun_with_other_settings_is_refused(demo_dir):
    out, _ = demo_dir
    with pytest.raises(InputError, match="other settings.*render"):
        collect_task(TASKS[0], out, small_config(render=SMALL.__class__("full", 64, 56)))


@pytest.mark.parametrize("bad, match", [(dict(num_demos=0), "num_demos must be >= 1"),
                                        (dict(num_demos=-3), "num_demos must be >= 1"),
                                        (dict(post_success_steps=-1), "post_success_steps"),
                                        (dict(workers=-1), "workers")])
def test_bad_config(bad, match):
    with pytest.raises(InputError, match=match):
        DemoConfig(**bad)
