"""R3M entries: R3M's model.pt format ('r3m' -> 'module.convnet.' keys) loads into torchvision ResNets."""
import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF

from theia_eval.encoders import create_encoder, get_encoder_config
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError


def random_resnet(depth: int, seed: int = 0) -> torch.nn.Module:
    """A torchvision ResNet with random weights and random BatchNorm statistics, fc removed as R3M does."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    net.fc = torch.nn.Identity()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def save_r3m(tmp_path, net: torch.nn.Module, name: str = "model.pt"):
    """R3M's model.pt layout: {'r3m': DataParallel(R3M).state_dict()} incl. language-reward keys."""
    state = {f"module.convnet.{k}": v for k, v in net.state_dict().items()}
    state["module.lang_rew.pred.0.weight"] = torch.randn(16, 8)
    state["module.lang_enc.proj.bias"] = torch.randn(8)
    path = tmp_path / name
    torch.save({"r3m": state, "optimizer": {"lr": 1e-4}}, path)
    return path


@pytest.fixture(scope="module")
def resnet18():
    return random_resnet(18)


def test_entries_facts():
    for depth, width in ((18, 512), (34, 512), (50, 2048)):
        cfg = get_encoder_config(f"r3m-{depth}")
        assert (cfg.token_dim, cfg.summary_dim, cfg.grid, cfg.input_size) == (width, width, (7, 7), 224)
        assert cfg.license == "MIT" and not cfg.offline
        pre = cfg.preprocess
        assert (pre.resize, pre.crop, pre.scale, pre.mean, pre.std) == (256, 224, 255.0, IMAGENET_MEAN, IMAGENET_STD)
    assert (get_encoder_config("r3m-50").params_m, get_encoder_config("r3m-50").gflops) == (23.51, 8.17)


def test_preprocess_is_r3m_convention(images):
    """uint8 -> /255 -> resize shorter side 256 -> center crop 224 -> ImageNet mean/std (torchvision ops)."""
    enc = create_encoder("r3m-18", weights="random")
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    ref = TF.normalize(TF.center_crop(TF.resize(x.float() / 255.0, 256, antialias=True), 224), IMAGENET_MEAN,
                       IMAGENET_STD)
    torch.testing.assert_close(enc.preprocess(x), ref, atol=1e-5, rtol=1e-5)


def test_checkpoint_matches_torchvision(tmp_path, images, resnet18):
    enc = create_encoder("r3m-18", weights=str(save_r3m(tmp_path, resnet18)))
    out = enc(images)
    x = enc.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.no_grad():
        summary = resnet18(x)  # torchvision forward: avgpool + flatten (fc is Identity)
        n = resnet18
        fmap = n.layer4(n.layer3(n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x))))))))
    assert out.tokens.shape == (len(images), 7, 7, 512) and out.summary.shape == (len(images), 512)
    torch.testing.assert_close(out.summary, summary, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.tokens, fmap.permute(0, 2, 3, 1), atol=1e-5, rtol=1e-5)


def test_missing_weights_say_where_to_get_them(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"r3m-18.*model\.pt.*weights="):
        create_encoder("r3m-18")
    with pytest.raises(WeightsNotFoundError, match="nope.pt"):
        create_encoder("r3m-34", weights=str(tmp_path / "nope.pt"))


def test_wrong_depth_names_the_right_entry(tmp_path):
    path = save_r3m(tmp_path, random_resnet(34), "r3m34.pt")
    with pytest.raises(CheckpointMismatchError, match=r"ResNet-34.*r3m-18 is ResNet-18.*create_encoder\('r3m-34'"):
        create_encoder("r3m-18", weights=str(path))


def test_missing_key_and_wrong_format(tmp_path, resnet18):
    state = torch.load(save_r3m(tmp_path, resnet18))
    del state["r3m"]["module.convnet.layer3.1.bn2.running_var"]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing key 'layer3\.1\.bn2\.running_var'"):
        create_encoder("r3m-18", weights=str(tmp_path / "cut.pt"))
    torch.save({"model": resnet18.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError, match="key 'r3m'"):
        create_encoder("r3m-18", weights=str(tmp_path / "other.pt"))


def test_random_resnet50_shapes_and_seed(images):
    a = create_encoder("r3m-50", weights="random:1")
    out = a(images[:1])
    assert out.tokens.shape == (1, 7, 7, 2048) and out.summary.shape == (1, 2048)
    torch.testing.assert_close(out.summary, out.tokens.mean(dim=(1, 2)))
    assert torch.equal(out.summary, create_encoder("r3m-50", weights="random:1")(images[:1]).summary)
