"""Against the reference code itself (github.com/bdaiinstitute/theia): its RobotVisionFM forward on a fixture, its
strict load of our exports (7x7 heads included), its decoding of Depth-Anything features, its feature_stats files.

Runs when THEIA_UPSTREAM points to a checkout of the reference repository (the folder holding src/theia and
feature_stats/) and its extra dependencies are importable (einops, omegaconf); skipped otherwise:
    git clone https://github.com/bdaiinstitute/theia /tmp/theia && pip install einops
    THEIA_UPSTREAM=/tmp/theia pytest tests/encoders/test_theia_upstream.py
Everything runs offline: the reference's DeiT backbone is built from a tiny local `...deit...` folder.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from theia_student_helpers import channels_first, export_tiny, tiny_stats, tiny_student, uint8_images

from theia_eval import load_theia
from theia_eval.encoders.theia_format import official_key_map

UPSTREAM = Path(os.environ.get("THEIA_UPSTREAM", "/nonexistent")).expanduser()
pytestmark = pytest.mark.skipif(not (UPSTREAM / "src" / "theia").is_dir(),
                                reason="THEIA_UPSTREAM does not point to a checkout of the reference code")
TARGETS = {"facebook/dinov2-large": (24, 16, 16), "efficientnet-lite0": (40, 7, 7),
           "facebook/sam-vit-huge": (8, 64, 64)}
ATOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def upstream_modules():
    pytest.importorskip("einops")
    sys.path.insert(0, str(UPSTREAM / "src"))
    try:
        from theia.models import rvfm, utils
    finally:
        sys.path.remove(str(UPSTREAM / "src"))
    return rvfm, utils


def write_tiny_deit(folder):
    """A tiny ViT in the facebook/deit-* folder layout (weights + DeiT-like image processor), for the reference
    (also used by benchmarks/theia_parity.py)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=16,
                    image_size=224, layer_norm_eps=1e-12, qkv_bias=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ViTModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(do_resize=True, size={"height": 224, "width": 224}, resample=2, image_mean=[0.5] * 3,
                      image_std=[0.5] * 3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def deit_dir(tmp_path_factory):
    return write_tiny_deit(tmp_path_factory.mktemp("upstream") / "tiny-deit-patch16-224")


def reference_file(relative: str):
    """One module of the reference loaded from its file (its package __init__ pulls in sklearn and OpenCV)."""
    import importlib.util

    sys.path.insert(0, str(UPSTREAM / "src"))
    try:
        spec = importlib.util.spec_from_file_location(f"reference_{Path(relative).stem}",
                                                      UPSTREAM / "src" / "theia" / relative)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(UPSTREAM / "src"))
    return module


def reference_model(rvfm, deit_dir: Path, seed: int = 3):
    """The reference RobotVisionFM (lconv translators) with every parameter perturbed, in eval mode."""
    from omegaconf import OmegaConf

    model = rvfm.RobotVisionFM(backbone=str(deit_dir), pretrained=True, translator="lconv",
                               target_feature_sizes=TARGETS, translator_kwargs=OmegaConf.create({}))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_reference_state_dict_loads_and_forward_matches(upstream_modules, deit_dir, tmp_path):
    rvfm, utils = upstream_modules
    ref = reference_model(rvfm, deit_dir)
    torch.save(ref.state_dict(), tmp_path / "rvfm_step00000010.pth")  # what the reference's training writes
    ours = load_theia(tmp_path / "rvfm_step00000010.pth", num_heads=2)
    imgs = torch.from_numpy(uint8_images(n=3, seed=1))  # 224 px: the reference's processor resizes with PIL
    with torch.no_grad():
        hidden = ref.backbone(imgs)
        for method, ours_name in ((None, None), ("mean_pooling", "mean"), ("max_pooling", "max"), ("cls", "cls")):
            torch.testing.assert_close(ours.forward_feature(imgs, ours_name),
                                       utils.handle_feature_output(hidden, feature_reduce_method=method), **ATOL)
        expected, got = ref(imgs), ours(imgs)
    assert set(got) == set(TARGETS)
    for tid in TARGETS:  # translator outputs included: 16x16, 7x7 and 64x64 heads
        torch.testing.assert_close(got[tid], expected[tid], **ATOL)


def test_reference_strictly_loads_our_export(upstream_modules, deit_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModel

    rvfm, _ = upstream_modules
    ref = reference_model(rvfm, deit_dir, seed=5)
    student = tiny_student(TARGETS, seed=4)
    export = export_tiny(tmp_path / "export", student, tiny_stats(TARGETS))
    state = load_file(str(export / "model.safetensors"))
    to_installed = {off: f"backbone.model.{own}" for off, own in official_key_map(ref.backbone.model).items()}
    result = ref.load_state_dict({to_installed.get(k, k): v for k, v in state.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    imgs = torch.from_numpy(uint8_images(n=2, seed=6))
    with torch.no_grad():
        expected = ref(imgs)
        ours = load_theia(export)(imgs)
        auto = AutoModel.from_pretrained(str(export), trust_remote_code=True)(imgs)
    for tid in TARGETS:
        torch.testing.assert_close(ours[tid], expected[tid], **ATOL)
        torch.testing.assert_close(auto[tid], expected[tid], **ATOL)
    with torch.no_grad():
        torch.testing.assert_close(student(channels_first(imgs.numpy()))["efficientnet-lite0"],
                                   expected["efficientnet-lite0"], **ATOL)


def test_reference_feature_stats_files_are_read():
    import numpy as np

    from theia_eval.distill.stats import load_stats

    folder = UPSTREAM / "feature_stats"
    if not folder.is_dir():
        pytest.skip("no feature_stats/ in the reference checkout")
    stats = load_stats(folder, "facebook/dinov2-large", 1024)
    std = np.load(folder / "imagenet_var_facebook_dinov2-large.npy")  # the file named var holds the std
    np.testing.assert_allclose(stats.std.numpy(), std, rtol=1e-6)
    np.testing.assert_allclose(stats.mean.numpy(), np.load(folder / "imagenet_mean_facebook_dinov2-large.npy"),
                               rtol=1e-6)


def test_depth_anything_decoding_matches_the_reference(upstream_modules):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    from theia_eval.decoding.decoders import depth_anything_depth

    decode_depth_anything = reference_file("decoding/depth_anything.py").decode_depth_anything
    cfg = DepthAnythingConfig(backbone_config={"model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 4,
                                               "num_attention_heads": 2, "image_size": 56, "patch_size": 14,
                                               "out_indices": [1, 2, 3, 4], "reshape_hidden_states": False},
                              reassemble_hidden_size=32, neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16,
                              head_hidden_size=8, patch_size=14)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = DepthAnythingForDepthEstimation(cfg).eval().head
    features = torch.randn(2, 64 * 64, 8, generator=torch.Generator().manual_seed(1))
    expected = decode_depth_anything(features, head, device="cpu")[..., 0]
    with torch.no_grad():
        got = depth_anything_depth(features.reshape(2, 64, 64, 8), head, 224).numpy()
    assert got.shape == expected.shape == (2, 224, 224)
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(expected), atol=1e-5, rtol=1e-5)
