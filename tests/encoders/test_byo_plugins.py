"""Plugins: a test package installed on sys.path (a dist-info with entry_points.txt in the theia_eval.encoders
group) and py:module:callable names: listed with their facts, checked against the plugin model's own forward, and
the bad plugins (an import error, a callable that raises or returns the wrong thing, a model with the wrong output)."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from theia_eval.cli import main
from theia_eval.encoders import byo, create_encoder, get_encoder_config, list_encoders
from theia_eval.encoders.images import as_uint8_batch
from theia_eval.encoders.plugins import EncoderParts
from theia_eval.errors import InputError, UnknownNameError

MODULE = "theia_test_plugin"
PLUGIN_CODE = '''
import torch
from torch import nn


class PatchNet(nn.Module):
    """A patchify conv: tokens (B,h,w,C) channels-last, summary the mean token."""

    def __init__(self, width=8, patch=8):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)

    def forward(self, x):
        tokens = self.proj(x).permute(0, 2, 3, 1)
        return tokens, tokens.mean(dim=(1, 2))


def build(weights=None):
    seed = int(weights.split(":")[1]) if weights and weights.startswith("random:") else 0
    torch.manual_seed(seed)
    return PatchNet(), {"resize": 32, "crop": 32, "interpolation": "bilinear"}


def build_parts():
    from theia_eval.encoders.plugins import EncoderParts
    return EncoderParts(PatchNet(width=4), {"resize": 40, "crop": 40}, summary="mean", license="MIT")


class Channels(nn.Module):
    def forward(self, x):
        return x.mean(1)  # (B,H,W): no summary


def wrong_output():
    return Channels(), {"resize": 32, "crop": 32}


def wrong_return():
    return "a model"


def no_fixed_size():
    return PatchNet(), {"resize": 32}


def raises():
    raise RuntimeError("the checkpoint server is down")
'''
ENTRY_POINTS = """
[theia_eval.encoders]
tiny-patchnet = theia_test_plugin:build
tiny-parts = theia_test_plugin:build_parts
broken-import = theia_test_plugin_missing:build
"""


@pytest.fixture(autouse=True)
def facts_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THEIA_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(byo, "_MEMO", {})


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The test package and its dist-info on sys.path, as `pip install` would leave them; removed afterwards."""
    site = tmp_path / "site"
    (site / MODULE).mkdir(parents=True)
    (site / MODULE / "__init__.py").write_text(textwrap.dedent(PLUGIN_CODE))
    info = site / "theia_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: theia-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop(MODULE, None)


