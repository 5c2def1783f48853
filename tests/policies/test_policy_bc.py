"""Behaviour cloning: exact resume, seeding, checkpoints, eval callback, NaN and shape errors."""
import dataclasses

import numpy as np
import pytest
import torch
from policy_helpers import SMALL

from theia_eval.errors import CheckpointMismatchError, InputError, TrainingError
from theia_eval.policies.bc import (
    BCConfig,
    WindowDataset,
    build_policy,
    load_checkpoint,
    load_policy,
    train_bc,
)
from theia_eval.policies.cache import ArrayDemoSource, get_or_build_cache
from theia_eval.policies.history import fuse


def config(**kw):
    base = dict(head="mlp", head_config=SMALL["mlp"], epochs=4, batch_size=32, eval_every=1, progress=False)
    return BCConfig(**{**base, **kw})


@pytest.fixture
def data(make_data):
    return make_data("summary", dim=8, demos=3, length=30)


def success(policy, epoch):
    """A stand-in for the simulator: a deterministic score that peaks at epoch 3."""
    return {"success": float(-abs(epoch - 3)), "epoch_seen": float(epoch)}


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path, data, precision):
    full = train_bc(data, config(precision=precision), tmp_path / "full", eval_fn=success)
    train_bc(data, config(epochs=2, precision=precision), tmp_path / "part", eval_fn=success)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 2
    resumed = train_bc(data, config(precision=precision), tmp_path / "part", eval_fn=success)
    assert same_weights(full.policy, resumed.policy)
    assert resumed.history == full.history and resumed.best == full.best == {"epoch": 3, "value": 0.0}


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    class Crash(Exception):
        pass

    def crash_at_3(policy, epoch):
        if epoch == 3:
            raise Crash
        return success(policy, epoch)

    rng_data = WindowDataset(np.random.default_rng(0).standard_normal((60, 7, 7, 3)).astype(np.float16),
                             np.random.default_rng(1).standard_normal((60, 2)).astype(np.float32),
                             np.zeros((60, 0), np.float32), [25, 35], "tokens")
    cfg = config(head="conv", head_config=SMALL["conv"])
    full = train_bc(rng_data, cfg, tmp_path / "full", eval_fn=success)
    with pytest.raises(Crash):
        train_bc(rng_data, cfg, tmp_path / "crash", eval_fn=crash_at_3)
    assert load_checkpoint(tmp_path / "crash" / "last.pt")["epoch"] == 2
    resumed = train_bc(rng_data, cfg, tmp_path / "crash", eval_fn=success)
    assert same_weights(full.policy, resumed.policy) and resumed.history == full.history


def test_same_seed_same_result_other_seed_differs(data):
    a, b = train_bc(data, config(epochs=2)), train_bc(data, config(epochs=2))
    assert same_weights(a.policy, b.policy)
    assert not same_weights(a.policy, train_bc(data, config(epochs=2, seed=200)).policy)


def test_checkpoints_best_and_last_and_eval_schedule(tmp_path, data):
    seen, snapshots = [], {}

    def record(policy, epoch):
        seen.append(epoch)
        snapshots[epoch] = {k: v.clone() for k, v in policy.state_dict().items()}
        return success(policy, epoch)

    result = train_bc(data, config(epochs=7, eval_every=3), tmp_path, eval_fn=record)
    assert seen == [3, 6, 7]  # every eval_every epochs, and after the last
    assert [sorted(r) for r in result.history][2] == ["epoch", "epoch_seen", "success", "train_loss"]
    assert result.best == {"epoch": 3, "value": 0.0} and result.best_path == tmp_path / "best.pt"
    best = load_policy(tmp_path / "best.pt")
    assert all(torch.equal(best.state_dict()[k], v) for k, v in snapshots[3].items())
    assert same_weights(load_policy(tmp_path / "last.pt"), result.policy)
    feats, prop, _ = data.get_batch(np.arange(8))
    assert torch.equal(load_policy(tmp_path / "last.pt")(feats, prop), result.policy(feats, prop))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temp files left
    with pytest.raises(InputError, match="must include a finite 'success'"):
        train_bc(data, config(epochs=1), None, eval_fn=lambda p, e: {"return": 1.0})


def test_nan_loss_stops_with_the_epoch_and_step(data):
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, step 2/3"):
        train_bc(data, config(lr=1e20))

    def poison(policy, epoch):
        if epoch == 2:
            with torch.no_grad():
                policy.head.mlp.out.bias.fill_(float("nan"))
        return success(policy, epoch)

    with pytest.raises(TrainingError, match=r"at epoch 3, step 1/3"):
        train_bc(data, config(), eval_fn=poison)


def test_dimension_mismatches_raise(tmp_path, data, make_data):
    wrong_action = build_policy(config(), dataclasses.replace(data.shapes(), action_dim=5))
    with pytest.raises(InputError, match="action_dim: head 5 vs data 3"):
        train_bc(data, config(), policy=wrong_action)
    wrong_proprio = build_policy(config(), dataclasses.replace(data.shapes(), proprio_dim=2))
    with pytest.raises(InputError, match="proprio_dim: head 2 vs data 4"):
        train_bc(data, config(), policy=wrong_proprio)
    with pytest.raises(InputError, match="head 'conv' reads tokens but the data holds summary"):
        train_bc(data, config(head="conv", head_config=SMALL["conv"]))
    train_bc(data, config(epochs=1), tmp_path)
    other = make_data("summary", dim=8, demos=3, length=30, action=2)
    with pytest.raises(CheckpointMismatchError, match="holds a head for shapes"):
        train_bc(other, config(epochs=2), tmp_path)
    with pytest.raises(CheckpointMismatchError, match="'lr': \\(0.001, 0.01\\)"):
        train_bc(data, config(epochs=2, lr=1e-2), tmp_path)
    train_bc(other, config(epochs=1), tmp_path, resume=False)  # explicit fresh start overwrites


