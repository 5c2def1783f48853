"""timm:<model name>: timm's own tiny test models (test_vit: a ViT with a CLS token, test_resnet: a CNN) with weights
saved in timm's formats (hub-layout folder, a bare safetensors file, the HF cache), checked against timm's
forward_features / forward_head and its eval transform, and the error paths."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from timm.models import save_for_hf

from theia_eval.cli import main
from theia_eval.encoders import byo, create_encoder, get_encoder_config
from theia_eval.encoders.images import as_uint8_batch
from theia_eval.errors import CheckpointMismatchError, UnknownNameError, WeightsNotFoundError

SIDE = 64  # the checkpoints below are saved for 64 px inputs (timm's test models default to 160)


@pytest.fixture(autouse=True)
def facts_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THEIA_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(byo, "_MEMO", {})


def tiny(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    kwargs = {"img_size": SIDE} if name == "test_vit" else {}
    return timm.create_model(name, num_classes=0, **kwargs).eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple[str, torch.nn.Module]]:
    """name -> (hub-layout folder written by timm's save_for_hf, the model it holds)."""
    root = tmp_path_factory.mktemp("byo_timm")
    out = {}
    for i, name in enumerate(("test_vit", "test_resnet")):
        model = tiny(name, i)
        save_for_hf(model, root / name, safe_serialization=True, data_config={"input_size": (3, SIDE, SIDE),
                                                                              "crop_pct": 0.875})
        out[name] = (str(root / name), model)
    return out


def timm_reference(model: torch.nn.Module, x: torch.Tensor, prefix: int):
    with torch.no_grad():
        features = model.forward_features(x)
        summary = model.forward_head(features, pre_logits=True)
    if features.ndim == 3:
        g = int((features.shape[1] - prefix) ** 0.5)
        return features[:, prefix:].reshape(len(x), g, g, -1), summary
    return features.permute(0, 2, 3, 1), summary


@pytest.mark.parametrize("name, grid, dim, prefix, summary", [
    ("test_vit", (4, 4), 64, 1, "cls"), ("test_resnet", (2, 2), 96, 0, "mean")])
def test_tokens_and_summary_match_timm(name, grid, dim, prefix, summary, folders, rng):
    folder, model = folders[name]
    enc = create_encoder(f"timm:{name}", weights=folder)
    assert (enc.grid, enc.token_dim, enc.config.summary, enc.input_size) == (grid, dim, summary, SIDE)
    assert enc.config.extra["layout"]["prefix"] == prefix and enc.weights_id == folder
    images = rng.integers(0, 256, size=(2, 50, 70, 3), dtype=np.uint8)
    out = enc(images)
    x = enc.preprocess(as_uint8_batch(images))
    tokens, pooled = timm_reference(model, x, prefix)
    assert out.tokens.std() > 1e-2
    torch.testing.assert_close(out.tokens, tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.summary, pooled, atol=1e-5, rtol=1e-5)
    assert enc.config.params_m == round(sum(p.numel() for p in model.parameters()) / 1e6, 4)
    assert enc.config.gflops > 0


@pytest.mark.parametrize("name", ["test_vit", "test_resnet"])
def test_preprocess_matches_timm_eval_transform(name, folders, rng):
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    _, model = folders[name]
    enc_cfg = create_encoder(f"timm:{name}", weights=folders[name][0]).config
    noise = torch.from_numpy(rng.integers(0, 256, size=(1, 90, 120, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float()
    image = torch.nn.functional.avg_pool2d(noise, 5, 1, 2).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    data_cfg = resolve_model_data_config(model)
    data_cfg["input_size"], data_cfg["crop_pct"] = (3, SIDE, SIDE), 0.875
    theirs = create_transform(**data_cfg)(Image.fromarray(image[0]))[None]
    ours = enc_cfg.preprocess(as_uint8_batch(image))
    assert ours.shape == theirs.shape == (1, 3, SIDE, SIDE)
    torch.testing.assert_close(ours, theirs, atol=0.06, rtol=0)


def test_a_weights_file_a_hub_id_the_hf_cache_and_random_weights(folders, tmp_path, monkeypatch, rng):
    import huggingface_hub.constants as hub_constants

    images = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    folder, model = folders["test_resnet"]
    file = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(model.state_dict(), file)
    from_file = create_encoder("timm:test_resnet", weights=str(file))
    assert from_file.input_size == 160  # a bare file: the model's own pretrained_cfg decides the preprocessing
    torch.testing.assert_close(from_file.model.state_dict()["conv1.0.weight"], model.state_dict()["conv1.0.weight"])
    with_head = timm.create_model("test_resnet", num_classes=5)  # a classifier checkpoint: the head is dropped
    safetensors.torch.save_file(with_head.state_dict(), tmp_path / "head.safetensors")
    headless = create_encoder("timm:test_resnet", weights=str(tmp_path / "head.safetensors")).model
    assert "fc.weight" not in headless.state_dict()
    torch.testing.assert_close(headless.state_dict()["conv1.0.weight"], with_head.state_dict()["conv1.0.weight"])
    commit = "0" * 40  # test_resnet's default tag is timm/test_resnet.r160_in1k
    snap = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in Path(folder).iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    default = create_encoder("timm:test_resnet")
    assert default.weights_id == "timm/test_resnet.r160_in1k"
    from_folder = create_encoder("timm:test_resnet", weights=folder)(images).tokens
    torch.testing.assert_close(default(images).tokens, from_folder)
    by_id = create_encoder("timm:test_resnet", weights="timm/test_resnet.r160_in1k")  # weights=<hub id>, offline
    assert by_id.weights_id == "timm/test_resnet.r160_in1k"
    torch.testing.assert_close(by_id(images).tokens, from_folder)
    with pytest.raises(WeightsNotFoundError, match=r"'acme/absent' is not an existing directory.*not in the Hugging "
                                                   r"Face cache .*hub"):
        create_encoder("timm:test_resnet", weights="acme/absent")
    state = torch.random.get_rng_state()
    a = create_encoder("timm:test_vit", weights="random:1")(images)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(a.tokens, create_encoder("timm:test_vit", weights="random:1")(images).tokens)
    assert tuple(a.tokens.shape) == (2, 10, 10, 64)  # test_vit's own 160 px input


def test_errors(folders, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UnknownNameError, match="no model 'test_vitt'. Did you mean: test_vit"):
        get_encoder_config("timm:test_vitt")
    with pytest.raises(WeightsNotFoundError, match=r"timm/test_vit.r160_in1k.*empty-cache"):
        create_encoder("timm:test_vit")
    assert get_encoder_config("timm:test_vit").offline is False
    with pytest.raises(CheckpointMismatchError, match=r"holds a timm 'test_resnet' checkpoint.*timm:test_resnet"):
        create_encoder("timm:test_vit", weights=folders["test_resnet"][0])
    wrong = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, wrong)
    with pytest.raises(CheckpointMismatchError, match="do not match timm.s test_vit.*missing"):
        create_encoder("timm:test_vit", weights=str(wrong))
    with pytest.raises(WeightsNotFoundError, match="do not exist"):
        create_encoder("timm:test_vit", weights=str(tmp_path / "missing.pth"))
    assert main(["encoders", "timm:test_vit", f"weights={wrong}"]) == 2
    assert "do not match" in capsys.readouterr().err
    assert main(["encoders", "timm:test_vitt"]) == 2
    assert "Did you mean: test_vit" in capsys.readouterr().err
