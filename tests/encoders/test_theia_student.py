"""load_theia: the student with its translators from every kind of source; forward_feature / teacher predictions /
teacher_features against the training model; exports loaded by transformers' AutoModel offline; clear errors."""
from __future__ import annotations

import ast
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from theia_student_helpers import (
    NAMES,
    TARGETS,
    channels_first,
    export_tiny,
    tiny_stats,
    tiny_student,
    uint8_images,
)

from theia_eval import load_theia
from theia_eval.distill.stats import save_feature_stats
from theia_eval.encoders import create_encoder
from theia_eval.encoders.theia_format import official_name
from theia_eval.encoders.theia_student import save_theia
from theia_eval.errors import CheckpointMismatchError, InputError, WeightsNotFoundError

ATOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def student():
    return tiny_student()


@pytest.fixture(scope="module")
def stats():
    return tiny_stats()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, student, stats):
    return export_tiny(tmp_path_factory.mktemp("theia_student") / "run" / "export", student, stats)


def upstream_state(student) -> dict[str, torch.Tensor]:
    """What the reference's training saves: torch.save(model.state_dict()), backbone under backbone.model.* in the
    installed transformers' naming, translator heads under translator.translator_heads.<id>.*."""
    state = {f"backbone.model.{k}": v.clone() for k, v in student.backbone.state_dict().items()}
    state.update({f"translator.{k}": v.clone() for k, v in student.translator.state_dict().items()})
    return state


def test_forward_feature_teacher_dict_and_features_match_the_training_model(student, stats, export_dir):
    model = load_theia(export_dir)
    imgs = uint8_images(h=200, w=260)  # not the input size: both squash-resize the same way
    with torch.no_grad():
        tokens = student.tokens(channels_first(imgs))
        preds = student(channels_first(imgs))
        hidden = student.backbone(pixel_values=student.preprocess(channels_first(imgs))).last_hidden_state
        torch.testing.assert_close(model.forward_feature(imgs), tokens, **ATOL)
        assert model.forward_feature(imgs).shape == (2, 196, 32)
        torch.testing.assert_close(model.forward_feature(channels_first(imgs), "mean"), tokens.mean(1), **ATOL)
        torch.testing.assert_close(model.forward_feature(imgs, "max"), tokens.amax(1), **ATOL)
        torch.testing.assert_close(model.forward_feature(imgs, "cls"), hidden[:, 0], **ATOL)
        out = model(imgs)
        assert set(out) == set(TARGETS)  # keyed by teacher id (HF id for hub teachers, registry name for ours)
        for tid, (c, h, w) in TARGETS.items():
            assert out[tid].shape == (2, h * w, c)
            torch.testing.assert_close(out[tid], preds[tid], **ATOL)
        feats = model.teacher_features(imgs)
        for tid, (c, h, w) in TARGETS.items():
            mean, std = stats[tid]
            assert feats[tid].shape == (2, h, w, c)  # the teacher's own output shape
            torch.testing.assert_close(feats[tid], (preds[tid] * std + mean).reshape(2, h, w, c), **ATOL)
    assert model.config.teacher_names == NAMES
    with pytest.raises(ValueError, match="unknown feature_reduce"):
        model.forward_feature(imgs, "median")
    with pytest.raises(ValueError, match="uint8"):
        model.forward_feature(imgs.astype("float32"))


def test_feature_reduce_default_is_honoured(export_dir):
    imgs = uint8_images(seed=3)
    with torch.no_grad():
        tokens = load_theia(export_dir).forward_feature(imgs)
        pooled = load_theia(export_dir, feature_reduce="mean").forward_feature(imgs)
    torch.testing.assert_close(pooled, tokens.mean(1), **ATOL)


