"""Translator heads: reference structure and official key names, shapes for any grid, channels-last LayerNorm."""
import pytest
import torch
from torch import nn

from theia_eval.distill.translators import MapLayerNorm, Translator, build_head, lconv_head
from theia_eval.errors import InputError


def test_lconv_16_has_official_keys_and_shapes():
    head = lconv_head((48, 14, 14), (40, 16, 16))
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["pad.1.weight"] == (48, 48, 3, 3)  # ConvTranspose2d(C, C, 3) grows 14 -> 16
    assert shapes["adapter.0.weight"] == (48, 16, 16)  # LayerNorm over (C, H, W)
    assert shapes["adapter.1.weight"] == (48, 48, 3, 3) and shapes["adapter.4.weight"] == (48, 48, 3, 3)
    assert shapes["adapter.3.weight"] == shapes["adapter.6.weight"] == (48, 16, 16)
    assert shapes["adapter.8.weight"] == (40, 48)  # final Linear(C, C_teacher)
    assert head(torch.randn(2, 196, 48)).shape == (2, 256, 40)


def test_lconv_64_grows_through_31():
    head = lconv_head((16, 14, 14), (8, 64, 64))
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["adapter.3.weight"] == (16, 31, 31) and shapes["adapter.6.weight"] == (16, 64, 64)
    assert head(torch.randn(2, 196, 16)).shape == (2, 64 * 64, 8)


def test_lconv_7_is_the_reference_layout():
    head = build_head("auto", (24, 14, 14), (1280, 7, 7))
    assert head.kind == "lconv"
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {"adapter.0.weight": (24, 14, 14), "adapter.0.bias": (24, 14, 14),
                      "adapter.1.weight": (24, 24, 4, 4), "adapter.1.bias": (24,),  # Conv4x4/2: 14 -> 7
                      "adapter.3.weight": (24, 7, 7), "adapter.3.bias": (24, 7, 7),
                      "adapter.5.weight": (1280, 24), "adapter.5.bias": (1280,)}
    assert head(torch.randn(3, 196, 24)).shape == (3, 49, 1280)


@pytest.mark.parametrize("target", [(5, 37, 37), (12, 4, 9), (8, 8, 8)])
def test_general_head_maps_to_any_grid(target):
    head = build_head("auto", (24, 14, 14), target)
    assert head.kind == "general"
    c, h, w = target
    assert head(torch.randn(3, 196, 24)).shape == (3, h * w, c)


def test_lconv_refuses_unsupported_grid_and_unknown_kind():
    with pytest.raises(InputError, match="translator=auto or general"):
        lconv_head((24, 14, 14), (8, 37, 37))
    with pytest.raises(InputError, match="unknown translator"):
        build_head("mlp", (24, 14, 14), (8, 16, 16))


def test_map_layernorm_equals_layernorm_over_chw():
    torch.manual_seed(0)
    ours, ref = MapLayerNorm((6, 5, 4)), nn.LayerNorm([6, 5, 4])
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 6, 5, 4)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(x.to(memory_format=torch.channels_last)), ref(x), atol=1e-5, rtol=1e-5)


def test_translator_keys_are_per_teacher_id():
    tr = Translator("auto", (16, 14, 14), {"facebook/dinov2-large": (8, 16, 16), "efficientnet-lite0": (20, 7, 7)})
    keys = set(tr.state_dict())
    assert "translator_heads.facebook/dinov2-large.pad.1.weight" in keys
    assert "translator_heads.efficientnet-lite0.adapter.0.weight" in keys
    out = tr(torch.randn(2, 196, 16))
    assert out["facebook/dinov2-large"].shape == (2, 256, 8) and out["efficientnet-lite0"].shape == (2, 49, 20)
