"""HF transformers encoders (CLIP, DINOv2, ViT, SAM, Depth-Anything): tiny save_pretrained checkpoints loaded
through the registry and checked against transformers called directly, preprocessing against the HF image
processors, registry facts against meta-device counts, and the error paths."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers as T

from theia_eval.encoders import create_encoder, get_encoder_config
from theia_eval.encoders.hf import ENTRIES, meta_gflops, meta_params_m
from theia_eval.encoders.hf_depth import DEPTH, DEPTH_ANYTHING_L, lower_bound_shape
from theia_eval.encoders.hf_sam import SAM, SAM_VIT_H, longest_side_shape
from theia_eval.encoders.images import as_uint8_batch
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


def spread_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with O(1)-scaled noise so outputs are far from constant (HF inits can be ~0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 100
            p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return model


def save(model: torch.nn.Module, path: Path) -> str:
    spread_weights(model).save_pretrained(path)
    return str(path)


# --- tiny upstream-format checkpoints and independent references ------------------------------

def tiny_clip_full() -> torch.nn.Module:  # the layout of openai/clip-vit-*: a full CLIPModel
    return T.CLIPModel(T.CLIPConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=99, max_position_embeddings=16), projection_dim=16))


def tiny_clip_vision() -> torch.nn.Module:
    return T.CLIPVisionModel(T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=2, image_size=56, patch_size=14))


def tiny_dinov2() -> torch.nn.Module:
    return T.Dinov2Model(T.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                        image_size=56, patch_size=14))


def tiny_vit() -> torch.nn.Module:  # google/vit-*-in21k checkpoints carry a pooler: it must be ignored
    return T.ViTModel(T.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  image_size=32, patch_size=8))


def tiny_sam() -> torch.nn.Module:
    return T.SamModel(T.SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=8,
                           output_channels=16, window_size=4, global_attn_indexes=[1], num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16)))


def tiny_depth() -> torch.nn.Module:
    return T.DepthAnythingForDepthEstimation(T.DepthAnythingConfig(
        backbone_config=dict(model_type="dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                             mlp_ratio=2, image_size=56, patch_size=14, out_indices=[1, 2, 3, 4],
                             apply_layernorm=True, reshape_hidden_states=False),
        reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 16, 16], fusion_hidden_size=16, head_hidden_size=8))


def grid_tokens(hidden: torch.Tensor, patch: int, x: torch.Tensor) -> torch.Tensor:
    return hidden.reshape(hidden.shape[0], x.shape[-2] // patch, x.shape[-1] // patch, hidden.shape[-1])


def ref_clip_full(path: str, x: torch.Tensor):
    out = T.CLIPModel.from_pretrained(path).vision_model(pixel_values=x)
    return grid_tokens(out.last_hidden_state[:, 1:], 8, x), out.pooler_output


def ref_clip_vision(path: str, x: torch.Tensor):
    out = T.CLIPVisionModel.from_pretrained(path)(pixel_values=x)
    return grid_tokens(out.last_hidden_state[:, 1:], 14, x), out.pooler_output


def ref_dinov2(path: str, x: torch.Tensor):
    out = T.Dinov2Model.from_pretrained(path)(pixel_values=x)
    return grid_tokens(out.last_hidden_state[:, 1:], 14, x), out.pooler_output


def ref_vit(path: str, x: torch.Tensor):
    out = T.ViTModel.from_pretrained(path)(pixel_values=x)
    return grid_tokens(out.last_hidden_state[:, 1:], 8, x), out.last_hidden_state[:, 0]


def ref_sam(path: str, x: torch.Tensor):
    tokens = T.SamModel.from_pretrained(path).get_image_embeddings(x).permute(0, 2, 3, 1)
    return tokens, tokens.mean(dim=(1, 2))


def ref_depth(path: str, x: torch.Tensor):
    """Theia's DepthAnythingHeadFeature path, step by step: backbone, neck, head.conv1, upsample, head.conv2."""
    m = T.DepthAnythingForDepthEstimation.from_pretrained(path)
    ph, pw = x.shape[-2] // 14, x.shape[-1] // 14
    fused = m.neck(list(m.backbone(x).feature_maps), ph, pw)[-1]
    feat = F.interpolate(m.head.conv1(fused), (ph * 14, pw * 14), mode="bilinear", align_corners=True)
    tokens = F.interpolate(m.head.conv2(feat), (64, 64)).permute(0, 2, 3, 1)
    return tokens, tokens.mean(dim=(1, 2))


