"""Teachers: registry encoders and simulator teachers share one interface; teacher sets resolve."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from theia_eval.distill.framesets import SEGMENTATION_CLASSES
from theia_eval.distill.samples import Batch
from theia_eval.distill.teacher_sets import resolve_teachers
from theia_eval.distill.teachers import TeacherSpec, build_teacher, build_teachers
from theia_eval.errors import InputError, UnknownNameError


def batch_with_extras(b=2, size=224):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)
    depth = torch.rand(b, size, size, generator=g) * 2
    seg = torch.randint(0, len(SEGMENTATION_CLASSES), (b, size, size), generator=g)
    return Batch([f"k{i}" for i in range(b)], images, {"depth": depth, "segmentation": seg})


def test_sim_depth_is_pooled_depth_folded_into_channels():
    t = build_teacher(TeacherSpec("sim-depth"))
    batch = batch_with_extras()
    out = t(batch)
    assert out.shape == (2, 16, 16, 16) and t.grid == (16, 16) and t.dim == 16
    cells = F.adaptive_avg_pool2d(batch.extras["depth"][:, None], 64)[:, 0]  # (2, 64, 64)
    # channel c of patch (i, j) is cell (4i + c // 4, 4j + c % 4)
    assert torch.allclose(out[1, 3, 5, 6], cells[1, 4 * 3 + 1, 4 * 5 + 2])


def test_sim_segmentation_frequencies():
    t = build_teacher(TeacherSpec("sim-segmentation"))
    batch = batch_with_extras()
    out = t(batch)
    assert out.shape == (2, 16, 16, 4)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 16, 16))
    patch = batch.extras["segmentation"][0, :14, 14:28]
    expected = torch.bincount(patch.flatten(), minlength=4).float() / patch.numel()
    torch.testing.assert_close(out[0, 0, 1], expected)


def test_sim_teacher_without_extras_says_what_to_do():
    t = build_teacher(TeacherSpec("sim-depth"))
    with pytest.raises(InputError, match="theia-eval frames"):
        t(Batch(["a"], torch.zeros(1, 3, 32, 32, dtype=torch.uint8)))


def test_encoder_teacher_uses_tokens(tiny_teachers):
    from theia_eval.encoders import create_encoder

    t = build_teacher(TeacherSpec("dinov2-vit-s14", str(tiny_teachers["dino"]), "tiny.dino"))
    assert t.id == "tiny_dino" and t.grid == (16, 16) and t.dim == 32
    batch = batch_with_extras()
    ref = create_encoder("dinov2-vit-s14", weights=str(tiny_teachers["dino"]))(batch.images).tokens
    torch.testing.assert_close(t(batch), ref)


def test_teacher_sets_and_lists():
    cdiv = resolve_teachers("cdiv")
    assert [s.id for s in cdiv] == ["google/vit-huge-patch14-224-in21k", "facebook/dinov2-large",
                                    "openai/clip-vit-large-patch14"]
    assert [s.name for s in resolve_teachers("offline")] == ["efficientnet-lite0", "sim-depth", "sim-segmentation"]
    mixed = resolve_teachers(["cdiv", "efficientnet-lite0", {"name": "sim-depth", "kwargs": {"sub": 2}}],
                             weights={"clip-vit-l14": "/w/clip"})
    assert len(mixed) == 5 and mixed[2].weights == "/w/clip" and mixed[4].kwargs == {"sub": 2}
    with pytest.raises(InputError, match="bad teacher entry"):
        resolve_teachers([{"nme": "x"}])
    with pytest.raises(UnknownNameError, match="unknown teacher 'sim-dept'"):
        build_teachers(resolve_teachers("sim-dept"))
    with pytest.raises(InputError, match="appear twice"):
        build_teachers(resolve_teachers(["sim-depth", "sim-depth"]))
    assert np.isclose(build_teacher(TeacherSpec("sim-depth", kwargs={"sub": 2})).dim, 4)
