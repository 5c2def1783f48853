"""One source of defaults per verb: configs/<verb>.yaml is generated from theia_eval.settings and cannot drift."""
import dataclasses

import pytest
from omegaconf import OmegaConf

from theia_eval import settings
from theia_eval.config import compose, config_dir
from theia_eval.schema import SCHEMAS

VERBS = sorted(settings.VERB_CONFIGS)


def typed(value):
    """A nested value with the type of every leaf kept (50 and 50.0 differ)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("verb", VERBS)
def test_yaml_file_is_generated_from_the_settings_class(verb):
    text = (config_dir() / f"{verb}.yaml").read_text()
    assert text == settings.render_yaml(verb), (f"configs/{verb}.yaml differs from theia_eval.settings: run "
                                                "`python -m theia_eval.settings --write`")


@pytest.mark.parametrize("verb", VERBS)
def test_yaml_values_and_types_equal_the_dataclass_defaults(verb):
    loaded = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{verb}.yaml"))
    loaded.pop("defaults", None)
    assert typed(loaded) == typed(settings.defaults(verb))


def test_composed_configs_hold_the_defaults_and_their_group_blocks():
    train = OmegaConf.to_container(compose("train", [], paths=False))
    assert train == settings.defaults("train") and train["head"] == "conv"
    distill = OmegaConf.to_container(compose("distill", [], paths=False))
    assert distill.pop("frames") == settings.defaults("frames")
    assert distill == settings.defaults("distill")


def test_every_checked_key_is_a_setting():
    """A key the schema checks but no settings class declares exists in one place only."""
    for verb, schema in SCHEMAS.items():
        keys = {k for k, _, _ in settings._leaves(settings.VERB_CONFIGS[verb].cls)}
        sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
        if verb == "distill":
            keys |= {f"frames.{k}" for k, _, _ in settings._leaves(settings.FramesConfig)}
        missing = {k for k in schema if "*" not in k and k not in keys and k not in sections}
        assert not missing, f"{verb}: schema keys without a setting: {sorted(missing)}"


@pytest.mark.parametrize("verb", VERBS)
def test_every_setting_has_a_rule(verb):
    """Every key a verb's settings class declares is type- and range-checked (theia_eval.schema) before any work."""
    from theia_eval.schema import rule_for

    assert verb in SCHEMAS, f"theia_eval.schema has no SCHEMAS['{verb}']"
    keys = [k for k, _, _ in settings._leaves(settings.VERB_CONFIGS[verb].cls)]
    if verb == "distill":
        keys += [f"frames.{k}" for k, _, _ in settings._leaves(settings.FramesConfig)]
    unchecked = [k for k in keys if rule_for(SCHEMAS[verb], k) is None]
    assert not unchecked, f"{verb}: settings without a rule in theia_eval.schema: {unchecked}"


def test_every_default_passes_its_rule():
    """The shipped defaults are allowed values (a rule that refuses a default is wrong)."""
    from theia_eval.schema import problems

    for verb in VERBS:
        values = settings.defaults(verb)
        if verb == "distill":
            values["frames"] = settings.defaults("frames")
        assert problems(verb, OmegaConf.to_container(OmegaConf.create(values), resolve=False)) == [], verb


def test_library_dataclasses_take_the_verb_defaults():
    from theia_eval.decoding.decoders import DecodeSettings, SamOptions
    from theia_eval.distill.frames import FrameSettings
    from theia_eval.distill.train import TrainSettings
    from theia_eval.envs.demos import DemoConfig
    from theia_eval.policies.bc import BCConfig
    from theia_eval.policies.evaluate import EvalConfig

    train, demos = settings.TrainConfig(), settings.DemosConfig()
    bc = BCConfig()
    assert (bc.head, bc.seed, bc.device) == (train.head, train.seed, train.device) == ("conv", 100, "cpu")
    for f in dataclasses.fields(train.bc):
        if hasattr(bc, f.name) and f.name != "head_config":
            assert getattr(bc, f.name) == getattr(train.bc, f.name), f.name
    ev = EvalConfig()
    assert all(getattr(ev, f.name) == getattr(train.eval, f.name) for f in dataclasses.fields(train.eval))
    dc = DemoConfig()
    assert (dc.num_demos, dc.base_seed, dc.workers, dc.valid_fraction) == (demos.num_demos, demos.seed, demos.workers,
                                                                          demos.valid_fraction)
    assert (dc.render.preset, dc.render.resolution, dc.render.crop) == (demos.preset, demos.resolution, demos.crop)
    assert (dc.storage.compression, dc.storage.level) == (demos.compression, demos.compression_level)
    assert dataclasses.asdict(FrameSettings()) == settings.defaults("frames")
    ts = TrainSettings()
    assert ts.betas == (0.9, 0.999) and ts.export_at == () and ts.base_lr == settings.DistillTrainSection().base_lr
    assert dataclasses.asdict(SamOptions()) == settings.defaults("decode")["sam"]
    assert DecodeSettings().top_k == settings.DecodeConfig().top_k
    from theia_eval.analysis.uncertainty import Resampling
    from theia_eval.decoding.decode import DecodeRun

    lb = settings.LeaderboardUncertaintySection()
    assert (Resampling().resamples, Resampling().seed, list(Resampling().levels)) == (lb.resamples, lb.seed, lb.resample)
    run, dec = DecodeRun(out="x"), settings.DecodeConfig()
    assert all(getattr(run, k) == getattr(dec, k) for k in ("batch_size", "every", "max_frames", "fps", "max_images",
                                                           "score_images"))


def test_yaml_value_reads_back_as_the_same_value():
    for value in [None, True, 0, 7, 0.1, 2e-3, 1e-12, 50.0, "*", "off", "null", "1.0", "a b", "${out_dir}/work",
                  [], [0.9, 0.999], ["tasks", "seeds"], {}]:
        assert typed(OmegaConf.to_container(OmegaConf.create(f"v: {settings.yaml_value(value)}"))["v"]) == typed(value)


def test_key_help_lists_every_key_with_its_default_and_help():
    text = settings.key_help("train")
    assert "bc.epochs=100" in text and "eval.crop=demos" in text
    assert "head=conv" in text and "conv (spatial tokens) | mlp (summary / CLS) | attn" in text
    assert len([line for line in text.splitlines()[1:]]) == len(list(settings._leaves(settings.TrainConfig)))
