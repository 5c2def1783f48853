"""Registry-driven contracts (in timm's manner): every registered encoder, head, fusion, task and teacher is
tested the moment it is registered, with tiny inputs (batch 2).

Encoders above FAST_MAX_PARAMS_M are built (with seeded random weights) only in the full run (`make test-all`,
marker slow): their family builders run in the default set on the small entries here and on tiny configs in
tests/encoders/test_hf.py (clip, dinov2, vit, sam, depth-anything) and test_mae.py (vc1, mvp). An entry that cannot
be built offline at all is skipped with the reason its builder gives.
"""
import numpy as np
import pytest
import torch

from theia_eval.encoders import create_encoder, get_encoder_config, list_encoders
from theia_eval.encoders.weights import weights_available
from theia_eval.errors import InputError, WeightsNotFoundError

FAST_MAX_PARAMS_M = 25.0
BATCH = 2


def encoder_params():
    return [pytest.param(n, id=n, marks=[pytest.mark.slow] if get_encoder_config(n).params_m > FAST_MAX_PARAMS_M
                         else []) for n in list_encoders()]


def build(name: str, weights: str | None = None):
    """The entry with its offline default weights (or seeded random ones); skipped when it cannot be built."""
    config = get_encoder_config(name)
    if weights is None and not weights_available(config):
        weights = "random:3"
    try:
        return create_encoder(name, weights=weights)
    except WeightsNotFoundError as exc:  # e.g. 'theia' needs weights=PATH: there is nothing to build offline
        pytest.skip(f"{name} cannot be built offline: {exc}")


def images(name: str, seed: int = 0) -> np.ndarray:
    side = get_encoder_config(name).input_size
    return np.random.default_rng(seed).integers(0, 256, (BATCH, side, side, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", encoder_params())
def test_encoder_contract(name):
    enc = build(name)
    config = enc.config
    out = enc(images(name))
    assert tuple(out.tokens.shape) == (BATCH, *config.grid, config.token_dim) == enc.output_shapes(BATCH)["tokens"]
    assert tuple(out.summary.shape) == (BATCH, config.summary_dim) == enc.output_shapes(BATCH)["summary"]
    assert out.tokens.dtype == out.summary.dtype == torch.float32
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.summary).all()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert out.tokens.grad_fn is None and out.summary.grad_fn is None
    with pytest.raises(InputError, match="uint8"):
        enc(images(name).astype(np.float32))
    with pytest.raises(InputError, match="3 RGB channels"):
        enc(images(name)[..., :2])


@pytest.mark.parametrize("name", encoder_params())
def test_seeded_random_weights_are_deterministic(name):
    has_weights = get_encoder_config(name).params_m > 0  # weightless controls (blind) take no weights= at all
    a, b = build(name, "random:3" if has_weights else None), build(name, "random:3" if has_weights else None)
    x = images(name, seed=1)
    out_a, out_b = a(x), b(x)
    assert torch.equal(out_a.tokens, out_b.tokens) and torch.equal(out_a.summary, out_b.summary)
    if has_weights:  # another seed, other features
        assert not torch.equal(out_a.tokens, build(name, "random:4")(x).tokens)


# ------------------------------------------------------------------------------------------- policy heads
def head_names():
    from theia_eval.policies.heads import list_heads

    return list_heads()


@pytest.mark.parametrize("name", head_names())
def test_head_contract(name):
    from theia_eval.policies.heads import PolicyShapes, create_head, head_input_kind

    shapes = PolicyShapes((7, 7), 6, 10, 3, "flare", 4, 5)
    head = create_head(name, shapes).eval()
    assert head.output_shape == (5,)
    assert head.feature_shape == ((30,) if head_input_kind(name) == "summary" else (7, 7, 18))
    out = head(torch.randn(BATCH, *head.feature_shape), torch.randn(BATCH, 4))
    assert out.shape == (BATCH, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    with pytest.raises(InputError):
        create_head(name, shapes, {"no_such_option": 1})


# ------------------------------------------------------------------------------------------- fusions
def fusion_names():
    from theia_eval.policies.history import list_fusions

    return list_fusions()


@pytest.mark.parametrize("name", fusion_names())
def test_fusion_contract(name):
    from theia_eval.policies.history import fuse, fused_dim

    window = np.random.default_rng(0).standard_normal((BATCH, 3, 4)).astype(np.float32)
    fused = fuse(window, name)
    assert fused.shape == (BATCH, fused_dim(name, 4, 3))
    assert np.allclose(fuse(torch.from_numpy(window), name).numpy(), fused)
    same = np.repeat(window[:, :1], 3, axis=1)  # a still scene: fusing must not depend on the batch order
    assert np.allclose(fuse(same[::-1].copy(), name), fuse(same, name)[::-1])


# ------------------------------------------------------------------------------------------- tasks
def task_names():
    import theia_eval.envs  # noqa: F401  (the families register their tasks and suites)
    from theia_eval.envs.tasks import list_tasks

    return list_tasks()


@pytest.mark.parametrize("name", task_names())
def test_task_contract(name):
    from theia_eval.envs.tasks import get_suite, get_task, list_suites

    spec = get_task(name)
    assert spec.name == name and name.startswith(f"{spec.suite}/")
    assert spec.horizon > 0 and spec.action_dim > 0 and spec.proprio_dim >= 0 and spec.state_dim > 0
    assert spec.camera and callable(spec.make_sim) and callable(spec.proprio) and spec.action_bound > 0
    assert spec.episode_success(np.array([False, True])) in (True, False)
    assert any(name in get_suite(s).tasks for s in list_suites()), f"{name} belongs to no suite"
    assert spec.proprio(np.zeros(spec.state_dim)).shape == (spec.proprio_dim,)


def test_every_suite_lists_registered_tasks():
    import theia_eval.envs  # noqa: F401
    from theia_eval.envs.tasks import get_suite, get_task, list_suites

    for suite in list_suites():
        s = get_suite(suite)
        assert s.tasks and s.demos_per_task > 0 and s.eval_episodes > 0
        assert [get_task(t).name for t in s.tasks] == list(s.tasks)


# ------------------------------------------------------------------------------------------- teachers
# What a teacher may require in a batch besides the images: a generator per extra (a teacher that needs a
# new kind of extra fails here until one is added).
EXTRAS = {"depth": lambda teacher, side: torch.rand(BATCH, side, side) * 3,
          "segmentation": lambda teacher, side: torch.randint(0, teacher.dim, (BATCH, side, side))}


def teacher_names():
    from theia_eval.distill import sim_teachers  # noqa: F401  (registers the simulator teachers)
    from theia_eval.distill.teachers import TEACHERS

    return sorted(TEACHERS)


@pytest.mark.parametrize("name", teacher_names())
def test_teacher_contract(name):
    from theia_eval.distill.samples import Batch
    from theia_eval.distill.teachers import TeacherSpec, build_teacher

    teacher = build_teacher(TeacherSpec(name))
    side = 32
    batch = Batch([f"k{i}" for i in range(BATCH)], torch.randint(0, 256, (BATCH, 3, side, side), dtype=torch.uint8),
                  {extra: EXTRAS[extra](teacher, side) for extra in teacher.requires})
    targets = teacher(batch)
    assert tuple(targets.shape) == (BATCH, *teacher.grid, teacher.dim) and torch.isfinite(targets).all()
    assert torch.equal(teacher(batch), targets)
    if teacher.requires:
        with pytest.raises(InputError):
            teacher(Batch(batch.keys, batch.images, {}))
