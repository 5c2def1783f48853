"""Renderer: presets, crop, cameras (top_cap2 added, every camera upright), errors."""
from __future__ import annotations

import numpy as np
import pytest

from theia_eval.envs import make_env
from theia_eval.envs.renderer import (PRESETS, RenderSpec, center_crop, check_render_match,
                                      get_preset)
from theia_eval.errors import InputError, UnknownNameError

GRIPPER_BODIES = ("right_hand", "hand", "rightpad", "leftpad", "rightclaw", "leftclaw")


@pytest.fixture(scope="module")
def env():
    e = make_env("metaworld/drawer-open", resolution=96, crop=None, seed=3)
    yield e
    e.close()


def test_top_cap2_is_added_as_targetbody_camera(env):
    import mujoco

    model = env.sim.model
    cam = model.camera("top_cap2")
    assert cam.mode[0] == mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY
    assert model.body(int(cam.targetbodyid[0])).name == "tablelink"
    np.testing.assert_allclose(cam.pos, [0.0, 0.9, 0.6])
    assert cam.fovy[0] == 45.0
    # targetbody mode: the camera's optical axis (-z) points at the table body
    env.reset(0)
    data = env.sim.data
    look = -data.cam_xmat[cam.id].reshape(3, 3)[:, 2]
    to_table = data.xpos[model.body("tablelink").id] - data.cam_xpos[cam.id]
    np.testing.assert_allclose(look, to_table / np.linalg.norm(to_table), atol=1e-9)


def test_flip_decisions(env):
    flips = {name: env.renderer.needs_flip(name) for name in env.renderer.cameras}
    assert flips["top_cap2"] is False and flips["behindGripper"] is False
    assert all(flips[c] for c in ("corner", "corner2", "corner3", "corner4"))


def _paint_gripper_blue(env) -> None:
    model = env.sim.model
    ids = {model.body(b).id for b in GRIPPER_BODIES}
    for g in range(model.ngeom):
        if model.geom_bodyid[g] in ids:
            model.geom_matid[g] = -1
            model.geom_rgba[g] = (0.0, 0.0, 1.0, 1.0)


def _blue_centroid(img: np.ndarray) -> np.ndarray:
    rgb = img.astype(int)
    mask = (rgb[..., 2] > 120) & (rgb[..., 0] < 60) & (rgb[..., 1] < 60)
    assert mask.sum() > 10, "gripper not visible"
    rows, cols = np.nonzero(mask)
    return np.array([rows.mean(), cols.mean()])


def _centroid_after(env, camera: str, action: np.ndarray, steps: int) -> np.ndarray:
    env.reset(3, render=False)
    for _ in range(steps):
        env.step(action, render=False)
    return _blue_centroid(env.render(camera))


@pytest.mark.parametrize("camera, right_is_plus_x", [("top_cap2", False), ("corner", True)])
def test_images_are_upright(env, camera, right_is_plus_x):
    """Raising the gripper (world +z) moves it up in the image; +x moves it by the camera's side.

    top_cap2 sits beyond the table (y = 0.9) facing the robot, so world +x is image left;
    the corner camera looks from the robot's left-front, so world +x is image right.
    """
    _paint_gripper_blue(env)
    low = _centroid_after(env, camera, np.array([0, 0, -1.0, 0]), 6)
    high = _centroid_after(env, camera, np.array([0, 0, 1.0, 0]), 6)
    assert high[0] < low[0] - 2, (low, high)  # rows grow downwards
    minus_x = _centroid_after(env, camera, np.array([-1.0, 0, 0, 0]), 8)
    plus_x = _centroid_after(env, camera, np.array([1.0, 0, 0, 0]), 8)
    assert (plus_x[1] > minus_x[1] + 2) == right_is_plus_x, (minus_x, plus_x)


def test_gripper_in_upper_half_of_top_cap2():
    """The robot reaches in from the far side: at reset the gripper is in the top half."""
    with make_env("metaworld/drawer-open", resolution=96, crop=None) as e:
        _paint_gripper_blue(e)
        e.reset(0)
        row, _ = _blue_centroid(e.render("top_cap2"))
    assert row < 48


def test_presets_and_crop(env):
    env.reset(0)
    with make_env("metaworld/drawer-open", preset="full", resolution=64, crop=48) as full, \
            make_env("metaworld/drawer-open", preset="fast", resolution=64, crop=48) as fast, \
            make_env("metaworld/drawer-open", preset="fast", resolution=64, crop=None) as whole:
        a, b, c = (e.reset(0)["rgb"] for e in (full, fast, whole))
    assert a.shape == b.shape == (48, 48, 3) and c.shape == (64, 64, 3)
    np.testing.assert_array_equal(b, center_crop(c, 48))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1  # shadows/AA change the image
    assert set(PRESETS) >= {"full", "fast"} and not get_preset("fast").shadows


def test_render_spec_errors():
    with pytest.raises(UnknownNameError, match="Did you mean: fast"):
        RenderSpec("fats")
    with pytest.raises(InputError, match="crop=300 must be in 1..resolution"):
        RenderSpec("fast", 256, 300)
    with pytest.raises(InputError, match="positive"):
        RenderSpec("fast", 0, None)
    with pytest.raises(InputError, match="cannot be rendered here"):
        make_env("metaworld/drawer-open", preset="cortexbench-mujoco-py", resolution=32, crop=None)


def test_render_mismatch_is_refused_unless_forced():
    a, b = RenderSpec("fast", 256, 224), RenderSpec("full", 256, 224)
    check_render_match(a, a, "x")
    check_render_match(a, b, "x", force=True)
    with pytest.raises(InputError, match="demos.hdf5 was rendered with preset=fast"):
        check_render_match(a, b, "demos.hdf5")


def test_unknown_camera_lists_cameras(env):
    with pytest.raises(UnknownNameError, match="unknown camera 'top_cap3'.*top_cap2.*corner"):
        env.render("top_cap3")
    with pytest.raises(UnknownNameError, match="Valid cameras: .*behindGripper"):
        make_env("metaworld/drawer-open", camera="nope", resolution=32, crop=None)
