"""End-to-end distillation on CPU: loss falls, exact resume, online = cached, export -> encoder, bad inputs."""
import json

import pytest
import torch

from distill_helpers import distill_cfg, teacher_list
from theia_eval.distill.train import run_distillation
from theia_eval.errors import InputError, TrainingError

FAST_TEACHERS = "teachers=[sim-depth,sim-segmentation]"


def train_records(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss" in r]


def final_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)


def test_tiny_distillation_loss_falls_and_export_loads(frameset, tiny_teachers, tmp_path):
    from theia_eval.distill.data import collate_batch
    from theia_eval.distill.sources import open_source
    from theia_eval.distill.student import DistillModel, student_size
    from theia_eval.encoders import create_encoder
    from theia_eval.encoders.theia_format import read_theia_checkpoint

    run = tmp_path / "run"
    summary = run_distillation(distill_cfg(run, frameset, teacher_list(tiny_teachers), "train.steps=10"))
    records = train_records(run)
    assert [r["step"] for r in records] == list(range(1, 11))
    assert set(records[0]["teachers"]) == {"tiny/dinov2", "tiny/clip", "efficientnet-lite0"}
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-3:]) / 3
    assert last < first - 0.05, (first, last)
    for tid in ("tiny/dinov2", "tiny/clip"):  # every teacher is fitted, not only the average
        assert records[-1]["teachers"][tid]["cos"] > records[0]["teachers"][tid]["cos"] + 0.05
    assert set(summary["val"]) == {"tiny/dinov2", "tiny/clip", "efficientnet-lite0"}
    assert summary["cache"]["teachers"]["efficientnet-lite0"]["bytes_per_image"] == 7 * 7 * 1280 * 2

    ckpt = read_theia_checkpoint(run)
    assert ckpt.teacher_ids == ["efficientnet-lite0", "tiny/clip", "tiny/dinov2"]
    assert ckpt.translators["tiny/dinov2"]["pad.1.weight"].shape == (128, 128, 3, 3)
    assert "CARD.md" in {p.name for p in (run / "export").iterdir()}
    model = DistillModel(student_size("nano"), {"tiny/dinov2": (32, 16, 16), "tiny/clip": (32, 7, 7),
                                                "efficientnet-lite0": (1280, 7, 7)})
    model.load_state_dict(final_state(run)["model"])
    model.eval()
    source = open_source(str(frameset), 224)
    images = collate_batch([(source.load(i), None) for i in (0, 9, 30)]).images
    encoder = create_encoder("theia", weights=str(run), feature_reduce="mean")
    with torch.no_grad():
        expected = model.tokens(images).reshape(3, 14, 14, 128)
    torch.testing.assert_close(encoder(images).tokens, expected, atol=1e-5, rtol=1e-5)


def test_resume_continues_exactly(frameset, tiny_teachers, tmp_path):
    teachers = f"teachers=[sim-depth,{{name: clip-vit-b16, weights: '{tiny_teachers['clip']}', id: tiny/clip}}]"
    full, parts = tmp_path / "full", tmp_path / "parts"
    run_distillation(distill_cfg(full, frameset, teachers))
    stopped = run_distillation(distill_cfg(parts, frameset, teachers, "train.stop_at=3"))
    assert stopped["stopped_at"] == 3 and stopped["steps_done"] == 3
    assert "3 of 6 (stopped early" in (parts / "export" / "CARD.md").read_text()
    with open(parts / "metrics.jsonl", "a") as log:  # a kill after logging step 4 but before its checkpoint
        log.write(json.dumps({"step": 4, "loss": 99.0}) + "\n" + '{"step": 5, "lo')
    resumed = run_distillation(distill_cfg(parts, frameset, teachers))
    assert resumed["resumed_from"] == 3
    steps = [r["step"] for r in train_records(parts)]
    assert steps == sorted(set(steps)) == list(range(1, 7))  # no record twice, the dead run's step 4 gone
    a, b = final_state(full), final_state(parts)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["loss"] for r in train_records(full)][3:] == [r["loss"] for r in train_records(parts)][3:]
    with pytest.raises(InputError, match="belongs to a different run: its batch_size"):
        run_distillation(distill_cfg(parts, frameset, teachers, "train.batch_size=4"))


