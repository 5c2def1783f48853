"""Policy heads: a registry of small networks mapping fused embeddings (+ proprio) to actions.

Every head is built from a `PolicyShapes` (token grid, token dim, summary dim, history length,
fusion, proprio dim, action dim) and its own config dataclass, and knows without a forward pass
what it reads (`input_kind`: "summary" or "tokens"), the per-sample shape of its fused input
(`feature_shape`) and of its output (`output_shape`).

- `mlp`  (CortexBench): fused summary vectors (B, T*C') ++ proprio -> BatchNorm MLP.
- `conv` (Theia spatial head): fused token maps (B, h, w, T*C) -> 3 conv stages -> 1x1 -> 256
         ++ proprio -> BatchNorm MLP.
- `attn` (ours): fused tokens -> cross-attention pooling with a few learned queries ++ proprio
         -> BatchNorm MLP.

`forward(features, proprio)` returns actions (B, action_dim); proprio may be None only when
proprio_dim is 0.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from theia_eval.errors import InputError, unknown_name
from theia_eval.registry import Registry
from theia_eval.policies.history import fused_dim, get_fusion

# The reference conv neck (Theia's CortexBench helpers), as (kernel, stride, padding) per stage:
# 14x14 -> 7x7 -> 3x3 -> 1x1.
REFERENCE_STAGES: tuple[tuple[int, int, int], ...] = ((4, 2, 1), (3, 2, 0), (3, 1, 0))


@dataclass(frozen=True)
class PolicyShapes:
    """Everything a head needs to know about its inputs and output."""

    grid: tuple[int, int]
    token_dim: int
    summary_dim: int
    history: int = 3
    fusion: str = "flare"
    proprio_dim: int = 0
    action_dim: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        get_fusion(self.fusion)
        if len(self.grid) != 2:
            raise InputError(f"bad policy shapes: grid must be (h, w), got {self.grid}.")
        sizes = {"grid[0]": self.grid[0], "grid[1]": self.grid[1], "token_dim": self.token_dim,
                 "summary_dim": self.summary_dim, "history": self.history, "action_dim": self.action_dim}
        bad = {k: v for k, v in sizes.items() if int(v) < 1}
        if bad or self.proprio_dim < 0:
            raise InputError(f"bad policy shapes {self}: {', '.join(sizes)} must be >= 1 and proprio_dim >= 0 "
                             f"(offending: {bad or {'proprio_dim': self.proprio_dim}}).")

    @classmethod
    def from_encoder(cls, config: Any, *, history: int = 3, fusion: str = "flare", proprio_dim: int = 0,
                     action_dim: int) -> PolicyShapes:
        """Shapes from an encoder config (anything with grid, token_dim, summary_dim)."""
        return cls(tuple(config.grid), config.token_dim, config.summary_dim, history, fusion, proprio_dim, action_dim)

    @property
    def fused_token_dim(self) -> int:
        return fused_dim(self.fusion, self.token_dim, self.history)

    @property
    def fused_summary_dim(self) -> int:
        return fused_dim(self.fusion, self.summary_dim, self.history)


# --- building blocks -------------------------------------------------------------------------------
class BatchNormMLP(nn.Module):
    """CortexBench/mjrl head: BatchNorm1d(input) -> [Linear -> ReLU] x len(hidden) -> Linear.

    The last Linear's weight and bias are multiplied by `last_layer_scale` (1e-2) at init.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256, 256),
                 last_layer_scale: float = 1e-2):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_dim)
        layers: list[nn.Module] = []
        for a, b in zip((in_dim, *hidden[:-1]), hidden):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(hidden[-1] if hidden else in_dim, out_dim)
        with torch.no_grad():
            self.out.weight.mul_(last_layer_scale)
            self.out.bias.mul_(last_layer_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(self.norm(x)))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW map, each position on its own."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class ConvStage:
    """One conv stage of the spatial head, per axis (h, w)."""

    kernel: int
    stride: int
    padding: tuple[int, int]
    size_in: tuple[int, int]
    size_out: tuple[int, int]


