"""CLI verbs `theia-eval tasks` and `theia-eval demos` (collection, --info, --import, errors)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from envs_helpers import TASKS

from theia_eval.cli import main
from theia_eval.envs.dataset import open_demos
from theia_eval.envs.demos import demo_path
from theia_eval.envs.tasks import get_task


def test_tasks_lists_suites_and_tasks(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "cortexbench-metaworld: metaworld/assembly" in out and "metaworld: 50 tasks" in out
    assert "metaworld/window-open" in out and "camera top_cap2, horizon 500" in out
    assert main(["tasks", "suite=cortexbench-metaworld"]) == 0
    out = capsys.readouterr().out
    assert out.count("metaworld/") == 5


def test_tasks_unknown_suite(capsys):
    assert main(["tasks", "suite=cortexbench-metawrld"]) == 2
    assert "Did you mean: cortexbench-metaworld" in capsys.readouterr().err


def test_demos_collect_then_info(tmp_path, capsys):
    args = ["demos", f"task={TASKS[0]}", "num_demos=1", f"out_dir={tmp_path}", "resolution=48",
            "crop=null", "workers=0", "progress=false", "post_success_steps=0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    path = demo_path(tmp_path, get_task(TASKS[0]))
    assert f"{TASKS[0]}: 1 demos (1 new, 0 failed seeds) -> {path}" in out
    assert main(["demos", "--info", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "demos 1" in out and "preset fast, resolution 48, crop None" in out
    assert "final-step success 100%" in out and "all readable" in out


def test_demos_bad_input(tmp_path, capsys):
    assert main(["demos", "suite=cortexbench-metaworld", "num_demos=0"]) == 2
    assert "num_demos=0 is not allowed: num_demos must be an integer >= 1" in capsys.readouterr().err
    assert main(["demos", "task=metaworld/hamer"]) == 2
    assert "Did you mean: metaworld/hammer" in capsys.readouterr().err
    assert main(["demos", "num_demos=2"]) == 2
    assert "exactly one of suite=NAME or task=NAME" in capsys.readouterr().err
    assert main(["demos", "task=metaworld/hammer", "camera=top_cap3", f"out_dir={tmp_path}",
                 "workers=0", "resolution=32", "crop=null", "progress=false"]) == 2
    assert "unknown camera 'top_cap3'" in capsys.readouterr().err
    assert main(["demos", "presett=fast"]) == 2
    assert "bad config" in capsys.readouterr().err
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    assert main(["demos", "--info", str(bad)]) == 2
    assert "bad.hdf5 is not a readable HDF5 file" in capsys.readouterr().err


def test_demos_help_lists_config_keys(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demos", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--info" in out and "post_success_steps" in out and "preset=fast" in out


def test_demos_import(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = [{"images": rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
              "actions": np.tile([2.0, -3.0, 0.5, 0.0], (3, 1)), "rewards": np.zeros(3),
              "env_infos": {"success": np.array([0, 1, 1], bool), "gripper_proprio": np.zeros((3, 4))}}]
    src = tmp_path / "hammer-v2-goal-observable.pickle"
    src.write_bytes(pickle.dumps(paths))
    out = tmp_path / "hammer.hdf5"
    assert main(["demos", "--import", str(src), "task=metaworld/hammer", f"out={out}"]) == 0
    with open_demos(out) as demos:
        assert len(demos) == 1 and demos.meta.render.preset == "cortexbench-mujoco-py"
        assert np.array_equal(demos[0].actions, np.tile([1.0, -1.0, 0.5, 0.0], (3, 1)))  # as executed: clipped
    assert main(["demos", "--import", str(src)]) == 2
    assert "needs task=" in capsys.readouterr().err
