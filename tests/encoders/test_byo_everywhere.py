"""hf:, timm: and plugin names work wherever a registry name does: the encoders verb, embed, sweep grids (cell
identities of registry entries unchanged), entropy, and as distillation teachers (a short run)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image

from theia_eval.cli import main
from theia_eval.config import compose
from theia_eval.encoders import byo
from theia_eval.errors import TheiaEvalError
from theia_eval.sweeps.plan import build_plan


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("THEIA_EVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("THEIA_EVAL_DATA", str(tmp_path / "data_root"))
    monkeypatch.setattr(byo, "_MEMO", {})


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory) -> str:
    """A tiny DINOv2-with-registers checkpoint (4x4 grid of 32-d tokens at 32 px) with its image processor."""
    path = tmp_path_factory.mktemp("everywhere") / "dinoreg"
    torch.manual_seed(0)
    T.Dinov2WithRegistersModel(T.Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=32, patch_size=8,
        num_register_tokens=2)).save_pretrained(path)
    T.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def write_demo_file(path: Path, task: str = "metaworld/drawer-open") -> None:
    """Two 6-step demos of 56 px frames in the project's demo layout."""
    from theia_eval.envs.dataset import DatasetMeta, Episode, write_demos
    from theia_eval.envs.renderer import RenderSpec

    rng = np.random.default_rng(0)
    episodes = [Episode(rgb=rng.integers(0, 256, (6, 56, 56, 3), dtype=np.uint8),
                        proprio=rng.standard_normal((6, 4)).astype(np.float32),
                        state=rng.standard_normal((6, 39)).astype(np.float32),
                        actions=rng.uniform(-1, 1, (6, 4)).astype(np.float32), rewards=np.zeros(6, np.float32),
                        success=np.r_[np.zeros(5, bool), True], seed=54321 + i) for i in range(2)]
    meta = DatasetMeta(task=task, suite="metaworld", camera="top_cap2", render=RenderSpec("fast", 64, 56), horizon=500)
    write_demos(path, episodes, meta, valid_fraction=0.5)


def test_encoders_verb_encodes_and_reports_the_facts(vit_dir, capsys):
    assert main(["encoders", f"hf:{vit_dir}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokens_shape"][1:] == [4, 4, 32] and report["summary_shape"][1:] == [32]
    assert report["facts"]["family"] == "hf" and report["facts"]["grid"] == "4x4" and report["facts"]["channels"] == 32
    assert main(["encoders", "timm:test_resnet", "weights=random:0"]) == 0
    out = capsys.readouterr().out
    assert "facts  timm" in out and "tokens (2, 5, 5, 96)" in out


def test_embed_builds_the_cache(vit_dir, tmp_path, capsys):
    demos = tmp_path / "demos.hdf5"
    write_demo_file(demos)
    assert main(["embed", f"encoder=hf:{vit_dir}", f"demos={demos}", f"cache_dir={tmp_path / 'cache dir'}"]) == 0
    assert "12 frames x (4, 4, 32) float16" in capsys.readouterr().out
    assert len(list((tmp_path / "cache dir").iterdir())) == 1


def smoke(tmp_path, *extra: str):
    return compose("sweep", ["sweep=smoke", f"out_dir={tmp_path / 'out'}", f"demos_dir={tmp_path / 'demos'}",
                             f"cache_dir={tmp_path / 'cache'}", f"students_dir={tmp_path / 'students'}", *extra])


def test_sweep_grids_take_them_and_keep_registry_cell_identities(vit_dir, tmp_path):
    base = {c.label: c.config_hash for c in build_plan(smoke(tmp_path)).train}
    plan = build_plan(smoke(tmp_path, f"sweep.encoders=[pixels,hf:{vit_dir},"
                                      "{name:'timm:test_resnet',weights:random,label:resnet-rand}]"))
    cells = {c.label: c for c in plan.train}
    assert set(cells) == {"pixels", f"hf:{vit_dir}", "resnet-rand"}
    assert cells["pixels"].config_hash == base["pixels"]  # a registry entry's cell is unchanged
    assert cells["resnet-rand"].encoder.name == "timm:test_resnet"
    assert cells[f"hf:{vit_dir}"].config["encoder"] == f"hf:{vit_dir}"
    with pytest.raises(TheiaEvalError, match="not an existing directory"):
        build_plan(smoke(tmp_path, "sweep.encoders=[hf:nobody/nothing]"))


def test_entropy_measures_them(vit_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    assert main(["entropy", f"encoders=[hf:{vit_dir}]", f"images=folder:{tmp_path / 'imgs'}", "bins=10",
                 "bins_list=[5,10]", f"out_dir={tmp_path / 'out'}"]) == 0
    records = json.loads((tmp_path / "out" / "entropy.json").read_text())["records"]
    assert [r["encoder"] for r in records] == [f"hf:{vit_dir}"] and records[0]["num_tokens"] == 4 * 16


def test_distillation_teachers(vit_dir, tmp_path):
    from theia_eval.distill.teachers import TeacherSpec, build_teacher
    from theia_eval.distill.train import run_distillation

    teacher = build_teacher(TeacherSpec(f"hf:{vit_dir}", id="tiny/dinoreg"))
    assert (teacher.grid, teacher.dim, teacher.id) == ((4, 4), 32, "tiny/dinoreg")
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    teachers = (f"teachers=[{{name: 'hf:{vit_dir}', id: tiny/dinoreg}},"
                "{name: 'timm:test_resnet', weights: 'random:0', id: tiny/resnet}]")
    cfg = compose("distill", [f"run_dir={tmp_path / 'run'}", f"data={tmp_path / 'images'}", "student=nano",
                              "device=cpu", "train.amp=off", "train.num_workers=0", "train.progress=false",
                              "train.batch_size=4", "train.steps=2", "train.val_every=100", "train.ckpt_every=100",
                              "shard_size=8", "val_fraction=0.25", "extract_batch=8", teachers])
    summary = run_distillation(cfg)
    assert summary["steps"] == 2
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