# name -> (tiny model factory, reference forward, expected grid, expected token dim, expected summary dim)
CASES: dict[str, tuple[Callable, Callable, tuple[int, int], int, int]] = {
    "clip-vit-l14": (tiny_clip_full, ref_clip_full, (4, 4), 32, 32),
    "clip-vit-b16": (tiny_clip_vision, ref_clip_vision, (4, 4), 32, 32),
    "dinov2-vit-s14": (tiny_dinov2, ref_dinov2, (16, 16), 32, 32),
    "vit-h14-in21k": (tiny_vit, ref_vit, (4, 4), 32, 32),
    "sam-vit-h": (tiny_sam, ref_sam, (8, 8), 16, 16),
    "depth-anything-l": (tiny_depth, ref_depth, (64, 64), 8, 8),
}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    return {name: save(factory(), root / name) for name, (factory, *_rest) in CASES.items()}


@pytest.fixture
def odd_images(rng) -> np.ndarray:
    """Non-square uint8 images of a size no entry uses natively."""
    return rng.integers(0, 256, size=(2, 40, 52, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(CASES))
def test_tokens_and_summary_match_transformers(name, tiny_dirs, odd_images):
    _, reference, grid, token_dim, summary_dim = CASES[name]
    enc = create_encoder(name, weights=tiny_dirs[name])
    assert (enc.grid, enc.token_dim, enc.summary_dim) == (grid, token_dim, summary_dim)
    out = enc(odd_images)
    assert tuple(out.tokens.shape) == enc.output_shapes(2)["tokens"]
    assert tuple(out.summary.shape) == enc.output_shapes(2)["summary"]
    x = enc.preprocess(as_uint8_batch(odd_images))
    with torch.no_grad():
        tokens, summary = reference(tiny_dirs[name], x)
    assert out.tokens.std() > 1e-2  # a meaningful comparison, not two near-constant maps
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.summary, summary, atol=1e-5, rtol=1e-5)


def test_loaded_config_describes_the_tiny_model(tiny_dirs):
    cfg = create_encoder("clip-vit-l14", weights=tiny_dirs["clip-vit-l14"]).config
    entry = get_encoder_config("clip-vit-l14")
    assert (cfg.input_size, cfg.preprocess.resize, cfg.preprocess.crop) == (32, 32, 32)
    assert cfg.preprocess.mean == entry.preprocess.mean and cfg.preprocess.interpolation == "bicubic"
    vision_params = sum(p.numel() for p in T.CLIPVisionModel.from_pretrained(tiny_dirs["clip-vit-l14"]).parameters())
    assert cfg.params_m == round(vision_params / 1e6, 2)
    assert 0 < cfg.gflops < 0.01 < entry.gflops  # recounted for the tiny architecture
    sam = create_encoder("sam-vit-h", weights=tiny_dirs["sam-vit-h"])
    assert (sam.config.input_size, sam.config.preprocess.output_size) == (64, 64)
    assert not hasattr(sam.model, "mask_decoder")  # only the vision encoder is kept


def test_sam_pads_bottom_right_with_zeros(tiny_dirs, odd_images):
    x = get_encoder_config("sam-vit-h").preprocess(as_uint8_batch(odd_images))
    nh, nw = longest_side_shape(40, 52, 1024)
    assert tuple(x.shape) == (2, 3, 1024, 1024) and (nh, nw) == (788, 1024)
    assert x[:, :, nh:].abs().max() == 0 and x[:, :, :nh].abs().min(dim=2).values.max() > 0


