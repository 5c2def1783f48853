"""Translators: per-teacher heads mapping the student's token grid to a teacher's feature map.

Each head is `pad` (tokens -> map, plus a 3x3 stride-1 transposed conv growing 14x14 to 16x16 where the
reference has one) then `adapter`, with the reference's module indices so parameters get the official
checkpoint names (translator.translator_heads.<teacher id>.pad.1.*, ...adapter.<i>.*) and the reference's
strict load accepts them.

lconv (the reference's light-conv head, hidden width = student width x hidden_factor):
  16x16 targets: LN(C,16,16) -> Conv3x3 -> ReLU -> LN -> Conv3x3 -> ReLU -> LN -> tokens -> Linear(C_t)
  64x64 targets: LN(C,16,16) -> ConvT3x3/2 (31x31) -> ReLU -> LN -> ConvT3x3/2 (64x64) -> ReLU -> LN
                 -> tokens -> Linear(C_t)
  14x14 targets: the 16x16 body at 14x14 (no transposed conv)
  7x7 targets (e.g. efficientnet-lite0): LN(C,14,14) -> Conv4x4/2 -> ReLU -> LN(hidden,7,7) -> tokens -> Linear
general (ours, any other target grid, e.g. 37x37 patch grids):
  LN(C,h,w) -> bilinear resample to the target grid (antialiased when shrinking) -> the 16x16 body above
The head modules live in theia_eval/encoders/theia_modeling.py (the self-contained code every export carries,
so a trained head and a loaded one are the same class); this module adds the package's errors.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from theia_eval.encoders import theia_modeling as tm
from theia_eval.encoders.theia_modeling import (  # noqa: F401  (re-exported: the translator building blocks)
    MapLayerNorm,
    MapToTokens,
    Resample,
    TokensToMap,
    TranslatorHead,
    conv_body,
    lconv_supported,
)
from theia_eval.errors import InputError

Shape = tuple[int, int, int]  # (C, H, W)


def _checked(build: Callable[..., TranslatorHead]) -> Callable[..., TranslatorHead]:
    """The modeling code's builder, raising the package's InputError."""
    def wrapped(source: Shape, target: Shape, hidden_factor: float = 1.0) -> TranslatorHead:
        try:
            return build(tuple(source), tuple(target), hidden_factor)
        except ValueError as exc:
            raise InputError(str(exc)) from exc

    wrapped.__doc__ = build.__doc__
    return wrapped


lconv_head = _checked(tm.lconv_head)
general_head = _checked(tm.general_head)
auto_head = _checked(tm.auto_head)
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
