"""Held-out tasks, intermediate exports (train.export_at), the bundled-asset writer and the CPU bf16 path."""
import json

import numpy as np
import pytest
import torch

from distill_helpers import distill_cfg
from theia_eval.distill import train as train_module
from theia_eval.distill.data import split_indices
from theia_eval.distill.optim import decay_factor
from theia_eval.distill.student import DistillModel, set_attention, student_size
from theia_eval.distill.train import amp_dtype, run_distillation
from theia_eval.encoders import create_encoder
from theia_eval.errors import InputError

TEACHERS = "teachers=[sim-depth,sim-segmentation]"
KEYS = ["metaworld/drawer-open/ep00000/t000/top_cap2", "metaworld/drawer-open/ep00001/t000/corner3",
        "metaworld/button-press-topdown/ep00000/t000/top_cap2", "dmc/walker-walk/ep00002/t000/side",
        "dmc/walker-run/ep00003/t000/side", "adroit/pen/ep00004/t000/vil_camera"]


def test_held_out_by_task_patterns_and_suites():
    train, val = split_indices(KEYS, 0.5, ["metaworld/button-press-topdown", "dmc/walker-*"])
    assert [KEYS[i] for i in val] == KEYS[2:5]
    train, val = split_indices(KEYS, 0.0, ["cortexbench-metaworld", "cortexbench-adroit"])  # suite names
    assert [KEYS[i] for i in val] == [KEYS[0], KEYS[1], KEYS[2], KEYS[5]]
    assert list(split_indices(KEYS, 0.0, "adroit/pen")[1]) == [5]
    with pytest.raises(InputError, match="matches none of the 6 sample keys"):
        split_indices(KEYS, 0.0, ["metaworld/hammer"])
    with pytest.raises(InputError, match="neither a task pattern"):
        split_indices(KEYS, 0.0, ["walker"])
    with pytest.raises(InputError, match="no training images left"):
        split_indices(KEYS, 0.0, ["*"])


