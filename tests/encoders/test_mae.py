"""VC-1 / MVP entries: MAE-format checkpoints load into timm ViTs and match an independent forward."""
import math

import pytest
import torch
import torch.nn.functional as F

from theia_eval.encoders import create_encoder, get_encoder_config
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError

WIDTH, DEPTH, PATCH, SIZE = 64, 2, 16, 64


def tiny_mae_state(width=WIDTH, depth=DEPTH, patch=PATCH, size=SIZE, seed=0) -> dict[str, torch.Tensor]:
    """A random MAE pretraining state dict (encoder + decoder + mask token), written key by key."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape, s=0.05: torch.randn(*shape, generator=g) * s  # noqa: E731
    n, hidden = (size // patch) ** 2, 4 * width
    sd = {"cls_token": rnd(1, 1, width), "pos_embed": rnd(1, n + 1, width, s=0.5), "mask_token": rnd(1, 1, 32),
          "patch_embed.proj.weight": rnd(width, 3, patch, patch), "patch_embed.proj.bias": rnd(width)}
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": 1 + rnd(width), p + "norm1.bias": rnd(width),
                   p + "attn.qkv.weight": rnd(3 * width, width, s=0.2), p + "attn.qkv.bias": rnd(3 * width),
                   p + "attn.proj.weight": rnd(width, width, s=0.2), p + "attn.proj.bias": rnd(width),
                   p + "norm2.weight": 1 + rnd(width), p + "norm2.bias": rnd(width),
                   p + "mlp.fc1.weight": rnd(hidden, width, s=0.2), p + "mlp.fc1.bias": rnd(hidden),
                   p + "mlp.fc2.weight": rnd(width, hidden, s=0.2), p + "mlp.fc2.bias": rnd(width)})
    sd.update({"norm.weight": 1 + rnd(width), "norm.bias": rnd(width),
               "decoder_embed.weight": rnd(32, width), "decoder_embed.bias": rnd(32),
               "decoder_pos_embed": rnd(1, n + 1, 32), "decoder_blocks.0.norm1.weight": rnd(32),
               "decoder_norm.weight": rnd(32), "decoder_pred.weight": rnd(patch * patch * 3, 32)})
    return sd


def save_mae(tmp_path, sd, name="mae.pth"):
    path = tmp_path / name
    torch.save({"model": sd, "epoch": 3}, path)
    return path


def reference_forward(sd: dict, x: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE ViT forward written with plain torch ops from the raw state dict: (CLS, patch tokens)."""
    w = sd["cls_token"].shape[-1]
    ln = lambda t, k: F.layer_norm(t, (w,), sd[k + ".weight"], sd[k + ".bias"], eps=1e-6)  # noqa: E731
    lin = lambda t, k: F.linear(t, sd[k + ".weight"], sd[k + ".bias"])  # noqa: E731
    patch = sd["patch_embed.proj.weight"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], dim=1) + sd["pos_embed"]
    b, n, _ = t.shape
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        q, k, v = lin(ln(t, p + "norm1"), p + "attn.qkv").reshape(b, n, 3, heads, w // heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) / math.sqrt(w // heads)).softmax(dim=-1)
        t = t + lin((att @ v).transpose(1, 2).reshape(b, n, w), p + "attn.proj")
        t = t + lin(F.gelu(lin(ln(t, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    t = ln(t, "norm")
    return t[:, 0], t[:, 1:]


def encoder_input(enc, images):
    return enc.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2))


def test_entries_describe_upstream_architectures():
    base, large, mvp_s, mvp_l = (get_encoder_config(n) for n in ("vc1-base", "vc1-large", "mvp-small", "mvp-large"))
    assert (base.token_dim, base.grid, base.params_m, round(base.gflops, 1)) == (768, (14, 14), 85.8, 35.1)
    assert (large.token_dim, large.grid, large.params_m, round(large.gflops)) == (1024, (14, 14), 303.3, 123)
    assert mvp_s.extra["vit"]["num_heads"] == 12 and mvp_s.token_dim == 384
    assert (mvp_l.input_size, mvp_l.grid, mvp_l.preprocess.resize, mvp_l.preprocess.crop) == (256, (16, 16), 292, 256)
    for cfg in (base, large, mvp_s, mvp_l):
        pre = cfg.preprocess
        assert (pre.interpolation, pre.mean, pre.std, pre.scale) == ("bicubic", IMAGENET_MEAN, IMAGENET_STD, 255.0)
        assert cfg.summary == "cls" and not cfg.offline
    assert (base.preprocess.resize, base.preprocess.crop) == (256, 224)
    assert base.license == "CC-BY-NC 4.0"


def test_tiny_checkpoint_matches_independent_forward(tmp_path, images):
    sd = tiny_mae_state()
    enc = create_encoder("vc1-base", weights=str(save_mae(tmp_path, sd)), img_size=SIZE)
    assert (enc.grid, enc.token_dim, enc.summary_dim, enc.input_size) == ((4, 4), WIDTH, WIDTH, SIZE)
    assert enc.vit.norm.eps == 1e-6 and enc.vit.blocks[1].norm1.eps == 1e-6  # MAE's LayerNorm
    assert enc.config.params_m == round(sum(p.numel() for p in enc.parameters()) / 1e6, 2)
    assert (enc.config.preprocess.resize, enc.config.preprocess.crop) == (73, 64)
    out = enc(images)
    assert tuple(out.tokens.shape) == enc.output_shapes(len(images))["tokens"]
    cls, tokens = reference_forward(sd, encoder_input(enc, images), heads=1)  # width 64 -> 1 head of 64
    torch.testing.assert_close(out.summary, cls, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.tokens, tokens.reshape(len(images), 4, 4, WIDTH), atol=1e-5, rtol=1e-5)


def test_pos_embed_resized_to_entry_grid(tmp_path, images):
    from timm.layers import resample_abs_pos_embed

    sd = tiny_mae_state()
    enc = create_encoder("mvp-base", weights=str(save_mae(tmp_path, sd)))  # 4x4 checkpoint grid -> 14x14 at 224
    assert enc.grid == (14, 14) and enc.input_size == 224
    resized = dict(sd, pos_embed=resample_abs_pos_embed(sd["pos_embed"], [14, 14], [4, 4], num_prefix_tokens=1,
                                                        interpolation="bicubic", antialias=False))
    torch.testing.assert_close(enc.vit.pos_embed, resized["pos_embed"], atol=1e-6, rtol=1e-6)
    out = enc(images[:2])
    cls, tokens = reference_forward(resized, encoder_input(enc, images[:2]), heads=1)
    torch.testing.assert_close(out.summary, cls, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.tokens.flatten(1, 2), tokens, atol=1e-5, rtol=1e-5)


def test_heads_come_from_entry_table_or_option(tmp_path, images):
    path = str(save_mae(tmp_path, tiny_mae_state(width=384, depth=1)))
    assert create_encoder("mvp-small", weights=path, img_size=SIZE).vit.blocks[0].attn.num_heads == 12  # MVP ViT-S
    assert create_encoder("vc1-base", weights=path, img_size=SIZE).vit.blocks[0].attn.num_heads == 6  # DeiT-S
    odd = tiny_mae_state(width=48)
    odd_path = str(save_mae(tmp_path, odd, "odd.pth"))
    with pytest.raises(CheckpointMismatchError, match="num_heads=N"):
        create_encoder("vc1-base", weights=odd_path, img_size=SIZE)
    enc = create_encoder("vc1-base", weights=odd_path, img_size=SIZE, num_heads=4)
    cls, _ = reference_forward(odd, encoder_input(enc, images), heads=4)
    torch.testing.assert_close(enc(images).summary, cls, atol=1e-5, rtol=1e-5)


def test_missing_key_is_named(tmp_path):
    sd = tiny_mae_state()
    del sd["blocks.1.attn.proj.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing key 'blocks\.1\.attn\.proj\.weight'"):
        create_encoder("vc1-base", weights=str(save_mae(tmp_path, sd)))


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    sd = tiny_mae_state()
    sd["blocks.0.mlp.fc2.weight"] = torch.zeros(WIDTH, 100)
    with pytest.raises(CheckpointMismatchError, match=r"'blocks\.0\.mlp\.fc2\.weight'.*\(64, 100\).*\(64, 256\)"):
        create_encoder("vc1-large", weights=str(save_mae(tmp_path, sd)))


def test_not_mae_format_says_how_to_wrap(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(tiny_mae_state(), path)
    with pytest.raises(CheckpointMismatchError, match=r"key 'model'.*torch.save\(\{'model'"):
        create_encoder("vc1-base", weights=str(path))


def test_default_weights_missing_says_where_to_get_them(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"vc1_vitb\.pth.*weights="):
        create_encoder("vc1-base")
    with pytest.raises(WeightsNotFoundError, match="mae_missing.pth"):
        create_encoder("mvp-large", weights=str(tmp_path / "mae_missing.pth"))


def test_random_weights_real_architecture_seeded(images):
    a = create_encoder("mvp-small", weights="random:3")
    assert a.config is get_encoder_config("mvp-small") and a.weights_id == "random:3"
    assert a.vit.blocks[0].attn.num_heads == 12 and len(a.vit.blocks) == 12
    out = a(images[:1])
    assert out.tokens.shape == (1, 14, 14, 384) and out.summary.shape == (1, 384)
    again = create_encoder("mvp-small", weights="random:3")(images[:1])
    other = create_encoder("mvp-small", weights="random:4")(images[:1])
    assert torch.equal(out.summary, again.summary)
    assert not torch.allclose(out.summary, other.summary)


class Opaque:
    """Stands for a pickled Python object that weights_only loading refuses."""


def test_mae_args_load_safely_and_untrusted_objects_need_opt_in(tmp_path, images):
    import argparse

    sd = tiny_mae_state()
    torch.save({"model": sd, "args": argparse.Namespace(model="mae_vit_tiny", mask_ratio=0.75)}, tmp_path / "a.pth")
    enc = create_encoder("vc1-base", weights=str(tmp_path / "a.pth"), img_size=SIZE)
    torch.testing.assert_close(enc(images).summary, reference_forward(sd, encoder_input(enc, images), 1)[0],
                               atol=1e-5, rtol=1e-5)
    torch.save({"model": sd, "extra": Opaque()}, tmp_path / "b.pth")
    with pytest.raises(CheckpointMismatchError, match="was not unpickled.*Re-save only its tensors") as err:
        create_encoder("vc1-base", weights=str(tmp_path / "b.pth"), img_size=SIZE)
    assert "trust" not in str(err.value)  # the hint never advises unpickling an unknown file
    trusted = create_encoder("vc1-base", weights=str(tmp_path / "b.pth"), img_size=SIZE, trust_checkpoint=True)
    assert trusted.grid == (4, 4)
