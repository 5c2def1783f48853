"""The one registry helper: one duplicate-name error, one unknown-name error, and `weights=` parsed once."""
import pytest

from theia_eval.encoders.weights import Weights, parse_weights
from theia_eval.errors import DuplicateNameError, InputError, UnknownNameError
from theia_eval.registry import Registry


def test_registry_refuses_a_taken_name_and_suggests_close_ones():
    reg = Registry("gadget")
    assert reg.add("spoon", 1) == 1 and reg.get_entry("spoon") == 1 and "spoon" in reg
    with pytest.raises(DuplicateNameError, match="gadget 'spoon' is already registered"):
        reg.add("spoon", 2)
    assert reg["spoon"] == 1
    with pytest.raises(UnknownNameError, match="unknown gadget 'spon'. Did you mean: spoon"):
        reg.get_entry("spon")
    reg.add("fork", 3)
    assert reg.names() == ["fork", "spoon"] and reg.names("s*") == ["spoon"]


@pytest.mark.parametrize("register", ["encoder", "head", "fusion", "preset", "teacher", "task", "suite", "family"])
def test_every_registry_raises_the_same_duplicate_error(register):
    import dataclasses

    import theia_eval.distill.sim_teachers  # noqa: F401  (registers sim-depth)
    from theia_eval.distill.teacher_base import register_teacher
    from theia_eval.distill.teachers import TEACHERS
    from theia_eval.encoders import get_encoder_config
    from theia_eval.encoders.registry import register_encoder
    from theia_eval.envs.family import FAMILIES, get_family, register_family
    from theia_eval.envs.renderer import get_preset, register_preset
    from theia_eval.envs.tasks import SUITES, TASKS, get_suite, get_task, register_suite, register_task
    from theia_eval.policies.heads import MLPHeadConfig, get_head_entry, register_head
    from theia_eval.policies.history import register_fusion

    sizes = (len(TASKS), len(SUITES), len(FAMILIES), len(TEACHERS))
    # a new family whose name is new but whose first task is taken: refused before anything is registered
    clash = dataclasses.replace(get_family("metaworld"), name="metaworld-copy")
    attempts = {"encoder": lambda: register_encoder(get_encoder_config("pixels"))(lambda *a, **k: None),
                "head": lambda: register_head("mlp", MLPHeadConfig)(get_head_entry("mlp").cls),
                "fusion": lambda: register_fusion("flare", "again")(lambda frames: frames),
                "preset": lambda: register_preset(get_preset("fast")),
                "teacher": lambda: register_teacher("sim-depth")(lambda *a: None),
                "task": lambda: register_task(get_task("metaworld/hammer")),
                "suite": lambda: register_suite(get_suite("cortexbench-metaworld")),
                "family": lambda: register_family(clash)}
    with pytest.raises(DuplicateNameError, match="is already registered"):
        attempts[register]()
    assert (len(TASKS), len(SUITES), len(FAMILIES), len(TEACHERS)) == sizes


def test_weights_are_parsed_in_one_place():
    assert parse_weights(None) == Weights(None) and parse_weights(None).default
    assert parse_weights("random") == Weights("random", 0) and parse_weights("random:7").seed == 7
    assert parse_weights("/w/model.pth") == Weights("/w/model.pth") and not parse_weights("owner/name").random
    with pytest.raises(InputError, match="use 'random' or 'random:<int seed>'"):
        parse_weights("random:x")


def test_a_malformed_weights_value_fails_the_same_for_every_entry():
    from theia_eval.encoders import create_encoder

    for name in ("pixels", "efficientnet-lite0", "random-vit-nano"):
        with pytest.raises(InputError, match="bad weights 'random:x'"):
            create_encoder(name, weights="random:x")