def test_online_targets_match_cached(frameset, tiny_teachers, tmp_path):
    teachers = f"teachers=[sim-segmentation,{{name: dinov2-vit-s14, weights: '{tiny_teachers['dino']}', id: d}}]"
    cached = run_distillation(distill_cfg(tmp_path / "c", frameset, teachers, "train.steps=3"))
    online = run_distillation(distill_cfg(tmp_path / "o", frameset, teachers, "train.steps=3", "targets=online"))
    assert "cache" in cached and "cache" not in online
    for a, b in zip(train_records(tmp_path / "c"), train_records(tmp_path / "o")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_reference_feature_stats_replace_computed_ones_in_both_modes(frameset, tmp_path):
    """stats=DIR in the reference layout (the file named var holds the std) standardises cached and online runs
    alike, and the export writes those same numbers back in that layout."""
    import numpy as np

    from theia_eval.distill.stats import save_feature_stats

    given = {"sim-depth": (torch.linspace(0.5, 3.0, 16), torch.linspace(0.3, 1.5, 16)),
             "sim-segmentation": (torch.tensor([0.6, 0.2, 0.1, 0.1]), torch.tensor([0.4, 0.3, 0.2, 0.25]))}
    ref = tmp_path / "feature_stats"
    for tid, (mean, std) in given.items():
        save_feature_stats(ref, tid, mean, std)
    runs = {name: run_distillation(distill_cfg(tmp_path / name, frameset, FAST_TEACHERS, "train.steps=2", *extra))
            for name, extra in (("computed", ()), ("cached", (f"stats={ref}",)),
                                ("online", ("targets=online", f"stats={ref}")))}
    losses = {name: [r["loss"] for r in train_records(tmp_path / name)] for name in runs}
    assert losses["cached"] == pytest.approx(losses["online"], rel=1e-4)
    assert losses["cached"][0] != pytest.approx(losses["computed"][0], rel=1e-3)  # the given stats were used
    assert runs["cached"]["stats_from"] == str(ref) and runs["computed"]["stats_from"] is None
    export = tmp_path / "cached" / "export"
    config = json.loads((export / "config.json").read_text())
    for tid, (mean, std) in given.items():
        assert np.array_equal(np.load(export / "feature_stats" / f"imagenet_mean_{tid}.npy"), mean.numpy())
        assert np.array_equal(np.load(export / "feature_stats" / f"imagenet_var_{tid}.npy"), std.numpy())
        assert config["feature_stats"][tid]["std"] == pytest.approx(std.tolist(), abs=0)
    assert f"read from {ref}" in (export / "CARD.md").read_text()


def assert_same_training(a_dir, b_dir, tolerance=0.02):
    """Same loss curve, and parameters that differ by < tolerance x how far training moved them.

    Summation order differs (micro-batches, processes), and Adam turns float-rounding noise in near-zero
    gradients into differences of up to one learning rate, so bit equality is not expected."""
    from theia_eval.distill.student import DistillModel, student_size

    losses_a = [r["loss"] for r in train_records(a_dir)]
    losses_b = [r["loss"] for r in train_records(b_dir)]
    assert losses_a == pytest.approx(losses_b, rel=1e-4)
    a, b = final_state(a_dir)["model"], final_state(b_dir)["model"]
    torch.manual_seed(0)
    init = DistillModel(student_size("nano"), {"sim-depth": (16, 16, 16), "sim-segmentation": (4, 16, 16)}).state_dict()
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-3 and diff < tolerance * moved, (diff, moved)


def test_grad_accumulation_matches_full_batch(frameset, tmp_path):
    run_distillation(distill_cfg(tmp_path / "a", frameset, FAST_TEACHERS, "train.steps=3"))
    run_distillation(distill_cfg(tmp_path / "b", frameset, FAST_TEACHERS, "train.steps=3", "train.grad_accum=2"))
    assert_same_training(tmp_path / "a", tmp_path / "b")


class NaNTeacher:
    """Builds a teacher whose targets are NaN (for the loss guard)."""

    def __call__(self, spec, device, dtype):
        from theia_eval.distill.teachers import Teacher

        class T(Teacher):
            def compute(self, batch):
                return torch.full((len(batch), 4, 4, 2), float("nan"))

        return T(spec, "nan", (4, 4), 2)


def test_nan_loss_stops_and_says_when(frameset, tmp_path):
    from theia_eval.distill.stats import RunningStats, save_stats
    from theia_eval.distill.teachers import TEACHERS

    stats = RunningStats.empty(2)
    stats.update(torch.randn(10, 2))
    save_stats(tmp_path / "stats", "nan", stats)
    TEACHERS["test-nan"] = NaNTeacher()
    try:
        cfg = distill_cfg(tmp_path / "run", frameset, "teachers=[test-nan]", "targets=online",
                          f"stats={tmp_path / 'stats'}")
        with pytest.raises(TrainingError, match=r"NaN/inf at step 1 of 6 \(epoch 0.00\)"):
            run_distillation(cfg)
    finally:
        del TEACHERS["test-nan"]


def test_bad_inputs_fail_early(frameset, tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(InputError, match="student is too large for these images"):
        run_distillation(distill_cfg(tmp_path / "r1", folder, FAST_TEACHERS))
    with pytest.raises(InputError, match=r"teacher 'sim-depth' needs \['depth'\]"):
        run_distillation(distill_cfg(tmp_path / "r2", folder, FAST_TEACHERS, "allow_upsample=true"))
    with pytest.raises(InputError, match="missing target statistics for teacher 'sim-depth'"):
        run_distillation(distill_cfg(tmp_path / "r3", frameset, FAST_TEACHERS, "targets=online", f"stats={tmp_path}"))
    with pytest.raises(InputError, match="not divisible by world_size x grad_accum"):
        run_distillation(distill_cfg(tmp_path / "r4", frameset, FAST_TEACHERS, "train.grad_accum=3"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty data source"):
        run_distillation(distill_cfg(tmp_path / "r5", tmp_path / "empty", FAST_TEACHERS))