def test_depth_resize_keeps_aspect_with_multiples_of_14():
    assert lower_bound_shape(224, 224, 518, 14) == (518, 518)
    assert lower_bound_shape(40, 52, 518, 14) == (518, 672)  # shorter side >= 518 (HF's processor would give 392x518)
    assert lower_bound_shape(1080, 1920, 518, 14) == (518, 924)
    x = get_encoder_config("depth-anything-l").preprocess(torch.zeros(1, 3, 300, 200, dtype=torch.uint8))
    assert tuple(x.shape) == (1, 3, 784, 518)


# --- preprocessing against the HF image processors (torchvision backend; uint8 rounding differs) -------

PROCESSORS: dict[str, Callable[[], object]] = {
    "clip-vit-l14": lambda: T.CLIPImageProcessor(),
    "dinov2-vit-l14": lambda: T.BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                                  do_center_crop=True, resample=3, **IMAGENET),
    "vit-h14-in21k": lambda: T.ViTImageProcessor(),
    "sam-vit-h": lambda: T.SamImageProcessor(),
    "depth-anything-l": lambda: T.DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True,
                                                    ensure_multiple_of=14, resample=3, **IMAGENET),
}


def smooth_images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Blurred noise, like natural images: on CPU HF resizes bicubic in uint8 (PIL-like, clipping between the two
    1-d passes), we resize in float and clip once; they differ only where bicubic overshoots, i.e. at sharp edges."""
    noise = torch.from_numpy(rng.integers(0, 256, size=shape, dtype=np.uint8)).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(noise, 5, 1, 2).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


SMALL_SHAPES = {"depth-anything-l": (2, 48, 48, 3)}  # HF's DPT rule differs from ours for small non-square images


@pytest.mark.parametrize("name", list(PROCESSORS))
@pytest.mark.parametrize("size", ["small", "large"])
def test_preprocess_matches_hf_image_processor(name, size, rng):
    # shapes whose crop offsets are whole numbers: HF crops at floor((H - crop) / 2), images.center_crop rounds
    shape = SMALL_SHAPES.get(name, (2, 40, 50, 3)) if size == "small" else (1, 530, 606, 3)
    images = smooth_images(rng, shape)
    ours = get_encoder_config(name).preprocess(as_uint8_batch(images))
    theirs = PROCESSORS[name]()(images=list(images), return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs.float(), atol=0.05, rtol=0)


# --- registry facts ----------------------------------------------------------------------------

ALL_ENTRIES = ENTRIES + [(SAM_VIT_H, SAM), (DEPTH_ANYTHING_L, DEPTH)]


@pytest.mark.parametrize("entry, family", ALL_ENTRIES, ids=[c.name for c, _ in ALL_ENTRIES])
def test_registry_facts_match_the_real_architecture(entry, family):
    hf_config = family.config_from(entry.extra["hf_config"])
    assert abs(meta_params_m(entry, family) - entry.params_m) < 0.01
    assert abs(meta_gflops(family.encoder, entry, family, hf_config) - entry.gflops) / entry.gflops < 0.01
    x = entry.preprocess(torch.zeros(2, 3, 224, 224, dtype=torch.uint8))  # the stored 224 px images
    assert tuple(x.shape) == (2, 3, entry.input_size, entry.input_size)
    with torch.device("meta"):  # the real-size forward, shapes only
        tokens, summary = family.encoder(entry, family.new_model(hf_config), family).forward_features(x.to("meta"))
    assert tuple(tokens.shape) == (2, *entry.grid, entry.token_dim) and tuple(summary.shape) == (2, entry.summary_dim)
    assert entry.offline is False and entry.hub_id in entry.source
    assert entry.license == {"clip": "MIT"}.get(entry.family, "Apache-2.0")


def test_random_weights_are_seeded_real_architecture(odd_images):
    state = torch.random.get_rng_state()
    a = create_encoder("dinov2-vit-s14", weights="random:1")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.config == get_encoder_config("dinov2-vit-s14") and a.weights_id == "random:1"
    out_a = a(odd_images[:1])
    assert tuple(out_a.tokens.shape) == (1, 16, 16, 384)
    again = create_encoder("dinov2-vit-s14", weights="random:1")(odd_images[:1])
    torch.testing.assert_close(again.tokens, out_a.tokens)
    assert not torch.allclose(create_encoder("dinov2-vit-s14", weights="random:2")(odd_images[:1]).tokens, out_a.tokens)


def test_bfloat16_autocast_is_close_to_float32(tiny_dirs, odd_images):
    ref = create_encoder("vit-b16-in21k", weights=tiny_dirs["vit-h14-in21k"])(odd_images)
    out = create_encoder("vit-b16-in21k", weights=tiny_dirs["vit-h14-in21k"], dtype="bfloat16")(odd_images)
    assert out.tokens.dtype == torch.bfloat16
    torch.testing.assert_close(out.tokens.float(), ref.tokens, atol=0.1, rtol=0.05)


# --- errors --------------------------------------------------------------------------------------

def edited_copy(src: str, dst: Path, **changes) -> str:
    """A copy of a checkpoint directory, with `changes` written into its config.json."""
    dst.mkdir(parents=True)
    for f in Path(src).iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, **changes}))
    return str(dst)


def test_missing_default_weights_name_encoder_and_hub_id(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"clip-vit-l14.*openai/clip-vit-large-patch14.*weights=PATH"):
        create_encoder("clip-vit-l14")


def test_default_weights_come_from_the_hf_cache(tiny_dirs, tmp_path, monkeypatch, odd_images):
    import huggingface_hub.constants as hub_constants

    commit = "0" * 40  # the hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}
    repo = tmp_path / "models--openai--clip-vit-large-patch14"
    edited_copy(tiny_dirs["clip-vit-l14"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    enc = create_encoder("clip-vit-l14")
    assert enc.weights_id == "openai/clip-vit-large-patch14" and enc.grid == (4, 4)
    ref = create_encoder("clip-vit-l14", weights=tiny_dirs["clip-vit-l14"])(odd_images)
    torch.testing.assert_close(enc(odd_images).tokens, ref.tokens, atol=0, rtol=0)


@pytest.mark.parametrize("name, wrong, match", [
    ("clip-vit-l14", "dinov2-vit-s14", r"'dinov2' checkpoint.*clip-vit-l14 loads CLIPVisionModel"),
    ("sam-vit-h", "depth-anything-l", r"'depth_anything' checkpoint.*sam-vit-h loads SamModel"),
    ("dinov2-vit-b14", "vit-h14-in21k", r"'vit' checkpoint.*facebook/dinov2-base"),
])
def test_other_architecture_directory_is_rejected(name, wrong, match, tiny_dirs):
    with pytest.raises(CheckpointMismatchError, match=match):
        create_encoder(name, weights=tiny_dirs[wrong])


def test_incomplete_or_mismatched_checkpoint_is_rejected(tiny_dirs, tmp_path):
    deeper = edited_copy(tiny_dirs["vit-h14-in21k"], tmp_path / "deeper", num_hidden_layers=3)
    with pytest.raises(CheckpointMismatchError, match=r"lacks 16 weight.*'(encoder\.)?layers?\.2\."):
        create_encoder("vit-h14-in21k", weights=deeper)
    wider = edited_copy(tiny_dirs["vit-h14-in21k"], tmp_path / "wider", hidden_size=64, intermediate_size=64)
    shapes = r"shape mismatch at '[^']+': checkpoint \([\d, ]*32\) vs model \([\d, ]*64\)"
    with pytest.raises(CheckpointMismatchError, match=shapes):
        create_encoder("vit-h14-in21k", weights=wider)


def test_not_a_save_pretrained_directory(tiny_dirs, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        create_encoder("dinov2-vit-s14", weights=str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="save_pretrained directory"):
        create_encoder("dinov2-vit-s14", weights=os.path.join(tiny_dirs["dinov2-vit-s14"], "config.json"))