def conv_plan(grid: tuple[int, int], stages: tuple[tuple[int, int, int], ...] = REFERENCE_STAGES) -> list[ConvStage]:
    """Stages of the spatial head for any grid.

    Rule: keep each reference (kernel, stride, padding); where an input side is smaller than the
    kernel, raise that side's padding to ceil((kernel - side) / 2) so the stage still outputs >= 1.
    14x14 gives the reference 7 -> 3 -> 1 exactly; 16 -> 8 -> 3 -> 1; 7 -> 3 -> 1 -> 1 (pad 1);
    8 -> 4 -> 1 -> 1. If the last map is still larger than 1x1 (grids >= 18), the head average-pools it
    to 1x1 (`needs_pool`).
    """
    plan, size = [], tuple(int(g) for g in grid)
    for kernel, stride, pad in stages:
        padding = tuple(max(pad, math.ceil((kernel - n) / 2)) for n in size)
        out = tuple((n + 2 * p - kernel) // stride + 1 for n, p in zip(size, padding))
        plan.append(ConvStage(kernel, stride, padding, size, out))
        size = out
    return plan


def needs_pool(grid: tuple[int, int]) -> bool:
    return conv_plan(grid)[-1].size_out != (1, 1)


def _patches_times_weight(patches: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(..., Cin*kh*kw) patches x the (Cout, Cin, kh, kw) weight (+ bias) -> (..., Cout)."""
    out = torch.matmul(patches, weight.reshape(weight.shape[0], -1).t())
    return out if bias is None else out + bias


def conv2d_gemm(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """`conv(x)` computed as im2col + one matrix product (same parameters, same result).

    The head's first conv is wide (T*C in, e.g. 3 x 1280 = 3840 channels) on a tiny map: there
    oneDNN's direct convolution reorders the whole weight on every call (19 ms for one sample on a
    2-core Xeon) and trains 1.2x slower than a plain GEMM; a GEMM also runs in bf16 under autocast.
    """
    b, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (B, Cin*kh*kw, L)
    out = _patches_times_weight(cols.transpose(1, 2), conv.weight, conv.bias)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return out.transpose(1, 2).reshape(b, conv.out_channels, ho, wo)


def first_conv_channels_last(features: torch.Tensor, conv: nn.Conv2d, history: int) -> torch.Tensor:
    """The first conv of the spatial head applied straight to fused tokens (B, h, w, T*C), frame-major.

    Equals `conv` on the reference layout (B, C*T, h, w) (channel c*T + t): the weight, not the
    much larger input, is reordered to frame-major, and the patches are cut from the channels-last
    input (pad, two strided views, one copy), so the input is copied once instead of three times.
    Under autocast the input is cast first, which halves that copy. When the input is smaller than
    the weight (evaluation batches of a few frames) the input is reordered instead.
    """
    b, h, w, tc = features.shape
    if features.numel() < conv.weight.numel():  # small batches (evaluation): reorder the input instead
        c = tc // history
        return conv2d_gemm(features.reshape(b, h, w, history, c).permute(0, 4, 3, 1, 2).reshape(b, c * history, h, w),
                           conv)
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    weight = conv.weight.reshape(conv.out_channels, tc // history, history, kh, kw).transpose(1, 2)
    x = features
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
    x = F.pad(x, (0, 0, pw, pw, ph, ph))  # (B, h + 2ph, w + 2pw, TC)
    patches = x.unfold(1, kh, sh).unfold(2, kw, sw)  # (B, ho, wo, TC, kh, kw), a view
    ho, wo = patches.shape[1:3]
    out = _patches_times_weight(patches.reshape(b * ho * wo, tc * kh * kw), weight, conv.bias)
    return out.reshape(b, ho, wo, conv.out_channels).permute(0, 3, 1, 2)


# --- the registry ----------------------------------------------------------------------------------
class PolicyHead(nn.Module, abc.ABC):
    """Base class: holds the shapes, checks inputs, concatenates proprio before the MLP."""

    input_kind: ClassVar[str]  # "summary" or "tokens"
    registry_name: ClassVar[str] = ""  # set by register_head

    def __init__(self, shapes: PolicyShapes, config: Any):
        super().__init__()
        self.shapes, self.config = shapes, config

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the fused features this head reads."""
        if self.input_kind == "summary":
            return (self.shapes.fused_summary_dim,)
        return (*self.shapes.grid, self.shapes.fused_token_dim)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.shapes.action_dim,)

    def forward(self, features: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        self._check(features, proprio)
        z = self.encode(features)
        if self.shapes.proprio_dim:
            z = torch.cat([z, proprio.to(z.dtype)], dim=1)
        return self.mlp(z)

    @abc.abstractmethod
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Fused features -> the vector fed (with proprio) to the BatchNorm MLP."""

    def _check(self, features: torch.Tensor, proprio: torch.Tensor | None) -> None:
        if tuple(features.shape[1:]) != self.feature_shape:
            raise InputError(f"head '{self.name}' expects fused {self.input_kind} of shape (B, "
                             f"{', '.join(map(str, self.feature_shape))}), got {tuple(features.shape)}. "
                             f"Check the encoder grid/dims, history ({self.shapes.history}) and fusion.")
        p = self.shapes.proprio_dim
        got = 0 if proprio is None else (proprio.shape[-1] if proprio.ndim == 2 else -1)
        if got != p or (proprio is not None and proprio.shape[0] != features.shape[0]):
            shape = None if proprio is None else tuple(proprio.shape)
            raise InputError(f"head '{self.name}' expects proprio of shape (B={features.shape[0]}, {p}), got {shape}."
                             + (" Pass proprio=None for tasks without proprio." if p == 0 else ""))

    @property
    def name(self) -> str:
        return type(self).registry_name


@dataclass(frozen=True)
class HeadEntry:
    name: str
    cls: type[PolicyHead]
    config_cls: type


_HEADS: Registry[HeadEntry] = Registry("policy head")


def register_head(name: str, config_cls: type) -> Callable[[type[PolicyHead]], type[PolicyHead]]:
    """Register a PolicyHead subclass under `name` with its config dataclass."""

    def wrap(cls: type[PolicyHead]) -> type[PolicyHead]:
        _HEADS.add(name, HeadEntry(name, cls, config_cls))
        cls.registry_name = name
        return cls

    return wrap


def get_head_entry(name: str) -> HeadEntry:
    return _HEADS.get_entry(name)


def list_heads() -> list[str]:
    return _HEADS.names()


def head_input_kind(name: str) -> str:
    """What the head reads from the encoder: "summary" or "tokens" (decides what to cache)."""
    return get_head_entry(name).cls.input_kind


def make_head_config(name: str, overrides: Any = None) -> Any:
    """The head's config dataclass: defaults, a dict of overrides, or an instance passed through.

    A dict keyed by head names ({conv: {channels: 64}}) gives each head its own overrides (a sweep that trains
    several heads from one train config); a head it does not name gets its defaults.
    """
    cfg_cls = get_head_entry(name).config_cls
    if isinstance(overrides, cfg_cls):
        return overrides
    overrides = dict(overrides or {})
    if overrides and set(overrides) <= set(_HEADS):
        overrides = dict(overrides.get(name) or {})
    valid = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise InputError(f"unknown config key(s) {unknown} for head '{name}'; valid keys: {sorted(valid)}.")
    if "hidden" in overrides:
        overrides["hidden"] = tuple(int(h) for h in overrides["hidden"])
    return cfg_cls(**overrides)


def create_head(name: str, shapes: PolicyShapes, config: Any = None) -> PolicyHead:
    """Build head `name` for `shapes`; config: None (defaults), dict of overrides or the config dataclass."""
    entry = get_head_entry(name)
    return entry.cls(shapes, make_head_config(name, config))


# --- mlp -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLPHeadConfig:
    hidden: tuple[int, ...] = (256, 256, 256)
    last_layer_scale: float = 1e-2


@register_head("mlp", MLPHeadConfig)
class MLPHead(PolicyHead):
    """CortexBench head on fused summary vectors: BatchNorm MLP over [fused summary, proprio]."""

    input_kind = "summary"

    def __init__(self, shapes: PolicyShapes, config: MLPHeadConfig):
        super().__init__(shapes, config)
        in_dim = shapes.fused_summary_dim + shapes.proprio_dim
        self.mlp = BatchNormMLP(in_dim, shapes.action_dim, config.hidden, config.last_layer_scale)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return features


# --- conv ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvHeadConfig:
    """channels: width of every conv stage (256 in the reference).

    norm: "chw" = LayerNorm over (C, h, w) per sample with an elementwise affine of that whole shape,
    as the reference's nn.LayerNorm([256, 7, 7]); "channel" = LayerNorm over C at each position.
    """

    channels: int = 256
    norm: str = "chw"
    hidden: tuple[int, ...] = (256, 256, 256)
    last_layer_scale: float = 1e-2


CONV_NORMS: dict[str, Callable[[int, tuple[int, int]], nn.Module]] = {
    "chw": lambda c, hw: nn.LayerNorm([c, *hw]),
    "channel": lambda c, hw: ChannelLayerNorm(c),
}


@register_head("conv", ConvHeadConfig)
class ConvHead(PolicyHead):
    """Theia's spatial head: 3 x (Conv -> LayerNorm -> ReLU) to 1x1, flatten, ++ proprio, BatchNorm MLP.

    Input: fused tokens (B, h, w, T*C) frame-major; they are reordered to the reference's
    channel order (B, C*T, h, w) with channel c*T + t, so reference weights map one to one.
    """

    input_kind = "tokens"

    def __init__(self, shapes: PolicyShapes, config: ConvHeadConfig):
        super().__init__(shapes, config)
        if config.norm not in CONV_NORMS:
            raise unknown_name("conv-head norm", config.norm, CONV_NORMS)
        in_ch, layers = shapes.fused_token_dim, []
        for stage in conv_plan(shapes.grid):
            layers += [nn.Conv2d(in_ch, config.channels, stage.kernel, stage.stride, stage.padding),
                       CONV_NORMS[config.norm](config.channels, stage.size_out), nn.ReLU()]
            in_ch = config.channels
        if needs_pool(shapes.grid):
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.neck = nn.Sequential(*layers, nn.Flatten())
        self.mlp = BatchNormMLP(config.channels + shapes.proprio_dim, shapes.action_dim, config.hidden,
                                config.last_layer_scale)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        first, rest = self.neck[0], list(self.neck)[1:]
        x = first_conv_channels_last(features, first, self.shapes.history)
        for layer in rest:
            x = conv2d_gemm(x, layer) if isinstance(layer, nn.Conv2d) else layer(x)
        return x


# --- attn ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttnHeadConfig:
    """queries: learned query vectors; dim: attention width; heads: attention heads (dim % heads == 0)."""

    queries: int = 4
    dim: int = 256
    heads: int = 4
    hidden: tuple[int, ...] = (256, 256, 256)
    last_layer_scale: float = 1e-2


@register_head("attn", AttnHeadConfig)
class AttnHead(PolicyHead):
    """Attention pooling over fused tokens (ours).

    BatchNorm over the token channels (statistics over batch and positions, so linear at eval and
    robust to encoders with large token norms) -> Linear to `dim` + a learned position embedding
    -> `queries` learned queries cross-attend (multi-head) to the h*w tokens -> LayerNorm ->
    flatten (queries*dim) ++ proprio -> BatchNorm MLP.
    """

    input_kind = "tokens"

    def __init__(self, shapes: PolicyShapes, config: AttnHeadConfig):
        super().__init__(shapes, config)
        if config.dim % config.heads:
            raise InputError(f"attn head: dim {config.dim} must be divisible by heads {config.heads}.")
        h, w = shapes.grid
        self.in_norm = nn.BatchNorm1d(shapes.fused_token_dim)
        self.proj = nn.Linear(shapes.fused_token_dim, config.dim)
        self.pos = nn.Parameter(torch.randn(1, h * w, config.dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, config.queries, config.dim) * 0.02)
        self.attn = nn.MultiheadAttention(config.dim, config.heads, batch_first=True)
        self.out_norm = nn.LayerNorm(config.dim)
        self.mlp = BatchNormMLP(config.queries * config.dim + shapes.proprio_dim, shapes.action_dim,
                                config.hidden, config.last_layer_scale)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.in_norm(features.flatten(1, 2).transpose(1, 2)).transpose(1, 2)
        tokens = self.proj(tokens) + self.pos
        pooled, _ = self.attn(self.queries.expand(tokens.shape[0], -1, -1), tokens, tokens, need_weights=False)
        return self.out_norm(pooled).flatten(1)
