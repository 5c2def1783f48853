"""hf:<hub id or directory>: tiny random-weight transformers checkpoints of seven kinds (DINOv2 with registers, the
SigLIP and CLIP vision towers of full SigLIP / CLIP checkpoints, ConvNeXt saved as a classifier, ResNet, Swin, distilled
DeiT without a pooler) checked against transformers' own forward and image processors, the facts cache, and the error
paths."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T

from theia_eval.cli import main
from theia_eval.encoders import byo, create_encoder, get_encoder_config
from theia_eval.encoders.images import as_uint8_batch
from theia_eval.errors import CheckpointMismatchError, InputError, WeightsNotFoundError

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


@pytest.fixture(autouse=True)
def facts_cache(tmp_path, monkeypatch) -> Path:
    """A fresh facts cache per test (nothing is written under the user's cache directory)."""
    monkeypatch.setenv("THEIA_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(byo, "_MEMO", {})
    return tmp_path / "cache" / "encoder_facts"


def spread(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """O(1)-scaled random weights so outputs are far from constant (HF inits can be ~0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 100
            p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return model


# --- tiny checkpoints in the upstream layout and the library's own read-out -----------------------------

def dinov2_registers():
    model = T.Dinov2WithRegistersModel(T.Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=32, patch_size=8,
        num_register_tokens=4))
    return model, T.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, **IMAGENET)


def siglip_full():  # the layout of google/siglip-*: a full SiglipModel, text tower included
    model = T.SiglipModel(T.SiglipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=99, max_position_embeddings=16)))
    return model, T.SiglipImageProcessor(size={"height": 32, "width": 32})


def clip_full():  # the layout of openai/clip-vit-*: a full CLIPModel, text tower and projections included
    model = T.CLIPModel(T.CLIPConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        projection_dim=16))
    return model, T.CLIPImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})


def convnext_classifier():  # facebook/convnext-*: saved as ConvNextForImageClassification
    model = T.ConvNextForImageClassification(T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                                              num_labels=3))
    return model, T.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)


def resnet():
    model = T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"))
    return model, T.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)


def swin():
    model = T.SwinModel(T.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                                     window_size=2))
    return model, T.ViTImageProcessor(size={"height": 32, "width": 32})


def deit_distilled():  # facebook/deit-*-distilled: CLS + distillation token, no pooler weights in the checkpoint
    model = T.DeiTForImageClassificationWithTeacher(T.DeiTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8,
        num_labels=3))
    return model, T.ViTImageProcessor(size={"height": 32, "width": 32})


def seq_tokens(hidden: torch.Tensor, prefix: int, side: int) -> torch.Tensor:
    return hidden[:, prefix:].reshape(hidden.shape[0], side, side, hidden.shape[-1])


def ref_dinov2_registers(path, x):
    out = T.Dinov2WithRegistersModel.from_pretrained(path)(pixel_values=x)
    return seq_tokens(out.last_hidden_state, 5, 4), out.pooler_output


def ref_siglip(path, x):
    out = T.SiglipModel.from_pretrained(path).vision_model(pixel_values=x)
    return seq_tokens(out.last_hidden_state, 0, 4), out.pooler_output


def ref_clip(path, x):  # pooler_output: the CLS token after post_layernorm (before the visual projection)
    out = T.CLIPModel.from_pretrained(path).vision_model(pixel_values=x)
    return seq_tokens(out.last_hidden_state, 1, 4), out.pooler_output


def ref_convnext(path, x):
    out = T.ConvNextForImageClassification.from_pretrained(path).convnext(pixel_values=x)
    return out.last_hidden_state.permute(0, 2, 3, 1), out.pooler_output


def ref_resnet(path, x):
    out = T.ResNetModel.from_pretrained(path)(pixel_values=x)
    return out.last_hidden_state.permute(0, 2, 3, 1), out.pooler_output.flatten(1)


def ref_swin(path, x):
    out = T.SwinModel.from_pretrained(path)(pixel_values=x)
    return seq_tokens(out.last_hidden_state, 0, 4), out.pooler_output


def ref_deit(path, x):
    hidden = T.DeiTForImageClassificationWithTeacher.from_pretrained(path).deit(pixel_values=x).last_hidden_state
    return seq_tokens(hidden, 2, 4), hidden[:, 0]


# name -> (factory, reference, model class run, (grid, token dim, summary dim, summary kind))
CASES: dict[str, tuple[Callable, Callable, str, tuple]] = {
    "dinov2-registers": (dinov2_registers, ref_dinov2_registers, "Dinov2WithRegistersModel", ((4, 4), 32, 32, "pooled")),
    "siglip": (siglip_full, ref_siglip, "SiglipVisionModel", ((4, 4), 32, 32, "pooled")),
    "clip": (clip_full, ref_clip, "CLIPVisionModel", ((4, 4), 32, 32, "pooled")),
    "convnext": (convnext_classifier, ref_convnext, "ConvNextModel", ((4, 4), 16, 16, "pooled")),
    "resnet": (resnet, ref_resnet, "ResNetModel", ((4, 4), 16, 16, "pooled")),
    "swin": (swin, ref_swin, "SwinModel", ((4, 4), 16, 16, "pooled")),
    "deit-distilled": (deit_distilled, ref_deit, "DeiTModel", ((4, 4), 32, 32, "cls")),
}


def save_checkpoint(model, processor, path: Path) -> str:
    spread(model).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("byo_hf")
    torch.manual_seed(0)
    return {name: save_checkpoint(*factory(), root / name) for name, (factory, *_rest) in CASES.items()}


@pytest.fixture
def odd_images(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(2, 40, 52, 3), dtype=np.uint8)


@pytest.mark.parametrize("case", list(CASES))
def test_tokens_and_summary_match_transformers(case, dirs, odd_images):
    _, reference, model_class, (grid, token_dim, summary_dim, kind) = CASES[case]
    name = f"hf:{dirs[case]}"
    enc = create_encoder(name)
    assert (enc.grid, enc.token_dim, enc.summary_dim, enc.config.summary) == (grid, token_dim, summary_dim, kind)
    assert enc.config.extra["model_class"] == model_class and enc.config.family == "hf"
    assert enc.config == get_encoder_config(name)  # facts known before building agree with the built encoder
    out = enc(odd_images)
    assert tuple(out.tokens.shape) == enc.output_shapes(2)["tokens"]
    x = enc.preprocess(as_uint8_batch(odd_images))
    assert tuple(x.shape) == (2, 3, 32, 32)
    with torch.no_grad():
        tokens, summary = reference(dirs[case], x)
    assert out.tokens.std() > 1e-2
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.summary, summary, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_preprocess_matches_the_image_processor(case, dirs, rng):
    """Blurred noise (like natural images): HF resizes in uint8 / PIL-like, we resize in float and clip once."""
    noise = torch.from_numpy(rng.integers(0, 256, size=(2, 44, 60, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float()
    images = torch.nn.functional.avg_pool2d(noise, 5, 1, 2).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ours = get_encoder_config(f"hf:{dirs[case]}").preprocess(as_uint8_batch(images))
    theirs = T.AutoImageProcessor.from_pretrained(dirs[case])(images=list(images), return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs.float(), atol=0.06, rtol=0)


def test_facts_are_counted_once_and_cached_by_config(dirs, facts_cache, monkeypatch):
    cfg = get_encoder_config(f"hf:{dirs['dinov2-registers']}")
    model = T.Dinov2WithRegistersModel.from_pretrained(dirs["dinov2-registers"])
    assert cfg.params_m == round(sum(p.numel() for p in model.parameters()) / 1e6, 4)
    assert 0 < cfg.gflops < 0.01 and cfg.input_size == 32 and cfg.offline and cfg.hub_id is None
    files = list(facts_cache.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["grid"] == [4, 4]
    deit = get_encoder_config(f"hf:{dirs['deit-distilled']}")
    assert "pooler dropped" in deit.notes  # the checkpoint has no pooler weights: not a random pooler
    monkeypatch.setattr(byo, "_MEMO", {})
    monkeypatch.setattr(byo, "probe", lambda *a: pytest.fail("facts recounted although cached"))
    assert get_encoder_config(f"hf:{dirs['dinov2-registers']}").gflops == cfg.gflops


def to_hub_cache(folder: str | Path, cache: Path, repo_id: str) -> None:
    """Copy a checkpoint folder into the Hugging Face hub cache layout: models--owner--name/{refs/main,
    snapshots/<commit>/...}."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / commit).mkdir(parents=True)
    for f in Path(folder).iterdir():
        (repo / "snapshots" / commit / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_from_the_cache_random_weights_and_other_weights(dirs, tmp_path, monkeypatch, odd_images):
    import huggingface_hub.constants as hub_constants

    to_hub_cache(dirs["swin"], tmp_path / "hub", "acme/tiny-swin")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    enc = create_encoder("hf:acme/tiny-swin")
    assert enc.weights_id == "acme/tiny-swin" and enc.config.hub_id == "acme/tiny-swin"
    ref = create_encoder(f"hf:{dirs['swin']}")(odd_images)
    torch.testing.assert_close(enc(odd_images).tokens, ref.tokens, atol=0, rtol=0)
    state = torch.random.get_rng_state()
    rand = create_encoder("hf:acme/tiny-swin", weights="random:3")
    assert torch.equal(torch.random.get_rng_state(), state) and rand.weights_id == "random:3"
    again = create_encoder("hf:acme/tiny-swin", weights="random:3")(odd_images)
    torch.testing.assert_close(rand(odd_images).tokens, again.tokens)
    assert not torch.allclose(again.tokens, ref.tokens)
    with pytest.raises(CheckpointMismatchError, match="'convnext' checkpoint.*'swin' model"):
        create_encoder("hf:acme/tiny-swin", weights=dirs["convnext"])


# --- errors ------------------------------------------------------------------------------------------------

def test_an_id_missing_offline_names_the_cache(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"'nobody/nothing' is not an existing directory.*empty-cache"):
        create_encoder("hf:nobody/nothing")
    assert main(["encoders", "hf:nobody/nothing"]) == 2
    err = capsys.readouterr().err
    assert "empty-cache" in err and "HF_HUB_OFFLINE=0" in err
    with pytest.raises(WeightsNotFoundError, match="there is no directory"):
        create_encoder(f"hf:{tmp_path / 'no' / 'such' / 'dir'}")


def test_a_text_model_is_not_a_vision_model(tmp_path, capsys):
    bert = T.BertModel(T.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    vocab_size=50))
    bert.save_pretrained(tmp_path / "bert")
    with pytest.raises(InputError, match=r"'bert' model, which is not a vision model.*BertModel \(input: input_ids\)"):
        create_encoder(f"hf:{tmp_path / 'bert'}")
    assert main(["encoders", f"hf:{tmp_path / 'bert'}"]) == 2
    assert "not a vision model" in capsys.readouterr().err


def test_an_id_that_is_not_a_vision_model(tmp_path, monkeypatch, capsys):
    """A hub id found in the cache whose model is an audio encoder (input_values): refused, exit 2."""
    import huggingface_hub.constants as hub_constants

    T.Wav2Vec2Model(T.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
    )).save_pretrained(tmp_path / "wav2vec2")
    T.Wav2Vec2FeatureExtractor().save_pretrained(tmp_path / "wav2vec2")  # its preprocessor_config.json
    to_hub_cache(tmp_path / "wav2vec2", tmp_path / "hub", "acme/tiny-wav2vec2")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError, match=r"'wav2vec2' model, which is not a vision model.*Wav2Vec2Model \(input: "
                                         r"input_values\)"):
        get_encoder_config("hf:acme/tiny-wav2vec2")
    assert main(["encoders", "hf:acme/tiny-wav2vec2"]) == 2
    err = capsys.readouterr().err
    assert "not a vision model" in err and "pixel_values" in err


def test_unreadable_directories(dirs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        create_encoder(f"hf:{empty}")
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "config.json").write_text("{not json")
    with pytest.raises(CheckpointMismatchError, match="could not read .*config.json"):
        create_encoder(f"hf:{garbled}")
    no_processor = tmp_path / "no-processor"
    no_processor.mkdir()
    for f in Path(dirs["resnet"]).iterdir():
        if f.name != "preprocessor_config.json":
            (no_processor / f.name).write_bytes(f.read_bytes())
    with pytest.raises(WeightsNotFoundError, match="no preprocessor_config.json"):
        create_encoder(f"hf:{no_processor}")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for f in Path(dirs["resnet"]).iterdir():
        data = f.read_bytes()
        (truncated / f.name).write_bytes(data[:100] if f.suffix == ".safetensors" else data)
    with pytest.raises(CheckpointMismatchError, match="could not read the weights file"):
        create_encoder(f"hf:{truncated}")
    assert main(["encoders", f"hf:{garbled}"]) == 2
    assert "could not read" in capsys.readouterr().err
    with pytest.raises(WeightsNotFoundError, match="is a file"):
        create_encoder(f"hf:{Path(dirs['resnet']) / 'config.json'}")


def test_facts_of_a_real_size_config_agree_with_the_registry(tmp_path):
    """A config-only directory of DINOv2-S/14 (as facebook/dinov2-small ships it): counted on the meta device."""
    from theia_eval.encoders.hf import dinov2_config

    T.Dinov2Config(**dinov2_config(384, 12, 6)).save_pretrained(tmp_path / "dinov2-small")
    T.BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, resample=3,
                        **IMAGENET).save_pretrained(tmp_path / "dinov2-small")
    ours, entry = get_encoder_config(f"hf:{tmp_path / 'dinov2-small'}"), get_encoder_config("dinov2-vit-s14")
    assert (ours.grid, ours.token_dim, ours.summary_dim, ours.input_size) == (entry.grid, 384, 384, 224)
    assert ours.preprocess == entry.preprocess
    assert abs(ours.params_m - entry.params_m) < 0.01 and abs(ours.gflops - entry.gflops) / entry.gflops < 0.01
    with pytest.raises(WeightsNotFoundError, match="has no weights.*weights=random"):
        create_encoder(f"hf:{tmp_path / 'dinov2-small'}")


