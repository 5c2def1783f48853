"""Theia students: official-layout loading checked against transformers' own ViTModel, reduce options,
export/load round trips, mismatch and missing-weights errors, seeded random controls."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import ViTConfig, ViTModel

from theia_eval.encoders import create_encoder, get_encoder_config
from theia_eval.encoders.theia_format import (
    STUDENT_SIZES,
    build_student,
    export_theia,
    load_theia_backbone,
    read_theia_checkpoint,
)
from theia_eval.errors import CheckpointMismatchError, InputError, UnknownNameError, WeightsNotFoundError

TEACHER = "facebook/dinov2-large"
LAYER_PARAMS = {  # official (transformers-4) per-layer names, written out independently of the package
    "attention.attention.query": "qkv", "attention.attention.key": "qkv", "attention.attention.value": "qkv",
    "attention.output.dense": "qkv", "intermediate.dense": "up", "output.dense": "down",
    "layernorm_before": "norm", "layernorm_after": "norm",
}


def official_state(width: int, depth: int, mlp: int, patch: int, image: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the official Theia key names, with a fake translator head."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.05, offset=0.0):
        return offset + scale * torch.randn(*shape, generator=g)

    n = (image // patch) ** 2
    pre = "backbone.model."
    st = {pre + "embeddings.cls_token": rnd(1, 1, width, scale=0.5),
          pre + "embeddings.position_embeddings": rnd(1, n + 1, width, scale=0.5),
          pre + "embeddings.patch_embeddings.projection.weight": rnd(width, 3, patch, patch),
          pre + "embeddings.patch_embeddings.projection.bias": rnd(width),
          pre + "layernorm.weight": rnd(width, scale=0.2, offset=1.0), pre + "layernorm.bias": rnd(width)}
    shapes = {"qkv": (width, width), "up": (mlp, width), "down": (width, mlp), "norm": (width,)}
    for i in range(depth):
        for name, kind in LAYER_PARAMS.items():
            w_shape = shapes[kind]
            st[f"{pre}encoder.layer.{i}.{name}.weight"] = rnd(*w_shape, scale=0.2, offset=1.0) if kind == "norm" \
                else rnd(*w_shape, scale=0.9 / w_shape[1] ** 0.5)
            st[f"{pre}encoder.layer.{i}.{name}.bias"] = rnd(w_shape[0])
    st[f"translator.translator_heads.{TEACHER}.adapter.0.weight"] = rnd(1024, width)
    st[f"translator.translator_heads.{TEACHER}.adapter.0.bias"] = rnd(1024)
    st["translator.translator_heads.openai/clip-vit-large-patch14.pad.1.weight"] = rnd(width, width, 3, 3)
    return st


def write_checkpoint(path, state, config: dict | None = None):
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


def reference_vit(tmp_path, state, width, depth, heads, mlp, patch, image) -> ViTModel:
    """transformers' own ViTModel loaded from the backbone tensors (its loader maps the old key names)."""
    ref_dir = tmp_path / "hf_reference"
    cfg = ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=mlp,
                    patch_size=patch, image_size=image, layer_norm_eps=1e-12, qkv_bias=True)
    cfg.save_pretrained(ref_dir)
    plain = {k[len("backbone.model."):]: v for k, v in state.items() if k.startswith("backbone.model.")}
    save_file(plain, str(ref_dir / "model.safetensors"), metadata={"format": "pt"})
    model, info = ViTModel.from_pretrained(ref_dir, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    return model.eval()


def images(n=2, h=72, w=88, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def expected_input(imgs: np.ndarray, size: int) -> torch.Tensor:
    """Squash-resize (bilinear, antialiased), [0,1], mean = std = 0.5: written out independently."""
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x / 255.0 - 0.5) / 0.5


SMALL = dict(width=32, depth=2, mlp=64, patch=16, image=64)  # 4x4 grid
SMALL_CONFIG = {"num_attention_heads": 2, "teacher_ids": [TEACHER, "openai/clip-vit-large-patch14"]}


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("theia_small")
    state = official_state(**SMALL)
    ckpt = write_checkpoint(tmp / "ckpt", state, SMALL_CONFIG)
    ref = reference_vit(tmp, state, heads=2, **SMALL)
    return ckpt, state, ref


def run_reference(ref: ViTModel, imgs: np.ndarray, size: int) -> torch.Tensor:
    with torch.no_grad():
        return ref(pixel_values=expected_input(imgs, size)).last_hidden_state


def test_generic_entry_matches_transformers(small_ckpt):
    ckpt, _, ref = small_ckpt
    enc = create_encoder("theia", weights=str(ckpt))
    assert (enc.grid, enc.token_dim, enc.summary_dim, enc.input_size) == ((4, 4), 32, 32, 64)
    imgs = images()
    torch.testing.assert_close(enc.preprocess(torch.from_numpy(imgs).permute(0, 3, 1, 2)), expected_input(imgs, 64),
                               atol=1e-5, rtol=0)
    out = enc(imgs)
    hidden = run_reference(ref, imgs, 64)
    assert out.tokens.shape == (2, 4, 4, 32)
    torch.testing.assert_close(out.tokens, hidden[:, 1:].reshape(2, 4, 4, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.summary, hidden[:, 0], atol=1e-5, rtol=0)  # default summary: [CLS]
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training


@pytest.mark.parametrize("reduce", ["cls", "mean", "max", "none"])
def test_feature_reduce_gives_documented_summary(small_ckpt, reduce):
    ckpt, _, ref = small_ckpt
    enc = create_encoder("theia", weights=str(ckpt), feature_reduce=reduce)
    imgs = images(seed=1)
    out = enc(imgs)
    hidden = run_reference(ref, imgs, 64)
    tokens = hidden[:, 1:].reshape(2, 4, 4, 32)
    expected = {"cls": hidden[:, 0], "mean": tokens.mean(dim=(1, 2)), "max": tokens.amax(dim=(1, 2)),
                "none": tokens.reshape(2, -1)}[reduce]
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=0)  # tokens never depend on the option
    torch.testing.assert_close(out.summary, expected, atol=1e-5, rtol=0)
    assert enc.summary_dim == out.summary.shape[1] == (4 * 4 * 32 if reduce == "none" else 32)
    assert enc.config.extra["feature_reduce"] == reduce


def test_feature_reduce_options_differ_and_bad_option_raises(small_ckpt):
    ckpt, _, _ = small_ckpt
    imgs = images(seed=2)
    summaries = {r: create_encoder("theia", weights=str(ckpt), feature_reduce=r)(imgs).summary
                 for r in ("cls", "mean", "max")}
    assert not torch.allclose(summaries["cls"], summaries["mean"])
    assert not torch.allclose(summaries["mean"], summaries["max"])
    with pytest.raises(InputError, match="feature_reduce 'avg'"):
        create_encoder("theia", weights=str(ckpt), feature_reduce="avg")


def test_file_path_and_run_dir_with_export(small_ckpt, tmp_path):
    ckpt, state, _ = small_ckpt
    write_checkpoint(tmp_path / "run" / "export", state, SMALL_CONFIG)
    imgs = images(seed=3)
    want = create_encoder("theia", weights=str(ckpt))(imgs).tokens
    from_run = create_encoder("theia", weights=str(tmp_path / "run"))(imgs).tokens
    from_file = create_encoder("theia", weights=str(ckpt / "model.safetensors"))(imgs).tokens
    assert torch.equal(from_run, want) and torch.equal(from_file, want)


def test_translator_heads_are_read_but_not_loaded(small_ckpt):
    ckpt, _, _ = small_ckpt
    read = read_theia_checkpoint(ckpt)
    assert read.teacher_ids == sorted([TEACHER, "openai/clip-vit-large-patch14"])
    assert set(read.translators[TEACHER]) == {"adapter.0.weight", "adapter.0.bias"}
    model, meta = load_theia_backbone(ckpt)
    assert meta["teacher_ids"] == read.teacher_ids and meta["size"].heads == 2


def test_heads_unknown_without_config_asks_for_num_heads(small_ckpt, tmp_path):
    _, state, ref = small_ckpt
    bare = write_checkpoint(tmp_path / "bare", state)  # width 32 is not a DeiT width; no config.json
    with pytest.raises(InputError, match="num_heads"):
        create_encoder("theia", weights=str(bare))
    enc = create_encoder("theia", weights=str(bare), num_heads=2)
    imgs = images(seed=4)
    torch.testing.assert_close(enc(imgs).tokens, run_reference(ref, imgs, 64)[:, 1:].reshape(2, 4, 4, 32),
                               atol=1e-5, rtol=0)


def test_theia_tiny_official_shapes_224(tmp_path):
    s = STUDENT_SIZES["tiny"]
    dims = dict(width=s.width, depth=s.depth, mlp=s.mlp, patch=16, image=224)
    state = official_state(**dims, seed=5)
    ckpt = write_checkpoint(tmp_path / "tiny", state)  # no config.json: heads from the DeiT width table (3)
    ref = reference_vit(tmp_path, state, heads=3, **dims)
    enc = create_encoder("theia-tiny", weights=str(ckpt), feature_reduce="mean")
    entry = get_encoder_config("theia-tiny")
    assert (enc.grid, enc.token_dim, enc.summary_dim, enc.config.params_m) == ((14, 14), 192, 192, entry.params_m)
    assert enc.config.summary == "mean" and entry.summary == "cls"
    imgs = images(n=2, h=120, w=160, seed=6)
    out = enc(imgs)
    hidden = run_reference(ref, imgs, 224)
    tokens = hidden[:, 1:].reshape(2, 14, 14, 192)
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.summary, tokens.mean(dim=(1, 2)), atol=1e-5, rtol=0)