def test_run_holds_out_whole_tasks_and_exports_at_steps(frameset, tmp_path):
    run = tmp_path / "run"
    summary = run_distillation(distill_cfg(run, frameset, TEACHERS, "val_tasks=[metaworld/button-press-topdown]",
                                           "train.steps=4", "train.export_at=[2,3]"))
    assert summary["val_images"] == 16 and summary["train_images"] == 16  # 2 tasks x 16 frames in the fixture
    assert "never trained on" in summary["held_out"]
    tokens = {}
    images = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for step in (2, 3):
        export = run / "exports" / f"step-{step:06d}"
        config = json.loads((export / "config.json").read_text())
        assert "2 of 4" in (run / "exports" / "step-000002" / "CARD.md").read_text()
        assert config is not None
        tokens[step] = create_encoder("theia", weights=str(export))(images).tokens
    tokens[4] = create_encoder("theia", weights=str(run))(images).tokens
    assert not torch.allclose(tokens[2], tokens[3]) and not torch.allclose(tokens[3], tokens[4])
    curve = json.loads((run / "fit_curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [2, 3, 4] and curve["exports"] == [2, 3, 4]
    assert set(curve["points"][0]["cos"]) == {"sim-depth", "sim-segmentation"}
    assert (run / "fit_curve.png").stat().st_size > 1000
    with pytest.raises(InputError, match="train.export_at"):
        run_distillation(distill_cfg(tmp_path / "bad", frameset, TEACHERS, "train.export_at=[0]"))


def test_bundle_writes_a_small_float16_asset_with_the_fit_table(frameset, tmp_path):
    from safetensors.torch import load_file

    from theia_eval.distill.bundle import bundle

    run = tmp_path / "run"
    run_distillation(distill_cfg(run, frameset, TEACHERS, "val_tasks=[metaworld/drawer-open]", "train.steps=3",
                                 "train.export_at=[1,2]"))
    asset = bundle(run, tmp_path / "asset", "tiny-student", "scripts/theia_offline.sh")
    assert all(v.dtype == torch.float16 for v in load_file(asset / "model.safetensors").values())
    card = (asset / "CARD.md").read_text()
    assert "`scripts/theia_offline.sh`" in card and "| 1 | 8 |" in card and "| 3 | 24 |" in card
    assert "heldout_fit.png" in card and (asset / "heldout_fit.png").is_file()
    assert "metaworld: drawer-open, button-press-topdown" in card and "## Run card:" in card
    assert json.loads((asset / "heldout_fit.json").read_text())["exports"] == [1, 2, 3]
    by_suite = json.loads((asset / "heldout_by_suite.json").read_text())[0]
    assert by_suite["images"] == 16 and set(by_suite["cos_by_family"]) == {"metaworld"}
    assert by_suite["teachers"]["sim-depth"]["cos"] == pytest.approx(
        json.loads((run / "summary.json").read_text())["val"]["sim-depth"]["cos"], abs=1e-4)  # float32 both
    assert "| tiny-student (this one) | metaworld | 16 |" in card
    from theia_eval.distill.heldout import heldout_fit  # the ablation table's per-image fits (analysis/ablation.py)

    fit = heldout_fit(str(run), run, per_image=True)
    assert {t: len(v) for t, v in fit["cos_per_image"].items()} == {t: 16 for t in fit["teachers"]}
    assert all(np.mean(v) == pytest.approx(fit["teachers"][t]["cos"]) for t, v in fit["cos_per_image"].items())
    images = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8)
    half = create_encoder("theia", weights=str(asset))(images).tokens
    full = create_encoder("theia", weights=str(run))(images).tokens
    torch.testing.assert_close(half, full, rtol=0.05, atol=0.05)


def test_cpu_bf16_autocast_trains_like_float32(frameset, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "cpu_has_fast_bf16", lambda: True)
    assert amp_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(train_module, "cpu_has_fast_bf16", lambda: False)
    assert amp_dtype("auto", torch.device("cpu")) is None
    fp32 = run_distillation(distill_cfg(tmp_path / "fp32", frameset, TEACHERS, "train.steps=3"))
    bf16 = run_distillation(distill_cfg(tmp_path / "bf16", frameset, TEACHERS, "train.steps=3", "train.amp=bf16"))
    assert fp32["amp"] == "None" and bf16["amp"] == "bfloat16" and bf16["attention"] == "matmul"
    losses = [[json.loads(line)["loss"] for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()
               if "loss" in json.loads(line)] for r in ("fp32", "bf16")]
    assert np.all(np.isfinite(losses[1]))
    assert losses[1] == pytest.approx(losses[0], rel=0.03)  # same batches, same init: bf16 rounding only


def test_matmul_attention_equals_sdpa():
    torch.manual_seed(0)
    model = DistillModel(student_size("nano"), {"t": (4, 16, 16)}).eval()
    images = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    set_attention(model.backbone, "sdpa", torch.device("cpu"))
    with torch.no_grad():
        sdpa = model.tokens(images)
    assert set_attention(model.backbone, "auto", torch.device("cpu")) == "sdpa"  # float32: sdpa is faster
    assert set_attention(model.backbone, "auto", torch.device("cpu"), torch.bfloat16) == "matmul"
    with torch.no_grad():
        matmul = model.tokens(images)
    torch.testing.assert_close(matmul, sdpa, rtol=1e-4, atol=1e-4)
    with pytest.raises(InputError, match="unknown attention"):
        set_attention(model.backbone, "flash", torch.device("cpu"))


def test_cosine_decay_schedule():
    assert decay_factor(5, 10, 110, "cosine") == 1.0  # still warming up
    assert decay_factor(10, 10, 110, "cosine") == pytest.approx(1.0)
    assert decay_factor(109, 10, 110, "cosine", final=0.05) == pytest.approx(0.05)
    assert decay_factor(59, 10, 109, "cosine") == pytest.approx(0.5, abs=0.02)
    assert decay_factor(100, 10, 110, "none") == 1.0