@pytest.mark.parametrize("processor, match", [
    (lambda: T.ViTImageProcessor(size={"height": 32, "width": 48}), r"resizes to \{'height': 32, 'width': 48\}"),
    (lambda: T.ViTImageProcessor(size={"height": 32, "width": 32}, resample=0), "resamples with nearest"),
    (lambda: T.ViTImageProcessor(do_resize=False), "does not resize or crop"),
])
def test_image_processors_it_cannot_reproduce_are_refused(processor, match, dirs, tmp_path):
    other = tmp_path / "other-processor"
    other.mkdir()
    for f in Path(dirs["swin"]).iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    (other / "preprocessor_config.json").unlink()
    processor().save_pretrained(other)
    with pytest.raises(InputError, match=f"image processor \\(ViTImageProcessor\\) {match}.*plugin"):
        get_encoder_config(f"hf:{other}")


def test_a_shorter_side_resize_without_crop_gets_a_square_crop(dirs, tmp_path):
    other = tmp_path / "no-crop"
    other.mkdir()
    for f in Path(dirs["swin"]).iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    T.CLIPImageProcessor(size={"shortest_edge": 32}, do_center_crop=False).save_pretrained(other)
    cfg = get_encoder_config(f"hf:{other}")
    assert (cfg.preprocess.resize, cfg.preprocess.crop, cfg.input_size) == (32, 32, 32)
    assert "plus a center crop to 32 px" in cfg.notes
