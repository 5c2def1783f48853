"""Theia students as frozen encoders: official checkpoints, home-trained exports and seeded random controls.

Tokens: the last hidden state (after the final LayerNorm) without [CLS], as a 14x14 grid at 224 px.
Summary, chosen by `feature_reduce` (a create_encoder kwarg, default "cls"):
  cls  -> the [CLS] token of the last hidden state (C)
  mean -> the spatial tokens averaged (C)
  max  -> the spatial tokens max-pooled per channel (C)
  none -> the spatial tokens flattened row-major, (h*w*C): no reduction at all
Preprocessing (facebook/deit-*-patch16-224 preprocessor_config.json, as the reference student uses):
squash-resize to 224x224 (bilinear), scale to [0, 1], normalise with mean = std = 0.5.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.images import HALF_MEAN, HALF_STD, Preprocess
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.theia_format import (
    FEATURE_REDUCE_OPTIONS,
    STUDENT_SIZES,
    StudentSize,
    build_student,
    load_theia_backbone,
    vit_cost,
)
from theia_eval.encoders.weights import hf_snapshot, parse_weights, seeded_init
from theia_eval.errors import InputError, WeightsNotFoundError

THEIA_LICENSE = "Theia model license (HF 'other'; see the theaiinstitute model cards)"
DEFAULT_REDUCE = "cls"

Reducer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (hidden (B,1+N,C), tokens (B,h,w,C)) -> (B,C')
FEATURE_REDUCERS: dict[str, Reducer] = {
    "cls": lambda hidden, tokens: hidden[:, 0],
    "mean": lambda hidden, tokens: tokens.mean(dim=(1, 2)),
    "max": lambda hidden, tokens: tokens.amax(dim=(1, 2)),
    "none": lambda hidden, tokens: tokens.flatten(1),
}
if set(FEATURE_REDUCERS) != set(FEATURE_REDUCE_OPTIONS):  # config.json lists the options theia_format knows
    raise RuntimeError("FEATURE_REDUCERS and theia_format.FEATURE_REDUCE_OPTIONS disagree; keep them in sync.")


def summary_dim(size: StudentSize, feature_reduce: str) -> int:
    """Length of the summary vector for a reduce option."""
    h, w = size.grid
    return size.width * h * w if feature_reduce == "none" else size.width


def check_reduce(feature_reduce: str) -> str:
    if feature_reduce not in FEATURE_REDUCERS:
        raise InputError(f"unknown feature_reduce '{feature_reduce}'; use one of {sorted(FEATURE_REDUCERS)} "
                         "(cls: [CLS] token, mean/max: pooled spatial tokens, none: flattened spatial tokens).")
    return feature_reduce


def student_config(name: str, size: StudentSize, source: str, offline: bool, hub_id: str | None = None,
                   notes: str = "", feature_reduce: str = DEFAULT_REDUCE, extra: dict | None = None) -> EncoderConfig:
    """EncoderConfig describing one student architecture."""
    params_m, gflops = vit_cost(size)
    return EncoderConfig(
        name=name, family="theia",
        architecture=f"ViT (DeiT-style) width {size.width}, {size.depth} layers, {size.heads} heads, "
                     f"patch {size.patch}, {size.image_size} px",
        params_m=round(params_m, 3), gflops=round(gflops, 3), input_size=size.image_size, grid=size.grid,
        token_dim=size.width, summary_dim=summary_dim(size, feature_reduce),
        summary=feature_reduce if feature_reduce != "none" else "flat-tokens",
        preprocess=Preprocess(resize=size.image_size, crop=None, interpolation="bilinear", mean=HALF_MEAN,
                              std=HALF_STD, squash=True),
        source=source, license=THEIA_LICENSE if not name.startswith("random") else "n/a", offline=offline,
        min_size=16, notes=notes, hub_id=hub_id,
        extra={"student": dataclasses.asdict(size), "feature_reduce": feature_reduce,
               "feature_reduce_options": list(FEATURE_REDUCE_OPTIONS), **(extra or {})},
    )


def describe(config: EncoderConfig, size: StudentSize, feature_reduce: str) -> EncoderConfig:
    """The entry's config rewritten for the architecture and reduce option actually built."""
    fresh = student_config(config.name, size, config.source, config.offline, config.hub_id, config.notes,
                           feature_reduce)
    return dataclasses.replace(config, architecture=fresh.architecture, params_m=fresh.params_m, gflops=fresh.gflops,
                               input_size=fresh.input_size, grid=fresh.grid, token_dim=fresh.token_dim,
                               summary_dim=fresh.summary_dim, summary=fresh.summary, preprocess=fresh.preprocess,
                               extra=fresh.extra)


class TheiaEncoder(FrozenEncoder):
    """A frozen student ViTModel: tokens = last hidden state without [CLS]; summary per `feature_reduce`."""

    def __init__(self, config: EncoderConfig, backbone: nn.Module, feature_reduce: str = DEFAULT_REDUCE, **kwargs):
        super().__init__(config, **kwargs)
        self.backbone = backbone
        self.feature_reduce = check_reduce(feature_reduce)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.backbone(pixel_values=x).last_hidden_state
        h, w = self.grid
        tokens = hidden[:, 1:].reshape(hidden.shape[0], h, w, hidden.shape[-1])
        return tokens, FEATURE_REDUCERS[self.feature_reduce](hidden, tokens)


