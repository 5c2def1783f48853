"""The encoder contract: input validation, preprocessing, chunking, dtype, registry errors."""
import numpy as np
import pytest
import torch

from theia_eval.encoders import create_encoder, get_encoder_config, list_encoders
from theia_eval.encoders.images import Preprocess, as_uint8_batch, center_crop, normalize
from theia_eval.errors import InputError, UnknownNameError


def test_nhwc_and_nchw_numpy_and_torch_agree(images):
    enc = create_encoder("pixels")
    a = enc(images)
    b = enc(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.summary, b.summary)
    assert tuple(a.tokens.shape) == enc.output_shapes(3)["tokens"]
    assert tuple(a.summary.shape) == enc.output_shapes(3)["summary"]


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((2, 32, 32, 4), np.uint8), "3 RGB channels"),
        (np.zeros((2, 1, 32, 32), np.uint8), "3 RGB channels"),
        (np.zeros((32, 32, 3), np.uint8), r"images\[None\]"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty batch"),
        (np.zeros((1, 8, 8, 3), np.uint8), "too small"),
        ([[1, 2, 3]], "numpy array or torch tensor"),
    ],
)
def test_bad_images_raise_with_fix(bad, match):
    with pytest.raises(InputError, match=match):
        create_encoder("pixels")(bad)


def test_unknown_encoder_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean: pixels"):
        create_encoder("pixel")


def test_list_encoders_pattern():
    assert "pixels" in list_encoders()
    assert list_encoders("pix*") == ["pixels"]
    assert list_encoders("no-such-*") == []


def test_chunked_batches_equal_one_batch(images):
    enc = create_encoder("pixels")
    whole = enc(images)
    enc.max_batch = 2
    chunked = enc(images)
    assert torch.equal(whole.tokens, chunked.tokens)


def test_bf16_output_dtype(images):
    enc = create_encoder("pixels", dtype="bf16")
    out = enc(images)
    assert out.tokens.dtype == torch.bfloat16 and out.summary.dtype == torch.bfloat16
    with pytest.raises(InputError, match="unknown dtype"):
        create_encoder("pixels", dtype="float8")


def test_encoder_is_frozen():
    enc = create_encoder("pixels")
    assert not enc.training
    assert all(not p.requires_grad for p in enc.parameters())


def test_center_crop_and_resize_geometry():
    x = torch.arange(2 * 3 * 10 * 12, dtype=torch.float32).reshape(2, 3, 10, 12)
    c = center_crop(x, 6)
    assert c.shape == (2, 3, 6, 6)
    assert torch.equal(c, x[..., 2:8, 3:9])
    pre = Preprocess(resize=20, crop=16, mean=(0, 0, 0), std=(1, 1, 1))
    out = pre(torch.full((1, 3, 40, 60), 255, dtype=torch.uint8))
    assert out.shape == (1, 3, 16, 16)
    assert torch.allclose(out, torch.ones_like(out))
    assert Preprocess(resize=256, crop=224).output_size == 224


def test_normalize_matches_formula():
    x = torch.full((1, 3, 2, 2), 127.5)
    y = normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.allclose(y, torch.zeros_like(y), atol=1e-6)
    # scale=1 keeps the 0-255 convention: mean/std are rescaled to match
    z = normalize(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), scale=1.0)
    assert torch.allclose(z, y, atol=1e-6)


def test_as_uint8_batch_keeps_values():
    img = np.random.default_rng(1).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    out = as_uint8_batch(img)
    assert out.shape == (2, 3, 20, 30)
    assert np.array_equal(out.permute(0, 2, 3, 1).numpy(), img)


def test_config_known_without_forward():
    cfg = get_encoder_config("pixels")
    assert cfg.grid == (16, 16) and cfg.token_dim == 48 and cfg.summary_dim == 768


def test_blind_control_sees_nothing(images):
    enc = create_encoder("blind")
    a, b = enc(images), enc(255 - images)
    assert a.tokens.shape == (3, 1, 1, 1) and a.summary.shape == (3, 1)
    assert torch.equal(a.summary, b.summary) and float(a.summary.abs().sum()) == 0.0