def test_export_records_heads_stats_and_carries_self_contained_modeling(export_dir, stats):
    cfg = json.loads((export_dir / "config.json").read_text())
    assert cfg["model_type"] == "theia" and cfg["auto_map"]["AutoModel"] == "modeling_theia.TheiaModel"
    kinds = {t: h["kind"] for t, h in cfg["translator_heads"].items()}
    assert kinds == {"facebook/dinov2-large": "lconv", "efficientnet-lite0": "lconv", "facebook/sam-vit-huge": "lconv",
                     "odd/teacher": "general"}
    assert cfg["target_feature_sizes"]["efficientnet-lite0"] == [40, 7, 7]
    torch.testing.assert_close(torch.tensor(cfg["feature_stats"]["odd/teacher"]["std"]), stats["odd/teacher"][1])
    tree = ast.parse((export_dir / "modeling_theia.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "math", "typing", "torch", "transformers"}  # self-contained
    assert (export_dir / "feature_stats" / "imagenet_var_facebook_sam-vit-huge.npy").is_file()
    keys = set(load_file(str(export_dir / "model.safetensors")))
    assert "translator.translator_heads.efficientnet-lite0.adapter.1.weight" in keys  # the reference's 7x7 conv


def test_automodel_loads_the_export_offline(export_dir, monkeypatch):
    from transformers import AutoModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    auto = AutoModel.from_pretrained(str(export_dir), trust_remote_code=True)
    ours = load_theia(export_dir)
    imgs = uint8_images(seed=5)
    with torch.no_grad():
        assert torch.equal(auto.forward_feature(imgs), ours.forward_feature(imgs))
        a, b = auto(imgs), ours(imgs)
        assert all(torch.equal(a[t], b[t]) for t in TARGETS)
        fa, fb = auto.teacher_features(imgs), ours.teacher_features(imgs)
        assert all(torch.equal(fa[t], fb[t]) for t in TARGETS)
    mean = AutoModel.from_pretrained(str(export_dir), trust_remote_code=True, feature_reduce_method="mean")
    assert mean.forward_feature(imgs).shape == (2, 32)


def test_sources_run_dir_file_and_encoder_entry_agree(export_dir):
    imgs = uint8_images(seed=7)
    run_dir = export_dir.parent
    with torch.no_grad():
        ref = load_theia(export_dir).forward_feature(imgs)
        assert torch.equal(load_theia(run_dir).forward_feature(imgs), ref)
        assert torch.equal(load_theia(export_dir / "model.safetensors").forward_feature(imgs), ref)
        tokens = create_encoder("theia", weights=str(run_dir))(imgs).tokens  # the encoder entry keeps loading
    torch.testing.assert_close(tokens.reshape(2, 196, 32), ref, **ATOL)


def test_upstream_pth_state_dict_loads_with_heads_read_from_shapes(tmp_path, student):
    state = upstream_state(student)
    assert any(".layers.0." in k or ".layer.0." in k for k in state)
    torch.save(state, tmp_path / "theia_step00001000.pth")
    model = load_theia(tmp_path / "theia_step00001000.pth", num_heads=2)  # width 32: not a DeiT width
    specs = model.config.translator_heads
    assert specs["efficientnet-lite0"] == {"kind": "lconv", "source": [32, 14, 14], "target": [40, 7, 7], "hidden": 32}
    assert specs["odd/teacher"]["kind"] == "general" and specs["facebook/sam-vit-huge"]["target"] == [8, 64, 64]
    imgs = uint8_images(seed=2)
    with torch.no_grad():
        preds = student(channels_first(imgs))
        out = model(imgs)
    for tid in TARGETS:
        torch.testing.assert_close(out[tid], preds[tid], **ATOL)
    with pytest.raises(ValueError, match="no feature statistics for teacher"):
        model.teacher_features(imgs)
    torch.save({"model": state}, tmp_path / "wrapped.pth")  # one level of wrapping is read too
    assert load_theia(tmp_path / "wrapped.pth", num_heads=2).teacher_ids == list(TARGETS)


def official_folder(folder, student):
    """An official-style HF folder: model.safetensors (official names) + a config.json without our fields."""
    state = {official_name(k[len("backbone.model."):]) if k.startswith("backbone.model.") else k: v
             for k, v in upstream_state(student).items()}
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["TheiaModel"], "backbone": None, "num_attention_heads": 2, "translator_type": "lconv",
        "target_feature_sizes": {t: list(s) for t, s in TARGETS.items()}}))
    return folder


def test_official_hf_dir_without_stats_then_reference_stats(tmp_path, student, stats):
    """An official-style folder; stats given separately."""
    folder = official_folder(tmp_path / "theia-tiny-official", student)
    imgs = uint8_images(seed=4)
    with pytest.raises(ValueError, match="stats=DIR"):
        load_theia(folder).teacher_features(imgs)
    ref_stats = tmp_path / "feature_stats"
    for tid, (mean, std) in stats.items():
        save_feature_stats(ref_stats, tid, mean, std)
    with torch.no_grad():
        feats = load_theia(folder, stats=ref_stats).teacher_features(imgs)
        preds = student(channels_first(imgs))
    c, h, w = TARGETS["facebook/dinov2-large"]
    mean, std = stats["facebook/dinov2-large"]
    torch.testing.assert_close(feats["facebook/dinov2-large"], (preds["facebook/dinov2-large"] * std + mean).reshape(
        2, h, w, c), **ATOL)
    partial = tmp_path / "partial"
    save_feature_stats(partial, "efficientnet-lite0", *stats["efficientnet-lite0"])
    with pytest.raises(InputError, match="no feature statistics for teacher"):
        load_theia(folder, stats=partial)


