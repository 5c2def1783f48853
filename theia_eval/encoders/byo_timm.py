"""`timm:<model name>`: any timm model as an encoder, with weights=PATH|random[:SEED]|<hub id>.

- Model: timm.create_model(name, num_classes=0) (the classifier dropped); a weights folder in timm's hub layout
  (config.json with architecture, model_args, pretrained_cfg, + model.safetensors) is built as timm builds
  `local-dir:` models, so a checkpoint of a resized architecture loads as saved.
- Tokens: forward_features: a feature map (channels-first, or channels-last where the model's output_fmt says
  NHWC), or a token sequence without its num_prefix_tokens (CLS, registers).
- Summary: forward_head(features, pre_logits=True), the model's own pooling (CLS token, average, attention pool).
- Preprocessing: the model's pretrained_cfg (timm.data.resolve_model_data_config) as timm's eval transform does it:
  resize the shorter side to floor(size / crop_pct) (or squash for crop_mode 'squash'), center crop, mean/std.
- Weights: None = the model's pretrained tag from the local HF cache (its hf_hub_id), or timm's torch-hub file
  cache for URL-only weights; nothing is downloaded unless HF_HUB_OFFLINE=0. PATH = a weights file (.safetensors,
  .pth, .bin) or a timm hub-layout folder; a hub id = such a folder from the HF cache; random[:SEED] = seeded init.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.byo import (TokenLayout, cached_facts, count_params_m, facts_key, hub_snapshot,
                                     looks_like_path, map_layout, probe, sequence_layout)
from theia_eval.encoders.images import Preprocess
from theia_eval.encoders.registry import ResolvedEntry, register_scheme
from theia_eval.encoders.weights import parse_weights, seeded_init
from theia_eval.errors import CheckpointMismatchError, InputError, UnknownNameError, WeightsNotFoundError

SCHEME = "timm"
INTERPOLATIONS = {"bilinear", "bicubic"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class TimmSource:
    """What to build: a model name, or a timm hub-layout folder (its config.json), and where weights come from."""

    model: str
    folder: Path | None = None  # a local-dir checkpoint: architecture, model_args and pretrained_cfg from its config
    file: Path | None = None  # a weights file loaded into `model`
    seed: int | None = None  # random init
    label: str = ""  # the weights id

    def create(self, pretrained: bool) -> nn.Module:
        import timm

        if self.folder is not None:
            return timm.create_model(f"local-dir:{self.folder}", pretrained=pretrained, num_classes=0)
        overlay = {"file": str(self.file)} if pretrained else None
        return timm.create_model(self.model, pretrained=pretrained, num_classes=0, pretrained_cfg_overlay=overlay)

    def folder_config(self) -> dict | None:
        return json.loads((self.folder / "config.json").read_text()) if self.folder is not None else None


# --- where weights are -----------------------------------------------------------------------------------

def check_model_name(model: str, what: str) -> None:
    import timm

    if ":" in model:
        raise InputError(f"{what}: name a timm model after timm: (e.g. timm:vit_small_patch14_dinov2.lvd142m); pass a "
                         "checkpoint folder or hub id as weights=, not in the name.")
    if not timm.is_model(model):
        close = difflib.get_close_matches(model, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"{what}: timm {timm.__version__} has no model '{model}'.{hint} "
                               "List them with timm.list_models('<pattern>').")
    try:
        timm.models.get_pretrained_cfg(model)
    except RuntimeError as exc:
        raise UnknownNameError(f"{what}: {exc}. List the tags with timm.list_pretrained('{model.split('.')[0]}*')."
                               ) from exc


def folder_or_file(path: Path, model: str, label: str, what: str) -> TimmSource:
    """A source for a local checkpoint: a hub-layout folder (with config.json) or a weights file."""
    if path.is_file():
        return TimmSource(model, file=path, label=label)
    if (path / "config.json").is_file():
        arch = folder_architecture(path, what)
        if arch != model.split(".")[0]:
            raise CheckpointMismatchError(f"{what}: {path} holds a timm '{arch}' checkpoint (config.json "
                                          f"architecture), not {model}. Name it timm:{arch}.")
        return TimmSource(model, folder=path, label=label)
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return TimmSource(model, file=path / name, label=label)
    raise WeightsNotFoundError(f"{what}: {path} has neither a config.json (timm hub layout) nor a weights file "
                               f"({', '.join(WEIGHT_FILES)}).")


def folder_architecture(path: Path, what: str) -> str:
    try:
        cfg = json.loads((path / "config.json").read_text())
        return str(cfg["architecture"] if "architecture" in cfg else cfg["pretrained_cfg"]["architecture"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointMismatchError(f"{what}: {path / 'config.json'} is not a timm model config (it needs an "
                                      f"'architecture'): {exc}.") from exc


def default_source(model: str, what: str) -> TimmSource:
    """The model's pretrained tag: its hub snapshot from the HF cache, or its URL file from timm's torch-hub cache."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsNotFoundError(f"{what}: timm has no pretrained weights for {model}. Pass weights=PATH, a hub id, "
                                   "or weights=random.")
    if cfg.hf_hub_id:
        hub_id = cfg.hf_hub_id.split("@")[0]
        return folder_or_file(hub_snapshot(hub_id, what), model, hub_id, what)
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
    if not file.is_file():
        raise WeightsNotFoundError(f"{what}: its weights ({cfg.url}) are not in timm's download cache {file.parent} "
                                   "(nothing is downloaded). Download the file there on a machine with network, or "
                                   "pass weights=PATH.")
    return TimmSource(model, file=file, label=cfg.url)