def test_sized_entry_describes_a_different_loaded_architecture(small_ckpt):
    ckpt, _, _ = small_ckpt
    enc = create_encoder("theia-small", weights=str(ckpt))
    assert (enc.grid, enc.token_dim, enc.input_size) == ((4, 4), 32, 64)
    assert enc.config.params_m == pytest.approx(sum(p.numel() for p in enc.backbone.parameters()) / 1e6, abs=1e-3)


class FakeTranslator(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.pad = nn.Sequential(nn.Identity(), nn.ConvTranspose2d(width, width, 3))
        self.adapter = nn.Sequential(nn.Linear(width, 8))


def test_export_load_round_trip(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        student = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                     patch_size=16, image_size=48), add_pooling_layer=False).eval()
        heads = {TEACHER: FakeTranslator(32), "google/vit-huge-patch14-224-in21k": FakeTranslator(32)}
    out_dir = export_theia(student, tmp_path / "exp", translators=heads, metadata={"step": 3})
    state = load_file(str(out_dir / "model.safetensors"))
    expected_backbone = set(official_state(width=32, depth=2, mlp=48, patch=16, image=48))
    expected_backbone = {k for k in expected_backbone if k.startswith("backbone.model.")}
    expected_heads = {f"translator.translator_heads.{t}.{n}" for t in heads for n in heads[t].state_dict()}
    assert set(state) == expected_backbone | expected_heads
    cfg = json.loads((out_dir / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["patch_size"],
            cfg["image_size"], cfg["metadata"]) == (32, 2, 4, 16, 48, {"step": 3})
    assert cfg["teacher_ids"] == sorted(heads) and set(cfg["feature_reduce_options"]) == {"cls", "mean", "max", "none"}
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]  # no temp dirs left behind

    loaded, meta = load_theia_backbone(out_dir)
    assert meta["teacher_ids"] == sorted(heads) and meta["size"].heads == 4
    imgs = images(seed=8)
    enc = create_encoder("theia", weights=str(out_dir))
    with torch.no_grad():
        direct = student(pixel_values=expected_input(imgs, 48)).last_hidden_state
    assert torch.equal(enc(imgs).tokens, direct[:, 1:].reshape(2, 3, 3, 32))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), student.state_dict().values()))

    torch.nn.init.zeros_(student.layernorm.bias)  # overwrite an existing export: the new one wins
    export_theia(student, out_dir)
    assert torch.equal(load_file(str(out_dir / "model.safetensors"))["backbone.model.layernorm.bias"], torch.zeros(32))
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_export_refuses_pooler(tmp_path):
    with_pooler = ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                     image_size=32, patch_size=16), add_pooling_layer=True)
    with pytest.raises(InputError, match="pooler"):
        export_theia(with_pooler, tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_renamed_key_raises_naming_it(small_ckpt, tmp_path):
    _, state, _ = small_ckpt
    bad = dict(state)
    good_key = "backbone.model.encoder.layer.1.attention.attention.query.weight"
    bad["backbone.model.encoder.layer.1.attention.attention.qry.weight"] = bad.pop(good_key)
    ckpt = write_checkpoint(tmp_path / "renamed", bad, SMALL_CONFIG)
    with pytest.raises(CheckpointMismatchError, match=f"missing key '{good_key}'"):
        create_encoder("theia", weights=str(ckpt))


def test_wrong_shape_raises_naming_key_and_shapes(small_ckpt, tmp_path):
    _, state, _ = small_ckpt
    bad = dict(state)
    bad["backbone.model.encoder.layer.0.intermediate.dense.bias"] = torch.zeros(65)
    ckpt = write_checkpoint(tmp_path / "shape", bad, SMALL_CONFIG)
    with pytest.raises(CheckpointMismatchError,
                       match=r"'backbone\.model\.encoder\.layer\.0\.intermediate\.dense\.bias': "
                             r"checkpoint \(65,\) vs model \(64,\)"):
        create_encoder("theia", weights=str(ckpt))


def test_foreign_key_and_config_disagreement_raise(small_ckpt, tmp_path):
    _, state, _ = small_ckpt
    ckpt = write_checkpoint(tmp_path / "foreign", {**state, "head.weight": torch.zeros(3)}, SMALL_CONFIG)
    with pytest.raises(CheckpointMismatchError, match="unexpected key 'head.weight'"):
        create_encoder("theia", weights=str(ckpt))
    ckpt = write_checkpoint(tmp_path / "disagree", state, {**SMALL_CONFIG, "hidden_size": 64})
    with pytest.raises(CheckpointMismatchError, match="hidden_size=64"):
        create_encoder("theia", weights=str(ckpt))


def test_missing_weights_messages(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(WeightsNotFoundError, match="theaiinstitute/theia-small-patch16-224-cdiv"):
        create_encoder("theia-small")
    with pytest.raises(WeightsNotFoundError, match="weights=PATH"):
        create_encoder("theia")
    with pytest.raises(WeightsNotFoundError, match="model.safetensors"):
        create_encoder("theia", weights=str(tmp_path))  # an existing dir without a checkpoint
    with pytest.raises(WeightsNotFoundError, match="no such file"):
        create_encoder("theia", weights=str(tmp_path / "nowhere"))


def test_random_vit_tiny_is_seeded():
    imgs = images(n=1, seed=9)
    state_before = torch.random.get_rng_state()
    a, b = create_encoder("random-vit-tiny"), create_encoder("random-vit-tiny", weights="random:0")
    c = create_encoder("random-vit-tiny", weights="random:1")
    assert torch.equal(torch.random.get_rng_state(), state_before)  # global RNG untouched
    assert a.weights_id == "random:0" and c.weights_id == "random:1"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ta, tc = a(imgs).tokens, c(imgs).tokens
    assert torch.equal(ta, b(imgs).tokens) and not torch.allclose(ta, tc)
    assert ta.shape == (1, 14, 14, 192)
    with pytest.raises(InputError, match="random-weight control"):
        create_encoder("random-vit-nano", weights="/some/checkpoint")


def test_build_student_sizes_match_entry_facts():
    nano = build_student("nano")
    c = nano.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.patch_size,
            c.image_size) == (128, 6, 4, 512, 16, 224)
    assert nano.pooler is None and nano.training  # a normal trainable module
    n_params = sum(p.numel() for p in nano.parameters())
    assert get_encoder_config("random-vit-nano").params_m == pytest.approx(n_params / 1e6, abs=1e-3)
    assert get_encoder_config("theia-base").params_m == pytest.approx(85.8, abs=0.1)  # ViT-B/16 without head
    with pytest.raises(UnknownNameError, match="tiny"):
        build_student("tinny")
