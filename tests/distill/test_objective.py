"""Loss (0.9 cosine + 0.1 smooth-L1 per teacher, averaged), AdamW groups, lr scaling and warm-up, stats."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from theia_eval.distill.loss import LossWeights, distill_loss
from theia_eval.distill.optim import build_scheduler, param_groups, scaled_lr, warmup_factor
from theia_eval.distill.stats import RunningStats, Standardizer, load_stats, save_stats, stats_path
from theia_eval.distill.student import DistillModel, student_size
from theia_eval.errors import InputError


def test_loss_matches_formula():
    torch.manual_seed(0)
    preds = {"a": torch.randn(4, 49, 6), "b": torch.randn(4, 256, 3)}
    targets = {"a": torch.randn(4, 7, 7, 6), "b": torch.randn(4, 16, 16, 3)}
    total, terms = distill_loss(preds, targets, LossWeights())
    expected = []
    for k in preds:
        p, t = preds[k].reshape(4, -1), targets[k].reshape(4, -1)
        cos = np.mean([float(p[i] @ t[i] / (p[i].norm() * t[i].norm())) for i in range(4)])
        l1 = float(F.smooth_l1_loss(preds[k], targets[k].reshape(preds[k].shape)))
        expected.append(0.9 * (1 - cos) + 0.1 * l1)
        assert terms[k]["cos"].item() == pytest.approx(cos, abs=1e-6)
    assert total.item() == pytest.approx(np.mean(expected), abs=1e-6)


def test_param_groups_follow_reference_rule():
    model = DistillModel(student_size("nano"), {"t": (8, 16, 16)})
    groups = param_groups(model, lr=1e-3, weight_decay=0.01, translator_lr_factor=2.0)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            no_decay = p.ndim <= 1 or names[id(p)].endswith(".bias")
            assert g["weight_decay"] == (0.0 if no_decay else 0.01)
            assert g["lr"] == (2e-3 if names[id(p)].startswith("translator.") else 1e-3)
    ln = model.translator.translator_heads["t"].adapter[0].weight  # (C, 16, 16) LayerNorm weight decays
    assert any(ln is p for g in groups if g["weight_decay"] > 0 for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_lr_scaling_and_warmup():
    assert scaled_lr(2e-3, 128) == pytest.approx(5e-4)
    assert warmup_factor(0, 10) == pytest.approx(0.01)
    assert warmup_factor(5, 10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_factor(10, 10) == warmup_factor(500, 10) == 1.0
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, total_steps=100, warmup_ratio=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[10] == lrs[11] == 1.0


def test_running_stats_merge_matches_numpy_float64(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 4, 4, 5)).astype(np.float32) for n in (3, 7, 1)]
    stats = RunningStats.empty(5)
    for p in parts:
        shard = RunningStats.empty(5)
        shard.update(torch.from_numpy(p))
        stats.merge(shard)
    flat = np.concatenate(parts).reshape(-1, 5).astype(np.float64)
    np.testing.assert_allclose(stats.mean.numpy(), flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std.numpy(), flat.std(0), rtol=1e-12)
    path = save_stats(tmp_path, "org/teacher", stats)
    assert path == stats_path(tmp_path, "org/teacher") and path.name == "org__teacher.stats.safetensors"
    back = load_stats(tmp_path, "org/teacher", 5)
    torch.testing.assert_close(back.std, stats.std)
    z = Standardizer(back)(torch.from_numpy(parts[1]))
    assert z.dtype == torch.float32 and z.shape == (7, 4, 4, 5)


def test_stats_errors_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="missing target statistics for teacher 'x'"):
        load_stats(tmp_path, "x", 5)
    s = RunningStats.empty(3)
    s.update(torch.ones(2, 3))
    save_stats(tmp_path, "x", s)
    with pytest.raises(InputError, match="hold 3 channels but teacher 'x' gives 5"):
        load_stats(tmp_path, "x", 5)