def weights_source(model: str, weights: str | None, what: str) -> TimmSource:
    if weights is None:
        return default_source(model, what)
    if parse_weights(weights).random:
        return TimmSource(model, seed=parse_weights(weights).seed, label=str(weights))
    path = Path(weights).expanduser()
    if path.exists():
        return folder_or_file(path, model, str(weights), what)
    if looks_like_path(weights) or Path(weights).suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise WeightsNotFoundError(f"{what}: weights {path} do not exist. Pass a weights file, a timm hub-layout "
                                   "folder, a hub id or random.")
    return folder_or_file(hub_snapshot(str(weights), what), model, str(weights), what)


# --- facts ----------------------------------------------------------------------------------------------

def timm_preprocess(model: nn.Module, what: str) -> tuple[Preprocess, str]:
    """timm's eval transform of the model's pretrained_cfg as a Preprocess."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    _, h, w = cfg["input_size"]
    mode, interp, crop_pct = cfg.get("crop_mode") or "center", cfg["interpolation"], cfg.get("crop_pct") or 0.875
    if h != w or mode not in ("center", "squash") or interp not in INTERPOLATIONS:
        raise InputError(f"{what}: its pretrained_cfg asks for input {h}x{w}, crop_mode '{mode}', interpolation "
                         f"'{interp}'; timm: takes square inputs, center or squash crops, bilinear or bicubic. Wrap "
                         "the model in a plugin (py:module:callable) with its own preprocessing.")
    scale = math.floor(h / crop_pct)
    pre = Preprocess(resize=scale, crop=h, interpolation=interp, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                     squash=mode == "squash")
    how = f"{'resize to' if mode == 'squash' else 'shorter side to'} {scale} px {interp}, center crop {h}"
    return pre, f"Preprocess as timm's eval transform of its pretrained_cfg: {how}, mean/std {cfg['mean']}/{cfg['std']}."


def features_layout(model: nn.Module, shape: tuple[int, ...], side: int, what: str) -> TokenLayout:
    if len(shape) == 4:
        return map_layout(shape, channels_last=str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC"))
    if len(shape) != 3:
        raise CheckpointMismatchError(f"{what}: forward_features gives shape {tuple(shape)}, neither a feature map "
                                      "nor a token sequence.")
    return sequence_layout(shape[1], side, None, int(getattr(model, "num_prefix_tokens", 0) or 0), what)


def run_model(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = model.forward_features(x)
    return features, model.forward_head(features, pre_logits=True)


def compute_facts(src: TimmSource, what: str) -> EncoderConfig:
    with torch.device("meta"):
        shell = src.create(pretrained=False)
    pre, note = timm_preprocess(shell, what)
    side = pre.output_size
    try:
        model, (features, summary), gflops = probe(partial(src.create, pretrained=False), run_model, side)
    except (ValueError, TypeError, RuntimeError, NotImplementedError, AssertionError) as exc:
        raise CheckpointMismatchError(f"{what}: timm's {src.model} does not run on its preprocessed {side}x{side} "
                                      f"input ({exc}). Check its pretrained_cfg input_size.") from exc
    layout = features_layout(model, tuple(features.shape), side, what)
    token_dim = features.shape[1] if layout.kind == "nchw" else features.shape[-1]
    pooled = summary.ndim == 2
    pool = getattr(model, "global_pool", "")
    pool = str(pool if isinstance(pool, str) else getattr(pool, "pool_type", ""))
    kind = {"token": "cls", "avg": "mean"}.get(pool, "pooled") if pooled else "mean"
    special = f" without its {layout.prefix} prefix token(s)" if layout.prefix else ""
    notes = (f"timm {model.__class__.__name__} '{src.model}' (num_classes=0). Tokens: forward_features{special}; "
             f"summary: {'forward_head(pre_logits=True), global_pool ' + repr(pool) if pooled else 'mean token'}. "
             f"{note} Facts counted at {side} px.")
    return EncoderConfig(
        name="", family="timm", architecture=f"{src.model} at {side} px (timm)", params_m=count_params_m(model),
        gflops=gflops, input_size=side, grid=layout.grid, token_dim=int(token_dim),
        summary_dim=int(summary.shape[-1] if pooled else token_dim), summary=kind, preprocess=pre, source="",
        license="", offline=True, notes=notes, extra={"layout": layout.as_dict(), "pooled": pooled})


def describe(name: str, src: TimmSource, offline: bool) -> EncoderConfig:
    import timm

    pretrained_cfg = timm.models.get_pretrained_cfg(src.model)
    key = facts_key(SCHEME, {"model": src.model, "folder_config": src.folder_config(), "timm": timm.__version__})
    return cached_facts(key, partial(compute_facts, src, f"encoder '{name}'"), name=name,
                        source=f"timm:{src.label or src.model}", hub_id=pretrained_cfg.hf_hub_id if pretrained_cfg else None,
                        offline=offline, license=str((pretrained_cfg.license if pretrained_cfg else None) or "see model card"))


def default_available(model: str) -> bool:
    try:
        default_source(model, "")
    except WeightsNotFoundError:
        return False
    return True


# --- the encoder ----------------------------------------------------------------------------------------

class TimmEncoder(FrozenEncoder):
    """A timm model read out through forward_features and forward_head(pre_logits=True)."""

    def __init__(self, config: EncoderConfig, model: nn.Module, **kwargs):
        super().__init__(config, **kwargs)
        self.model = model
        self.layout = TokenLayout.from_dict(config.extra["layout"])

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        tokens = self.layout.tokens(features)
        if self.config.extra["pooled"]:
            return tokens, self.model.forward_head(features, pre_logits=True)
        return tokens, tokens.mean(dim=(1, 2))


@contextlib.contextmanager
def recorded_loading(results: list) -> Iterator[None]:
    """Record the missing/unexpected keys of timm's pretrained loading: load_pretrained loads non-strictly once
    the classifier is dropped (num_classes=0) and only logs weights it left randomly initialised."""
    from timm.models import _builder

    original = _builder.load_pretrained

    def load_pretrained(model: nn.Module, *args, **kwargs):
        plain = model.load_state_dict

        def record(state_dict, strict: bool = True, **kw):
            results.append(plain(state_dict, strict=False, **kw))
            return results[-1]

        model.load_state_dict = record
        try:
            return original(model, *args, **kwargs)
        finally:
            del model.load_state_dict

    _builder.load_pretrained = load_pretrained
    try:
        yield
    finally:
        _builder.load_pretrained = original


def load(src: TimmSource, what: str) -> nn.Module:
    """The model with its weights; every weight must come from the checkpoint and every checkpoint weight be used."""
    if src.seed is not None:
        with seeded_init(src.seed):
            return src.create(pretrained=False)
    where, results = src.folder or src.file, []
    try:
        with recorded_loading(results):
            model = src.create(pretrained=True)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointMismatchError(f"{what}: the weights at {where} do not load into timm's {src.model} "
                                      f"({first}). Pass a checkpoint of this architecture.") from exc
    if not results and not model.pretrained_cfg.get("custom_load"):
        raise CheckpointMismatchError(f"{what}: could not check what timm {timm_version()} loaded from {where}.")
    missing, unexpected = (sorted(results[-1].missing_keys), sorted(results[-1].unexpected_keys)) if results else ([], [])
    if missing or unexpected:
        first = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise CheckpointMismatchError(
            f"{what}: the weights at {where} do not match timm's {src.model} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected; first: {first}); timm would leave missing weights random. Pass a "
            "checkpoint of this architecture.")
    return model


def timm_version() -> str:
    import timm

    return timm.__version__


def build(name: str, model: str, weights: str | None = None, device: str | torch.device = "cpu",
          dtype: str | torch.dtype = "float32", **kwargs) -> FrozenEncoder:
    what = f"encoder '{name}'"
    src = weights_source(model, weights, what)
    encoder = TimmEncoder(describe(name, src, True), load(src, what), device=device, dtype=dtype,
                          weights_id=src.label, **kwargs)
    return encoder.finalize()


def resolve(name: str) -> ResolvedEntry:
    """The entry of `timm:<model name>`; its facts are those of the model with its default pretrained_cfg."""
    model = name[len(SCHEME) + 1:]
    check_model_name(model, f"encoder '{name}'")
    return ResolvedEntry(name, lambda: describe(name, TimmSource(model), default_available(model)),
                         partial(build, name, model))


register_scheme(SCHEME, resolve)
