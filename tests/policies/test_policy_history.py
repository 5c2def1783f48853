"""History fusion: hand-checked FLARE values, offline windows by index, the online buffer."""
import numpy as np
import pytest
import torch

from theia_eval.errors import InputError, UnknownNameError
from theia_eval.policies.history import (
    HistoryBuffer,
    fuse,
    fused_dim,
    gather_windows,
    list_fusions,
    window_indices,
)


def test_flare_and_stack_on_summary_vectors_by_hand():
    frames = torch.tensor([[[1.0, 10.0], [2.0, 30.0], [4.0, 60.0]]])  # (B=1, T=3, C=2), oldest first
    assert fuse(frames, "flare").tolist() == [[1.0, 20.0, 2.0, 30.0, 4.0, 60.0]]
    assert fuse(frames, "stack").tolist() == [[1.0, 10.0, 2.0, 30.0, 4.0, 60.0]]
    assert fuse(frames.numpy(), "flare").tolist() == [[1.0, 20.0, 2.0, 30.0, 4.0, 60.0]]
    assert fuse(frames[:, -1:], "flare").tolist() == [[4.0, 60.0]]  # T = 1: just the frame
    assert fused_dim("flare", 768, 3) == 2304 and list_fusions() == ["flare", "stack"]
    with pytest.raises(UnknownNameError, match="Did you mean: flare"):
        fuse(frames, "flar")


def test_flare_on_token_maps_concatenates_channels_per_position():
    frames = torch.arange(2 * 3 * 2 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 2, 4)
    out = fuse(frames, "flare")
    assert out.shape == (2, 2, 2, 12)
    e0, e1, e2 = frames[:, 0], frames[:, 1], frames[:, 2]
    assert torch.equal(out[..., 0:4], e1 - e0) and torch.equal(out[..., 4:8], e2 - e1)
    assert torch.equal(out[..., 8:12], e2)


def test_window_indices_pad_episode_starts_with_the_first_frame():
    w = window_indices([2, 4], history=3)
    assert w.tolist() == [[0, 0, 0], [0, 0, 1],  # episode 0: rows 0-1
                          [2, 2, 2], [2, 2, 3], [2, 3, 4], [3, 4, 5]]  # episode 1: rows 2-5
    assert window_indices([2], 3, offsets=[10]).tolist() == [[10, 10, 10], [10, 10, 11]]
    assert window_indices([], 3).shape == (0, 3)
    with pytest.raises(InputError, match="history must be >= 1"):
        window_indices([3], 0)


def test_flare_values_at_an_episode_start_and_in_the_middle():
    emb = np.array([[0.0], [1.0], [3.0], [6.0], [10.0], [100.0], [101.0], [103.0]], np.float16)  # demos of 5 and 3
    fused = fuse(gather_windows(emb, window_indices([5, 3], 3)), "flare")
    assert fused[0].tolist() == [0.0, 0.0, 0.0]  # [e0-e0, e0-e0, e0]
    assert fused[1].tolist() == [0.0, 1.0, 1.0]  # [e0-e0, e1-e0, e1]
    assert fused[3].tolist() == [2.0, 3.0, 6.0]  # middle: [e2-e1, e3-e2, e3]
    assert fused[5].tolist() == [0.0, 0.0, 100.0]  # second demo starts fresh
    assert fused[7].tolist() == [1.0, 2.0, 103.0]


def test_gather_windows_equals_materialized_windows_and_reads_each_row_once():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((20, 3, 3, 2)).astype(np.float16)
    w = window_indices([7, 13], 3)[[0, 5, 8, 19]]

    class Spy(np.ndarray):
        reads: list = []

        def __getitem__(self, idx):
            Spy.reads.append(np.asarray(idx).copy())
            return super().__getitem__(idx)

    out = gather_windows(emb.view(Spy), w)
    assert out.dtype == np.float32 and out.shape == (4, 3, 3, 3, 2)
    np.testing.assert_array_equal(out, emb.astype(np.float32)[w])
    assert Spy.reads[0].tolist() == sorted(set(w.ravel().tolist()))


def test_online_buffer_equals_offline_windows_over_episodes():
    """Two envs, episodes of different lengths: env 0 resets after 4 steps, env 1 after 6."""
    rng = np.random.default_rng(1)
    lengths = {0: [4, 5], 1: [6, 3]}
    streams = {e: rng.standard_normal((sum(ls), 2, 2, 3)).astype(np.float32) for e, ls in lengths.items()}
    offline = {e: torch.from_numpy(fuse(gather_windows(streams[e], window_indices(ls, 3)), "flare"))
               for e, ls in lengths.items()}
    buf = HistoryBuffer(num_envs=2, history=3, fusion="flare")
    starts = {e: set(np.cumsum([0] + ls[:-1]).tolist()) for e, ls in lengths.items()}
    for t in range(9):
        ended = [e for e in (0, 1) if t in starts[e] and t > 0]
        if ended:
            buf.reset(ended)
        fused = buf.push(torch.stack([torch.from_numpy(streams[e][t]) for e in (0, 1)]))
        for e in (0, 1):
            torch.testing.assert_close(fused[e], offline[e][t], rtol=0, atol=0)


def test_buffer_stack_summary_and_errors():
    buf = HistoryBuffer(num_envs=1, history=2, fusion="stack")
    with pytest.raises(InputError, match="empty"):
        _ = buf.frames
    assert buf.push(np.array([[1.0, 2.0]])).tolist() == [[1.0, 2.0, 1.0, 2.0]]
    assert buf.push(np.array([[3.0, 4.0]])).tolist() == [[1.0, 2.0, 3.0, 4.0]]
    buf.reset()
    assert buf.push(np.array([[5.0, 6.0]])).tolist() == [[5.0, 6.0, 5.0, 6.0]]
    with pytest.raises(InputError, match="holds 1 envs but got a batch of 2"):
        buf.push(np.zeros((2, 2)))
    with pytest.raises(InputError, match="differs from earlier pushes"):
        buf.push(np.zeros((1, 3)))
