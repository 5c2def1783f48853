import numpy as np
import pytest
import torch

from theia_eval.analysis.entropy import bin_sensitivity, histogram_entropy, norm_entropy, token_norms
from theia_eval.errors import InputError


def test_uniform_norms_give_log_bins():
    values = (np.arange(10_000) + 0.5) / 10_000  # exactly 100 per bin for 100 bins
    assert histogram_entropy(values, bins=100) == pytest.approx(np.log(100), abs=1e-9)


def test_constant_norms_give_zero():
    assert histogram_entropy(np.full(500, 3.0), bins=50) == 0.0


def test_two_equal_bins_give_log2():
    values = np.array([0.0] * 50 + [1.0] * 50)
    assert histogram_entropy(values, bins=10) == pytest.approx(np.log(2))


def test_token_norms_of_known_tokens():
    tokens = torch.zeros(2, 3, 4, 2)
    tokens[..., 0] = 3.0
    tokens[..., 1] = 4.0
    norms = token_norms(tokens)
    assert norms.shape == (24,) and np.allclose(norms, 5.0)
    with pytest.raises(InputError, match=r"\(B, h, w, C\)"):
        token_norms(torch.zeros(2, 5))


def test_norm_entropy_records_parameters_and_sensitivity():
    rng = np.random.default_rng(0)
    norms = rng.uniform(1, 2, 20_000)
    res = norm_entropy(norms, bins=20)
    assert res.bins == 20 and res.num_tokens == 20_000 and res.max_entropy == pytest.approx(np.log(20))
    assert res.entropy == pytest.approx(np.log(20), abs=0.01)
    sens = bin_sensitivity(norms, (10, 40))
    assert sens[40] > sens[10]


def test_bad_inputs():
    with pytest.raises(InputError, match="NaN"):
        histogram_entropy(np.array([1.0, np.nan]))
    with pytest.raises(InputError, match="no values"):
        histogram_entropy(np.array([]))
    with pytest.raises(InputError, match="bins"):
        histogram_entropy(np.ones(3), bins=0)