def seeded_student(size_name: str, seed: int) -> nn.Module:
    """A student of a registered size with reproducible random init."""
    with seeded_init(seed):
        return build_student(size_name).eval()


def wrap(config: EncoderConfig, backbone: nn.Module, size: StudentSize, feature_reduce: str, weights_id: str,
         device, dtype, kwargs: dict) -> FrozenEncoder:
    """Wrap a backbone into a finalised TheiaEncoder whose config describes it."""
    check_reduce(feature_reduce)
    cfg = describe(config, size, feature_reduce)
    return TheiaEncoder(cfg, backbone, feature_reduce, device=device, dtype=dtype, weights_id=weights_id,
                        **kwargs).finalize()


def from_checkpoint(config: EncoderConfig, path, feature_reduce: str, num_heads: int | None, weights_id: str,
                    device, dtype, kwargs: dict) -> FrozenEncoder:
    """Encoder from an official-layout checkpoint (dir, file, or run dir with export/)."""
    backbone, meta = load_theia_backbone(path, num_heads=num_heads)
    return wrap(config, backbone, meta["size"], feature_reduce, weights_id, device, dtype, kwargs)


# --- entries -------------------------------------------------------------------------------------
def official_entry(size_name: str) -> EncoderConfig:
    hub_id = f"theaiinstitute/theia-{size_name}-patch16-224-cdiv"
    return student_config(
        f"theia-{size_name}", STUDENT_SIZES[size_name], source=hub_id, offline=False, hub_id=hub_id,
        notes="Official Theia student distilled from CLIP-L, DINOv2-L and ViT-H (cdiv). weights=: a dir with "
              "model.safetensors (+config.json), the .safetensors file, a hub id, or 'random[:SEED]'. "
              "Translator heads are not part of the encoder (theia_eval.load_theia gives the student with them). "
              "feature_reduce=cls|mean|max|none picks the summary.")


def register_official(size_name: str) -> None:
    @register_encoder(official_entry(size_name))
    def build(config: EncoderConfig, weights=None, device="cpu", dtype="float32", feature_reduce=DEFAULT_REDUCE,
              num_heads=None, **kwargs) -> FrozenEncoder:
        check_reduce(feature_reduce)
        if parse_weights(weights).random:
            seed = parse_weights(weights).seed
            return wrap(config, seeded_student(size_name, seed), STUDENT_SIZES[size_name], feature_reduce,
                        f"random:{seed}", device, dtype, kwargs)
        path = hf_snapshot(config, None if weights is None else str(weights))
        return from_checkpoint(config, path, feature_reduce, num_heads, str(weights or config.hub_id), device,
                               dtype, kwargs)


def register_random(size_name: str) -> None:
    name = f"random-vit-{size_name}"
    cfg = student_config(name, STUDENT_SIZES[size_name], source="seeded random init (weights='random:SEED', default 0)",
                         offline=True, notes=f"Control: the {size_name} student architecture with random weights.")

    @register_encoder(cfg)
    def build(config: EncoderConfig, weights=None, device="cpu", dtype="float32", feature_reduce=DEFAULT_REDUCE,
              **kwargs) -> FrozenEncoder:
        if weights is not None and not parse_weights(weights).random:
            raise InputError(f"encoder '{name}' is a random-weight control; got weights={weights!r}. Use weights="
                             "None, 'random' or 'random:SEED'; for a trained student use "
                             "create_encoder('theia', weights=PATH).")
        seed = parse_weights(weights).seed or 0
        return wrap(config, seeded_student(size_name, seed), STUDENT_SIZES[size_name], feature_reduce,
                    f"random:{seed}", device, dtype, kwargs)


GENERIC = dataclasses.replace(
    student_config("theia", STUDENT_SIZES["tiny"], source="a local Theia checkpoint (weights=PATH)", offline=False),
    architecture="ViT student of any size (read from the checkpoint)",
    notes="Any student in the official Theia layout: weights=a dir with model.safetensors (+config.json), the "
          ".safetensors file, or a run dir with export/. Size is read from the tensors; heads from config.json, "
          "else the DeiT width table, else num_heads=... . Facts below are the tiny size's until loaded.")


@register_encoder(GENERIC)
def build_generic(config: EncoderConfig, weights=None, device="cpu", dtype="float32", feature_reduce=DEFAULT_REDUCE,
                  num_heads=None, **kwargs) -> FrozenEncoder:
    check_reduce(feature_reduce)
    if weights is None or parse_weights(weights).random:
        raise WeightsNotFoundError(
            f"encoder 'theia' has no default weights (got weights={weights!r}): pass create_encoder('theia', "
            "weights=PATH) with a checkpoint dir, .safetensors file or run dir. For official students use "
            "theia-tiny/small/base; for random controls random-vit-nano/random-vit-tiny.")
    path = hf_snapshot(config, str(weights))
    return from_checkpoint(config, path, feature_reduce, num_heads, str(weights), device, dtype, kwargs)


for _size in ("tiny", "small", "base"):
    register_official(_size)
for _size in ("nano", "tiny"):
    register_random(_size)
