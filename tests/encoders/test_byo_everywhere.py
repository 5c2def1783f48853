"""hf:, timm: and plugin names work wherever a registry name does: the encoders verb, embed, train and evaluate, sweep
grids (cell identities of registry entries unchanged) and the leaderboard's compute columns, entropy, and as
distillation teachers (a short run)."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers as T
from PIL import Image

from theia_eval.cli import main
from theia_eval.config import compose
from theia_eval.encoders import byo, get_encoder_config
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


PLUGIN = "theia_everywhere_plugin"


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> str:
    """An installed plugin package (a dist-info whose entry point adds the encoder 'tiny-plugin') on sys.path:
    a patchify conv giving a 4x4 grid of 8-d tokens at 32 px. Returns its py: name."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{PLUGIN}.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Patchify(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Conv2d(3, 8, 8, stride=8)

            def forward(self, x):
                tokens = self.proj(x).permute(0, 2, 3, 1)
                return tokens, tokens.mean(dim=(1, 2))

        def build(weights=None):
            torch.manual_seed(int(weights.split(":")[1]) if weights and ":" in weights else 0)
            return Patchify(), {"resize": 32, "crop": 32}
    """))
    info = site / "theia_everywhere_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: theia-everywhere-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[theia_eval.encoders]\ntiny-plugin = {PLUGIN}:build\n")
    monkeypatch.syspath_prepend(str(site))
    yield f"py:{PLUGIN}:build"
    sys.modules.pop(PLUGIN, None)


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


def test_train_and_evaluate_verbs(vit_dir, tmp_path, capsys):
    """A one-epoch run of an hf: directory: its run folder is one folder named after the encoder ('/' -> '_')."""
    demos = tmp_path / "demos.hdf5"
    write_demo_file(demos)
    args = ["train", f"encoder=hf:{vit_dir}", "task=metaworld/drawer-open", f"demos={demos}", "seed=3",
            f"out_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}", "bc.epochs=1", "bc.eval_every=1",
            "bc.progress=false", "eval.episodes=1", "eval.horizon=5", "eval.num_envs=1", "eval.progress=false"]
    assert main(args) == 0
    run = tmp_path / "runs" / "metaworld_drawer-open" / f"hf:{vit_dir.replace('/', '_')}" / "conv" / "seed3"
    assert str(run) in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["last_checkpoint"]["epoch"] == 1
    assert main(["evaluate", f"run={run}", "checkpoint=last", "episodes=1", "progress=false"]) == 0
    info = json.loads((run / "eval_info_last.json").read_text())
    assert info["aggregate"]["episodes"] == 1 and info["checkpoint"] == "last"


def test_a_sweep_trains_them_and_the_leaderboard_gives_their_compute(vit_dir, plugin, tmp_path):
    """One tiny cell each of an hf: directory, a timm model with random weights and an installed plugin (named
    by its entry point): the store rows and the leaderboard's params / GFLOPs columns are the encoders' facts."""
    encoders = {"dinoreg": f"hf:{vit_dir}", "resnet-rand": "timm:test_resnet", "tiny-plugin": "tiny-plugin"}
    grid = (f"sweep.encoders=[{{name:'hf:{vit_dir}',label:dinoreg}},"
            "{name:'timm:test_resnet',weights:'random:0',label:resnet-rand},tiny-plugin]")
    assert main(["sweep", "sweep=smoke", grid, "sweep.train.bc.epochs=1", "sweep.train.eval.episodes=1",
                 "sweep.train.eval.horizon=10", "threads=1", f"out_dir={tmp_path / 'out'}",
                 f"demos_dir={tmp_path / 'demos'}", f"cache_dir={tmp_path / 'cache'}"]) == 0
    board = pd.read_csv(tmp_path / "out" / "leaderboard" / "leaderboard.csv")
    board = board[board.params_m.notna()]  # the score rows (paired-comparison rows carry no compute columns)
    assert set(board.encoder) == set(encoders)
    for label, name in encoders.items():
        facts = get_encoder_config(name)
        rows = board[board.encoder == label]
        assert set(rows.params_m) == {facts.params_m} and set(rows.gflops) == {facts.gflops}, label
        assert (rows.ms_per_img > 0).all()
    assert board[board.encoder == "resnet-rand"].gflops.iloc[0] > 0.1  # counted, not a placeholder (160 px CNN)
    md = (tmp_path / "out" / "leaderboard" / "leaderboard.md").read_text()
    assert all(f"| {label} | conv" in md for label in encoders)


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


def test_entropy_measures_them(vit_dir, plugin, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    names = [f"hf:{vit_dir}", plugin, "tiny-plugin"]
    assert main(["entropy", f"encoders=[{','.join(names)}]", f"images=folder:{tmp_path / 'imgs'}", "bins=10",
                 "bins_list=[5,10]", f"out_dir={tmp_path / 'out'}"]) == 0
    records = json.loads((tmp_path / "out" / "entropy.json").read_text())["records"]
    assert [r["encoder"] for r in records] == names and {r["num_tokens"] for r in records} == {4 * 16}
    ident = {"encoder", "encoder_name", "weights", "key"}  # the rest are measurements: one callable by either name
    a, b = ({k: v for k, v in r.items() if k not in ident} for r in records[1:])
    assert a == b and records[1]["weights"].startswith(f"{PLUGIN}:build@")


def test_distillation_teachers(vit_dir, plugin, tmp_path):
    from theia_eval.distill.teachers import TeacherSpec, build_teacher
    from theia_eval.distill.train import run_distillation

    teacher = build_teacher(TeacherSpec(f"hf:{vit_dir}", id="tiny/dinoreg"))
    assert (teacher.grid, teacher.dim, teacher.id) == ((4, 4), 32, "tiny/dinoreg")
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    assert build_teacher(TeacherSpec("tiny-plugin")).id == "tiny-plugin"
    teachers = (f"teachers=[{{name: 'hf:{vit_dir}', id: tiny/dinoreg}},"
                "{name: 'timm:test_resnet', weights: 'random:0', id: tiny/resnet}, tiny-plugin]")
    cfg = compose("distill", [f"run_dir={tmp_path / 'run'}", f"data={tmp_path / 'images'}", "student=nano",
                              "device=cpu", "train.amp=off", "train.num_workers=0", "train.progress=false",
                              "train.batch_size=4", "train.steps=2", "train.val_every=100", "train.ckpt_every=100",
                              "shard_size=8", "val_fraction=0.25", "extract_batch=8", teachers])
    summary = run_distillation(cfg)
    assert summary["steps"] == 2
    assert [(t["id"], tuple(t["grid"]), t["dim"]) for t in summary["teachers"]] == [
        ("tiny/dinoreg", (4, 4), 32), ("tiny/resnet", (5, 5), 96), ("tiny-plugin", (4, 4), 8)]
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