def test_checkpoint_of_another_run_or_program_is_refused(tmp_path, data):
    run = {"task": "metaworld/drawer-open", "encoder": "pixels", "kind": "summary", "demos": "hdf5:abc"}
    train_bc(data, config(epochs=1), tmp_path, run=run)
    assert load_checkpoint(tmp_path / "last.pt")["run"] == run
    train_bc(data, config(epochs=2), tmp_path, run=run)  # its own run resumes
    with pytest.raises(CheckpointMismatchError, match="belongs to another run .*'task': .*window-open"):
        train_bc(data, config(epochs=3), tmp_path, run={**run, "task": "metaworld/window-open"})
    with pytest.raises(CheckpointMismatchError, match="belongs to another run .*'demos'"):
        train_bc(data, config(epochs=3), tmp_path, run={**run, "demos": "hdf5:other"})
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="cannot be read as a theia-eval policy checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"step": 3, "model": {}}, tmp_path / "distill.pt")  # another program's checkpoint
    with pytest.raises(CheckpointMismatchError, match="is not a theia-eval policy checkpoint .*missing"):
        load_policy(tmp_path / "distill.pt")


def test_empty_and_tiny_datasets_raise(data):
    with pytest.raises(InputError, match="no frames"):
        WindowDataset(np.zeros((0, 4), np.float16), np.zeros((0, 2)), np.zeros((0, 0)), [], "summary")
    one = WindowDataset(np.zeros((1, 4), np.float16), np.zeros((1, 2)), np.zeros((1, 0)), [1], "summary")
    with pytest.raises(InputError, match="1 frame"):
        train_bc(one, config())
    with pytest.raises(InputError, match="non-finite"):
        WindowDataset(np.zeros((2, 4), np.float16), np.array([[0.0], [np.nan]]), np.zeros((2, 0)), [2], "summary")
    with pytest.raises(InputError, match="history/fusion"):
        train_bc(data, config(history=2))


def test_dataset_from_cache_reads_windows_of_the_selected_demos(tmp_path):
    rng = np.random.default_rng(0)
    demos = {f"demo_{i}": {"rgb": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
                           "actions": rng.standard_normal((n, 2)).astype(np.float32)} for i, n in enumerate((4, 6, 5))}
    from theia_eval.encoders import create_encoder

    cache = get_or_build_cache(create_encoder("pixels"), ArrayDemoSource(demos), tmp_path, "summary", progress=False)
    ds = WindowDataset.from_cache(cache, history=3, demo_keys=["demo_2", "demo_0"])
    assert len(ds) == 9 and ds.proprio_dim == 0 and ds.shapes().summary_dim == 768
    feats, prop, act = ds.get_batch(np.array([0, 4, 6]))
    emb = cache.embeddings.astype(np.float32)
    expect = [emb[[10, 10, 10]], emb[[12, 13, 14]], emb[[0, 0, 1]]]  # demo_2 rows 10-14, demo_0 rows 0-3
    np.testing.assert_array_equal(feats.numpy(), fuse(np.stack(expect), "flare"))
    np.testing.assert_array_equal(act.numpy(), cache.actions[[10, 14, 1]])
    result = train_bc(ds, config(epochs=1, batch_size=4))
    assert result.policy.shapes.summary_dim == 768 and result.best is None and result.last_path is None


def test_standardized_actions_are_learned_and_returned_raw(make_data):
    base = make_data("summary", dim=8, demos=4, length=40)
    shifted = WindowDataset(base.embeddings, base.actions * 50 + 200, base.proprio, [40] * 4, "summary")
    policy = train_bc(shifted, config(epochs=30, action_norm="standardize", proprio_norm="standardize")).policy
    assert torch.allclose(policy.action_mean, torch.from_numpy(shifted.actions.mean(0)))
    feats, prop, act = shifted.get_batch(np.arange(len(shifted)))
    assert ((policy.act(feats, prop) - act) ** 2).mean() < 0.05 * act.var()


def test_online_evaluation_inputs_equal_the_training_windows(tmp_path):
    """encoder -> match_cache_precision -> HistoryBuffer gives exactly WindowDataset's fused features."""
    from theia_eval.encoders import create_encoder
    from theia_eval.policies import HistoryBuffer, head_input_kind, match_cache_precision

    rng = np.random.default_rng(3)
    demos = {f"demo_{i}": {"rgb": rng.integers(0, 256, (n, 24, 24, 3), dtype=np.uint8),
                           "actions": rng.standard_normal((n, 2)).astype(np.float32)} for i, n in enumerate((5, 4))}
    enc, kind = create_encoder("pixels"), head_input_kind("conv")
    cache = get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, kind, progress=False)
    ds = WindowDataset.from_cache(cache, history=3, fusion="flare")
    train_feats, _, _ = ds.get_batch(np.arange(len(ds)))
    buf = HistoryBuffer(num_envs=2, history=3, fusion="flare")  # env i replays demo_i
    for t in range(5):
        frames = np.stack([demos[f"demo_{i}"]["rgb"][min(t, 3 if i else 4)] for i in (0, 1)])
        fused = buf.push(match_cache_precision(getattr(enc(frames), kind)))
        assert torch.equal(fused[0], train_feats[t])
        if t < 4:
            assert torch.equal(fused[1], train_feats[5 + t])
