"""Translators: per-teacher heads mapping the student's token grid to a teacher's feature map.

Each head is `pad` (tokens -> map, plus a 3x3 stride-1 transposed conv growing 14x14 to 16x16) then
`adapter`, with the reference's module indices so parameters get the official checkpoint names
(translator.translator_heads.<teacher id>.pad.1.*, ...adapter.<i>.*).

lconv (the reference's light-conv head, hidden width = student width x hidden_factor):
  16x16 targets: LN(C,16,16) -> Conv3x3 -> ReLU -> LN -> Conv3x3 -> ReLU -> LN -> tokens -> Linear(C_t)
  64x64 targets: LN(C,16,16) -> ConvT3x3/2 (31x31) -> ReLU -> LN -> ConvT3x3/2 (64x64) -> ReLU -> LN
                 -> tokens -> Linear(C_t)
general (ours, any other target grid, e.g. 7x7 CNN maps or 37x37 patch grids):
  LN(C,h,w) -> bilinear resample to the target grid (antialiased when shrinking) -> the 16x16 body above
LayerNorms are elementwise-affine over the whole (C, H, W) map, as in the reference; they are computed
on channels-last maps (same numbers, no layout copies between the convolutions).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from theia_eval.errors import InputError

Shape = tuple[int, int, int]  # (C, H, W)


class TokensToMap(nn.Module):
    """(B, h*w, C) tokens -> (B, C, h, w) map (a channels-last view, no copy)."""

    def __init__(self, h: int, w: int):
        super().__init__()
        self.h, self.w = h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.h, self.w, x.shape[-1]).permute(0, 3, 1, 2)


class MapToTokens(nn.Module):
    """(B, C, h, w) map -> (B, h*w, C) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class MapLayerNorm(nn.Module):
    """LayerNorm over a whole (C, H, W) map with (C, H, W) affine parameters (nn.LayerNorm([C, H, W]))."""

    def __init__(self, shape: Shape, eps: float = 1e-5):
        super().__init__()
        self.shape, self.eps = tuple(shape), eps
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)
        y = F.layer_norm(y, y.shape[1:], self.weight.permute(1, 2, 0), self.bias.permute(1, 2, 0), self.eps)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.shape}, eps={self.eps}"


class Resample(nn.Module):
    """Bilinear resize of a map to (h, w); antialiased when shrinking."""

    def __init__(self, h: int, w: int):
        super().__init__()
        self.size = (h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        shrink = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink)


class TranslatorHead(nn.Module):
    """pad (tokens -> map at the working grid) then adapter (map -> target tokens (B, h_t*w_t, C_t))."""

    def __init__(self, pad: nn.Sequential, adapter: nn.Sequential, source: Shape, target: Shape, kind: str):
        super().__init__()
        self.pad, self.adapter = pad, adapter
        self.source, self.target, self.kind = tuple(source), tuple(target), kind

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.pad(tokens))


def conv_body(c_in: int, hidden: int, side: tuple[int, int], c_out: int) -> list[nn.Module]:
    """LN -> Conv3x3 -> ReLU -> LN -> Conv3x3 -> ReLU -> LN -> tokens -> Linear, at one grid."""
    return [MapLayerNorm((c_in, *side)), nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
            MapLayerNorm((hidden, *side)), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            MapLayerNorm((hidden, *side)), MapToTokens(), nn.Linear(hidden, c_out)]


def lconv_supported(source: Shape, target: Shape) -> bool:
    _, h, w = source
    _, ht, wt = target
    return h == w and ht == wt and h in (14, 16) and ht in (16, 64)


def lconv_head(source: Shape, target: Shape, hidden_factor: float = 1.0) -> TranslatorHead:
    """The reference light-conv head (14x14 or 16x16 student grid -> 16x16 or 64x64 target)."""
    if not lconv_supported(source, target):
        raise InputError(f"the lconv translator maps a 14x14/16x16 student grid to 16x16 or 64x64 targets; got "
                         f"{source[1]}x{source[2]} -> {target[1]}x{target[2]}. Use translator=auto or general.")
    c, h, w = source
    c_t, side = target[0], target[1]
    hidden = int(c * hidden_factor)
    pad = [TokensToMap(h, w)] + ([nn.ConvTranspose2d(c, c, 3, stride=1)] if h == 14 else [])
    if side == 16:
        adapter = conv_body(c, hidden, (16, 16), c_t)
    else:
        adapter = [MapLayerNorm((c, 16, 16)), nn.ConvTranspose2d(c, hidden, 3, stride=2, padding=1), nn.ReLU(),
                   MapLayerNorm((hidden, 31, 31)), nn.ConvTranspose2d(hidden, hidden, 3, stride=2, output_padding=1),
                   nn.ReLU(), MapLayerNorm((hidden, 64, 64)), MapToTokens(), nn.Linear(hidden, c_t)]
    return TranslatorHead(nn.Sequential(*pad), nn.Sequential(*adapter), source, target, "lconv")


def general_head(source: Shape, target: Shape, hidden_factor: float = 1.0) -> TranslatorHead:
    """Any student grid to any target grid: LN, bilinear resample, then the light-conv body."""
    c, h, w = source
    c_t, ht, wt = target
    hidden = int(c * hidden_factor)
    body = conv_body(c, hidden, (ht, wt), c_t)
    adapter = [MapLayerNorm((c, h, w)), Resample(ht, wt), *body[1:]]
    return TranslatorHead(nn.Sequential(TokensToMap(h, w)), nn.Sequential(*adapter), source, target, "general")


def auto_head(source: Shape, target: Shape, hidden_factor: float = 1.0) -> TranslatorHead:
    """lconv where the reference defines it, general elsewhere."""
    build = lconv_head if lconv_supported(source, target) else general_head
    return build(source, target, hidden_factor)


HEADS: dict[str, Callable[[Shape, Shape, float], TranslatorHead]] = {
    "auto": auto_head, "lconv": lconv_head, "general": general_head}


def build_head(kind: str, source: Shape, target: Shape, hidden_factor: float = 1.0) -> TranslatorHead:
    if kind not in HEADS:
        raise InputError(f"unknown translator '{kind}'; use one of {sorted(HEADS)}.")
    return HEADS[kind](tuple(source), tuple(target), hidden_factor)


class Translator(nn.Module):
    """One head per teacher id; parameters live under translator_heads.<id>.* (the official layout)."""

    def __init__(self, kind: str, source: Shape, targets: dict[str, Shape], hidden_factor: float = 1.0):
        super().__init__()
        self.translator_heads = nn.ModuleDict(
            {tid: build_head(kind, source, shape, hidden_factor) for tid, shape in targets.items()})

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {tid: head(tokens) for tid, head in self.translator_heads.items()}