def test_hub_id_and_registry_name_load_from_the_hf_cache(tmp_path, monkeypatch, student):
    """An official hub id, and the registry name that stands for it, resolve in the local HF cache (offline)."""
    import huggingface_hub.constants as hub_constants

    commit = "0" * 40  # the hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}
    repo = tmp_path / "models--theaiinstitute--theia-tiny-patch16-224-cdiv"
    official_folder(repo / "snapshots" / commit, student)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    imgs = uint8_images(seed=12)
    with torch.no_grad():
        expected = student(channels_first(imgs))
        for source in ("theaiinstitute/theia-tiny-patch16-224-cdiv", "theia-tiny"):
            model = load_theia(source)
            assert set(model.teacher_ids) == set(TARGETS)
            out = model(imgs)
            for tid in TARGETS:
                torch.testing.assert_close(out[tid], expected[tid], **ATOL)


def test_bundled_asset_carries_the_current_modeling_code():
    """The shipped theia-offline folder's modeling_theia.py is theia_modeling.py (AutoModel runs that copy)."""
    from theia_eval.encoders.theia_format import MODELING_FILE, modeling_source
    from theia_eval.encoders.theia_offline import ASSET

    assert (ASSET / MODELING_FILE).read_text() == modeling_source().read_text(), (
        "theia_eval/assets/theia-offline/modeling_theia.py differs from theia_eval/encoders/theia_modeling.py: "
        "copy it over (the asset must carry the code its AutoModel users run)")


def test_save_theia_makes_a_pth_loadable_by_automodel(tmp_path, student, stats):
    from transformers import AutoModel

    torch.save(upstream_state(student), tmp_path / "ckpt.pth")
    model = load_theia(tmp_path / "ckpt.pth", num_heads=2)
    model.set_feature_stats({t: {"mean": m, "std": s} for t, (m, s) in stats.items()})
    out = save_theia(model, tmp_path / "converted")
    auto = AutoModel.from_pretrained(str(out), trust_remote_code=True)
    imgs = uint8_images(seed=9)
    with torch.no_grad():
        a, b = auto.teacher_features(imgs), model.teacher_features(imgs)
    assert all(torch.equal(a[t], b[t]) for t in TARGETS)


def test_bundled_student_has_translators_and_loads_through_automodel():
    from transformers import AutoModel

    from theia_eval.encoders.theia_offline import ASSET

    model = load_theia("theia-offline")
    assert model.teacher_ids == ["efficientnet-lite0", "sim-depth", "sim-segmentation"]
    imgs = uint8_images(seed=11)
    with torch.no_grad():
        tokens = create_encoder("theia-offline")(imgs).tokens.reshape(2, 196, 128)
        assert torch.equal(model.forward_feature(imgs), tokens)
        feats = model.teacher_features(imgs)
        auto = AutoModel.from_pretrained(str(ASSET), trust_remote_code=True)
        assert auto.dtype == torch.float32
        assert all(torch.equal(auto.teacher_features(imgs)[t], feats[t]) for t in model.teacher_ids)
    assert feats["efficientnet-lite0"].shape == (2, 7, 7, 1280) and feats["sim-depth"].shape == (2, 16, 16, 16)


def test_missing_and_wrong_sources_say_what_to_do(tmp_path, monkeypatch, student):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE=0"):
        load_theia("theaiinstitute/theia-nonexistent-patch16-224-cdiv")
    with pytest.raises(WeightsNotFoundError, match="theia-tiny-patch16-224-cdiv"):
        load_theia("theia-tiny")  # a registry name: its hub id, looked up in the local cache only
    with pytest.raises(WeightsNotFoundError, match="not a registered student"):
        load_theia(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a trained Theia student"):
        load_theia("random-vit-nano")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="tensors-only state dict"):
        load_theia(tmp_path / "junk.pth")
    backbone_only = {k: v for k, v in upstream_state(student).items() if k.startswith("backbone.")}
    torch.save(backbone_only, tmp_path / "backbone.pth")
    with pytest.raises(CheckpointMismatchError, match="without translator heads"):
        load_theia(tmp_path / "backbone.pth")
    bad = upstream_state(student)
    bad["translator.translator_heads.facebook/dinov2-large.adapter.8.weight"] = torch.zeros(24, 31)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError, match="adapter"):
        load_theia(tmp_path / "bad.pth", num_heads=2)