def test_entry_point_plugins_are_listed_with_their_facts(installed, capsys):
    assert {"tiny-patchnet", "tiny-parts", "broken-import"} <= set(list_encoders())
    assert list_encoders("tiny-*") == ["tiny-parts", "tiny-patchnet"]
    assert main(["encoders", "tiny-*", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tiny-patchnet"]["grid"] == "4x4" and rows["tiny-patchnet"]["channels"] == 8
    assert rows["tiny-patchnet"]["family"] == "plugin" and rows["tiny-patchnet"]["GFLOPs"] >= 0
    assert rows["tiny-parts"]["grid"] == "5x5" and rows["tiny-parts"]["summary"] == "mean"
    assert rows["tiny-parts"]["license"] == "MIT"
    assert "theia_test_plugin:build (0.1)" in rows["tiny-patchnet"]["weights source"]


def test_a_broken_plugin_does_not_hide_the_listing(installed, capsys):
    """`theia-eval encoders` lists every encoder, marks the plugin that cannot be imported, then exits 2 naming it."""
    assert main(["encoders", "--json"]) == 2
    captured = capsys.readouterr()
    rows = {r["name"]: r for r in json.loads(captured.out)}
    assert rows["pixels"]["family"] == "baseline" and rows["tiny-patchnet"]["grid"] == "4x4"
    assert "could not import the plugin module 'theia_test_plugin_missing'" in rows["broken-import"]["error"]
    assert "1 listed encoder(s) could not be described: encoder 'broken-import'" in captured.err
    assert "uninstall the package" in captured.err


def test_plugin_matches_its_own_forward(installed, rng):
    images = rng.integers(0, 256, size=(3, 50, 60, 3), dtype=np.uint8)
    enc = create_encoder("tiny-patchnet", weights="random:2")
    assert (enc.grid, enc.token_dim, enc.summary_dim, enc.weights_id) == ((4, 4), 8, 8, "random:2")
    import theia_test_plugin

    model, _ = theia_test_plugin.build("random:2")
    x = enc.preprocess(as_uint8_batch(images))
    with torch.no_grad():
        tokens, summary = model(x)
    out = enc(images)
    torch.testing.assert_close(out.tokens, tokens)
    torch.testing.assert_close(out.summary, summary)
    conv = enc.model.proj
    assert enc.config.params_m == round((conv.weight.numel() + conv.bias.numel()) / 1e6, 4)
    assert enc.config.gflops == pytest.approx(2 * 16 * 8 * 3 * 8 * 8 / 1e9, rel=1e-3)  # 16 patches x 8 x (3*8*8) MACs
    same = create_encoder(f"py:{MODULE}:build", weights="random:2")(images)  # the same callable by py: name
    torch.testing.assert_close(same.tokens, out.tokens)


def test_facts_come_from_the_cache_without_building(installed, monkeypatch):
    first = get_encoder_config("tiny-patchnet")
    monkeypatch.setattr(byo, "_MEMO", {})
    import theia_eval.encoders.plugins as plugins

    monkeypatch.setattr(plugins, "call_plugin", lambda *a: pytest.fail("the plugin was built for cached facts"))
    assert get_encoder_config("tiny-patchnet") == first


@pytest.mark.parametrize("name, match", [
    ("broken-import", r"could not import the plugin module 'theia_test_plugin_missing' \(ModuleNotFoundError"),
    (f"py:{MODULE}:raises", "raised RuntimeError: the checkpoint server is down"),
    (f"py:{MODULE}:wrong_return", r"returned str; a plugin returns \(model, preprocess\)"),
    (f"py:{MODULE}:wrong_output", r"its model returned a Tensor; a plugin returns"),
    (f"py:{MODULE}:no_fixed_size", "no fixed output size"),
    (f"py:{MODULE}:nothing", f"module '{MODULE}' has no 'nothing'"),
    (f"py:{MODULE}", "is not module:callable"),
    ("py:theia_no_such_module:build", "could not import the plugin module 'theia_no_such_module'"),
])
def test_bad_plugins_fail_clearly(name, match, installed, capsys):
    with pytest.raises(InputError, match=match):
        create_encoder(name)
    assert main(["encoders", name]) == 2
    assert "error:" in capsys.readouterr().err


def test_weights_for_a_plugin_that_takes_none(installed):
    with pytest.raises(InputError, match="takes no weights argument"):
        create_encoder(f"py:{MODULE}:build_parts", weights="random")
    enc = create_encoder(f"py:{MODULE}:build_parts")
    assert enc.grid == (5, 5) and enc.config.summary == "mean"


def test_parts_are_checked():
    from theia_eval.encoders.plugins import Plugin, as_parts

    plugin = Plugin("p", "m:f", lambda: None)
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        as_parts(plugin, ("model", {"resize": 8, "crop": 8}))
    with pytest.raises(InputError, match=r"preprocess keys \['size'\] are unknown"):
        as_parts(plugin, (torch.nn.Identity(), {"size": 8}))
    with pytest.raises(InputError, match="summary='cls token'"):
        as_parts(plugin, EncoderParts(torch.nn.Identity(), {"crop": 8}, summary="cls token"))


def test_unknown_names_mention_the_schemes():
    with pytest.raises(UnknownNameError, match=r"unknown encoder 'dinov3'.*hf:<hub id or save_pretrained directory>"):
        create_encoder("dinov3")
