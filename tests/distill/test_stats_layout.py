"""Feature statistics in the reference's feature_stats layout: written by exports, read by distillation (stats=)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from theia_eval.distill.stats import (
    RunningStats,
    find_reference_stats,
    load_stats,
    reference_paths,
    save_feature_stats,
    save_stats,
)
from theia_eval.errors import InputError


def test_reference_pair_round_trip_and_naming(tmp_path):
    mean, std = torch.randn(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.1
    paths = save_feature_stats(tmp_path, "facebook/dinov2-large", mean, std)
    assert [p.name for p in paths] == ["imagenet_mean_facebook_dinov2-large.npy",
                                       "imagenet_var_facebook_dinov2-large.npy"]
    assert np.load(paths[1]).dtype == np.float32 and np.load(paths[1]).shape == (6,)
    back = load_stats(tmp_path, "facebook/dinov2-large", 6)
    torch.testing.assert_close(back.mean, mean.float().double())
    torch.testing.assert_close(back.std, std.float().double())  # the file named "var" holds the std


def test_any_prefix_is_read_ours_wins_and_bad_pairs_are_named(tmp_path):
    mean, std = torch.zeros(3), torch.ones(3) * 2
    save_feature_stats(tmp_path, "org/model", mean, std, prefix="ego4d")
    assert find_reference_stats(tmp_path, "org/model")[0].name == "ego4d_mean_org_model.npy"
    assert load_stats(tmp_path, "org/model", 3).std.tolist() == [2.0, 2.0, 2.0]
    ours = RunningStats.empty(3)
    ours.update(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))
    save_stats(tmp_path, "org/model", ours)
    assert load_stats(tmp_path, "org/model", 3).std.tolist() == [1.0, 0.0, 1.0]  # our file takes precedence
    with pytest.raises(InputError, match="channels but teacher"):
        load_stats(tmp_path, "org/model", 4)
    save_feature_stats(tmp_path, "other", mean, std)
    save_feature_stats(tmp_path, "other", mean, std, prefix="ssv2")
    with pytest.raises(InputError, match="several feature statistics"):
        load_stats(tmp_path, "other", 3)
    lone = tmp_path / "lone"
    save_feature_stats(lone, "x", mean, std)
    reference_paths(lone, "x")[1].unlink()
    with pytest.raises(InputError, match="no partner"):
        load_stats(lone, "x", 3)
    with pytest.raises(InputError, match="missing target statistics for teacher 'y'"):
        load_stats(lone, "y", 3)
