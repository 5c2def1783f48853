"""The conv head's GEMM convolution equals torch's convolution, and bf16 training learns."""
import numpy as np
import pytest
import torch
from torch import nn

from theia_eval.errors import InputError
from theia_eval.policies.bc import BCConfig, WindowDataset, train_bc
from theia_eval.policies.heads import conv2d_gemm


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 12, 7, 7), 4, 2, 1), ((3, 5, 3, 3), 3, 2, 0), ((1, 6, 1, 1), 3, 1, 1), ((2, 4, 14, 9), 4, 2, (2, 1))])
def test_gemm_conv_matches_torch(shape, kernel, stride, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 8, kernel, stride, padding)
    x = torch.randn(shape)
    torch.testing.assert_close(conv2d_gemm(x, conv), conv(x), rtol=1e-5, atol=1e-5)


def test_gemm_conv_gradients_match_torch():
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 4, 4, 2, 1)
    x = torch.randn(3, 6, 7, 7)
    conv2d_gemm(x, conv).square().sum().backward()
    g_gemm = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    conv(x).square().sum().backward()
    for a, b in zip(g_gemm, (p.grad for p in conv.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _linear_expert_data(n=600, grid=(3, 3), c=4, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, *grid, c)).astype(np.float16)
    w = rng.normal(size=(c, 2)).astype(np.float32)
    actions = emb.astype(np.float32).mean(axis=(1, 2)) @ w
    proprio = rng.normal(size=(n, 3)).astype(np.float32)
    return WindowDataset(emb, actions, proprio, [n // 4] * 4, "tokens", history=1), actions


def test_bf16_training_learns_the_linear_expert(tmp_path):
    data, actions = _linear_expert_data()
    cfg = BCConfig(head="conv", history=1, epochs=40, batch_size=64, eval_every=40, precision="bf16", progress=False)
    policy = train_bc(data, cfg, tmp_path).policy
    feats, prop, act = data.get_batch(np.arange(len(data)))
    mse = float(((policy.act(feats, prop) - act) ** 2).mean())
    assert mse < 0.1 * float(act.var())


def test_bad_precision_is_refused(tmp_path):
    data, _ = _linear_expert_data(n=40)
    with pytest.raises(InputError, match="precision"):
        train_bc(data, BCConfig(head="conv", history=1, epochs=1, precision="fp8", progress=False), tmp_path)
