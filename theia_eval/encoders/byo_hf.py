"""`hf:<hub id or save_pretrained directory>`: any transformers vision backbone that AutoModel builds, as an encoder.

- Model: the class AutoModel maps the checkpoint's config.json to (ViT, DeiT, DINOv2 with or without registers,
  ConvNeXt, ResNet, Swin, ...); for a multimodal checkpoint whose AutoModel does not take pixel_values (CLIP,
  SigLIP, ...) its vision tower (the class of config.vision_config). Anything else is refused as not a vision model.
- Tokens: the last hidden state, a feature map (B,C,h,w) for convolutional models, or a sequence whose special
  tokens (CLS, registers, distillation) are dropped: with a patch size, what exceeds the (side/patch)^2 grid.
- Summary: the model's pooler_output when it has one (CLIP: CLS after post_layernorm, SigLIP: attention-pool head,
  DINOv2: CLS, ConvNeXt/Swin/ResNet: pooled map), else CLS, else the mean token. A pooler whose weights are not in
  the checkpoint (e.g. DeiT, DINO ViTs saved without it) is dropped rather than left random.
- Preprocessing: read from the checkpoint's preprocessor_config.json (through AutoImageProcessor's parsed fields)
  and applied as the project's batched tensor ops; the input is always a fixed square (an aspect-keeping resize
  without a crop gets a center crop to the resized side).
- Facts (grid, widths, parameters, GFLOPs): one meta-device forward, cached per config (byo.py).
- Weights: the spec's own (default), weights=random[:SEED] for a seeded init of its architecture, or another
  directory / hub id of the same model_type. Hub ids are read from the local HF cache only (byo.hub_snapshot).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.byo import (TokenLayout, cached_facts, count_params_m, facts_key, hub_snapshot,
                                     looks_like_path, map_layout, probe, readme_license, sequence_layout)
from theia_eval.encoders.hf import quiet_transformers
from theia_eval.encoders.images import Preprocess
from theia_eval.encoders.registry import ResolvedEntry, register_scheme
from theia_eval.encoders.weights import parse_weights, seeded_init
from theia_eval.errors import CheckpointMismatchError, InputError, WeightsNotFoundError

SCHEME = "hf"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# PIL resample codes of image-processor configs -> torch interpolation (lanczos, box and hamming approximated)
RESAMPLE = {1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# processors whose crop_pct rule (resize the shorter side to size/crop_pct, crop size; warp from 384 px) we apply
CROP_PCT_PROCESSORS = {"ConvNextImageProcessor", "ConvNextImageProcessorFast"}


@dataclass(frozen=True)
class HFSource:
    """A located checkpoint: its folder, config files, the transformers class that runs it and its preprocessing."""

    path: Path
    hub_id: str | None
    model_type: str
    model_cls: type
    model_config: Any  # the config of model_cls (the vision tower's for multimodal checkpoints)
    raw_config: dict
    processor: dict
    preprocess: Preprocess
    preprocess_note: str
    keeps_pooler: bool

    def label(self) -> str:
        return self.hub_id or str(self.path)


# --- locating and reading a checkpoint ------------------------------------------------------------------

def locate(spec: str, what: str) -> tuple[Path, str | None]:
    """(folder, hub id or None) of a directory path or a hub id found in the local HF cache."""
    path = Path(spec).expanduser()
    if path.exists():
        return path, None
    if looks_like_path(spec):
        raise WeightsNotFoundError(f"{what}: there is no directory {path}. Pass an existing save_pretrained "
                                   "directory or a hub id (owner/name).")
    return hub_snapshot(spec, what), spec


def read_json_file(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointMismatchError(f"{what}: could not read {path} ({exc}). Pass an unmodified save_pretrained "
                                      "directory.") from exc
    if not isinstance(data, dict):
        raise CheckpointMismatchError(f"{what}: {path} is not a JSON object. Pass an unmodified save_pretrained "
                                      "directory.")
    return data


_SOURCE_MEMO: dict[tuple, HFSource] = {}


def read_source(path: Path, hub_id: str | None, what: str) -> HFSource:
    """Everything about a checkpoint folder that is known without loading its weights (memoized per file state)."""
    stamp = (str(path.resolve()), hub_id, *(f.stat().st_mtime_ns if f.is_file() else None
                                           for f in (path / n for n in ("config.json", "preprocessor_config.json",
                                                                        *WEIGHT_FILES))))
    if stamp not in _SOURCE_MEMO:
        _SOURCE_MEMO[stamp] = read_source_now(path, hub_id, what)
    return _SOURCE_MEMO[stamp]


def read_source_now(path: Path, hub_id: str | None, what: str) -> HFSource:
    if not path.is_dir():
        raise WeightsNotFoundError(f"{what}: {path} is a file; hf: takes a Hugging Face save_pretrained directory "
                                   "(config.json, preprocessor_config.json, model.safetensors) or a hub id.")
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(f"{what}: {path} has no config.json, so it is not a save_pretrained directory. "
                                   "Pass the folder written by model.save_pretrained (or a hub snapshot).")
    raw = read_json_file(path / "config.json", what)
    model_type = str(raw.get("model_type", "?"))
    model_cls, model_config = vision_model(path, model_type, what)
    processor = read_json_file(path / "preprocessor_config.json", what) if (path / "preprocessor_config.json").is_file() else None
    if processor is None:
        raise WeightsNotFoundError(
            f"{what}: {path} has no preprocessor_config.json, so the model's preprocessing is unknown. Save its image "
            f"processor beside it (AutoImageProcessor.from_pretrained(<the hub id it came from>).save_pretrained("
            f"'{path}')) or write one.")
    preprocess, note = processor_preprocess(path, what)
    return HFSource(path, hub_id, model_type, model_cls, model_config, raw, processor, preprocess, note,
                    keeps_pooler(model_cls, model_config, checkpoint_keys(path, what)))


def vision_model(path: Path, model_type: str, what: str) -> tuple[type, Any]:
    """The transformers class that AutoModel builds for this config (or for its vision_config), taking pixel_values."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        with quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(str(path))
    except (ValueError, KeyError, OSError) as exc:
        raise CheckpointMismatchError(f"{what}: transformers {transformers.__version__} cannot read the config of "
                                      f"{path} (model_type '{model_type}'): {exc}") from exc
    candidates = [config, getattr(config, "vision_config", None)]
    found = []
    for cfg in [c for c in candidates if c is not None]:
        try:
            cls = MODEL_MAPPING[type(cfg)]
        except KeyError:
            continue
        if getattr(cls, "main_input_name", None) == "pixel_values":
            return cls, cfg
        found.append(f"{cls.__name__} (input: {getattr(cls, 'main_input_name', '?')})")
    built = f"AutoModel builds {found[0]}" if found else "AutoModel has no model class for it"
    raise InputError(
        f"{what}: {path} holds a '{model_type}' model, which is not a vision model: {built}, and it has no vision "
        "tower (vision_config). hf: takes vision backbones whose input is pixel_values: ViT, DeiT, DINOv2, CLIP or "
        "SigLIP (their vision tower), ConvNeXt, ResNet, Swin, ...")


def checkpoint_keys(path: Path, what: str) -> set[str] | None:
    """Weight names stored in a checkpoint folder (read from headers or the index), None when it has no weights."""
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            return set(read_json_file(file, what).get("weight_map", {}))
        try:
            if name.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(str(file), "pt") as f:
                    return set(f.keys())
            return set(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
        except Exception as exc:  # noqa: BLE001  (any reader failure is an unreadable checkpoint, re-raised)
            raise CheckpointMismatchError(f"{what}: could not read the weights file {file} ({exc}). Pass an "
                                          "unmodified save_pretrained directory.") from exc
    return None


def keeps_pooler(model_cls: type, model_config: Any, keys: set[str] | None) -> bool:
    """False when the model has a pooler with weights but the checkpoint has none of them (it is dropped then)."""
    with torch.device("meta"):
        pooler = getattr(model_cls(model_config), "pooler", None)
    names = [f"pooler.{n}" for n, _ in pooler.named_parameters()] if isinstance(pooler, nn.Module) else []
    if not names or keys is None:
        return True
    return any(k == n or k.endswith("." + n) for k in keys for n in names)


# --- preprocessing from the image processor ------------------------------------------------------------

def plain_size(size: Any) -> dict[str, int]:
    """A SizeDict / dict / int of an image processor as {key: int} without unset keys."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    return {k: int(v) for k, v in dict(size).items() if v is not None}


class UnsupportedProcessor(InputError):
    """An image processor step that hf: does not reproduce."""


def processor_preprocess(path: Path, what: str) -> tuple[Preprocess, str]:
    """The image processor's resize / crop / rescale / normalize as a Preprocess, and a sentence saying what it is."""
    import transformers

    try:
        with quiet_transformers():
            proc = transformers.AutoImageProcessor.from_pretrained(str(path))
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise CheckpointMismatchError(f"{what}: could not read the image processor of {path} ({exc}).") from exc
    kind = type(proc).__name__
    try:
        resize, crop, squash, note = processor_geometry(proc, kind)
        resample = int(getattr(proc, "resample", 2) or 0)
        if resample not in RESAMPLE:
            raise UnsupportedProcessor(f"resamples with {RESAMPLE_NAMES.get(resample, resample)}")
    except UnsupportedProcessor as exc:
        raise InputError(f"{what}: its image processor ({kind}) {exc}, which hf: does not reproduce; wrap the model "
                         "in a plugin (py:module:callable) with its own preprocessing.") from exc
    rescale = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
    scale = round(1.0 / rescale, 6)
    normalize = getattr(proc, "do_normalize", True)
    mean, std = (three(proc.image_mean), three(proc.image_std)) if normalize else ((0.0,) * 3, (1.0,) * 3)
    # Preprocess computes (x / scale - mean') / std' with mean' = mean * 255 / scale: give it mean * scale / 255
    pre = Preprocess(resize=resize, crop=crop, interpolation=RESAMPLE[resample],
                     mean=tuple(m * scale / 255.0 for m in mean), std=tuple(s * scale / 255.0 for s in std),
                     scale=scale, squash=squash)
    how = (f"{'resize to ' if squash else 'shorter side to '}{resize} px {RESAMPLE_NAMES[resample]}"
           if resize else "no resize") + (f", center crop {crop}" if crop and not note else "") + note
    return pre, f"Preprocess as its {kind}: {how}, x{rescale:.6g}, mean {fmt3(mean)}, std {fmt3(std)}."


def processor_geometry(proc: Any, kind: str) -> tuple[int | None, int | None, bool, str]:
    """(resize, crop, squash, note) of an image processor; the result is always a fixed square."""
    if getattr(proc, "do_pad", False):
        raise UnsupportedProcessor("pads images")
    size = plain_size(proc.size) if getattr(proc, "do_resize", True) else {}
    resize, squash = None, False
    if set(size) == {"shortest_edge"}:
        resize = size["shortest_edge"]
    elif set(size) == {"height", "width"} and size["height"] == size["width"]:
        resize, squash = size["height"], True
    elif size:
        raise UnsupportedProcessor(f"resizes to {size} (not a square or a shorter side)")
    crop = None
    if getattr(proc, "do_center_crop", False):
        crop_size = plain_size(proc.crop_size)
        if crop_size.get("height") != crop_size.get("width"):
            raise UnsupportedProcessor(f"crops to a non-square {crop_size}")
        crop = crop_size["height"]
    crop_pct = getattr(proc, "crop_pct", None)
    if crop_pct is not None and resize is not None and not squash:
        if kind not in CROP_PCT_PROCESSORS:
            raise UnsupportedProcessor(f"uses crop_pct={crop_pct}")
        if resize < 384:  # ConvNeXt: shorter side to size / crop_pct, center crop size; from 384 px a plain warp
            resize, crop = int(resize / crop_pct), resize
        else:
            squash = True
    if crop is None and not squash:
        if resize is None:
            raise UnsupportedProcessor("does not resize or crop (the input size would vary)")
        return resize, resize, False, f" plus a center crop to {resize} px (a fixed square input; the processor " \
                                      "keeps the aspect)"
    return resize, crop, squash, ""


def three(values: Any) -> tuple[float, float, float]:
    """A per-channel value as 3 floats (a single value is repeated)."""
    values = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    return tuple((values * 3)[:3]) if len(values) == 1 else tuple(values[:3])


def fmt3(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


# --- facts --------------------------------------------------------------------------------------------

def new_model(src: HFSource) -> nn.Module:
    """A randomly initialised model of the checkpoint's architecture (under the caller's device / RNG context)."""
    model = src.model_cls(src.model_config)
    if not src.keeps_pooler:
        model.pooler = None
    return model


def run_model(model: nn.Module, x: torch.Tensor) -> Any:
    return model(pixel_values=x)


def hidden_layout(shape: tuple[int, ...], src: HFSource, side: int, what: str) -> TokenLayout:
    if len(shape) == 4:
        return map_layout(shape, channels_last=False)
    if len(shape) != 3:
        raise CheckpointMismatchError(f"{what}: its last hidden state has shape {tuple(shape)}, neither a token "
                                      "sequence (B,N,C) nor a feature map (B,C,h,w).")
    patch = getattr(src.model_config, "patch_size", None)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch) if patch else None
    return sequence_layout(shape[1], side, patch, None, what)


def compute_facts(src: HFSource, what: str) -> EncoderConfig:
    side = src.preprocess.output_size
    try:
        with quiet_transformers():
            model, out, gflops = probe(partial(new_model, src), run_model, side)
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
        raise CheckpointMismatchError(f"{what}: {src.model_cls.__name__} does not run on its preprocessed "
                                      f"{side}x{side} input ({exc}). Check its preprocessor_config.json.") from exc
    layout = hidden_layout(tuple(out.last_hidden_state.shape), src, side, what)
    pooled = getattr(out, "pooler_output", None)
    token_dim = out.last_hidden_state.shape[-1 if layout.kind != "nchw" else 1]
    summary = "pooled" if pooled is not None else ("cls" if layout.prefix else "mean")
    summary_dim = pooled.flatten(1).shape[-1] if pooled is not None else token_dim
    special = f" without {layout.prefix} special token(s) (CLS/register/distillation)" if layout.prefix else ""
    notes = (f"transformers {src.model_cls.__name__} from hf:{src.label()}. Tokens: "
             f"{'the last feature map' if layout.kind != 'nlc' else 'last_hidden_state' + special}; summary: "
             f"{ {'pooled': 'pooler_output', 'cls': 'CLS of last_hidden_state', 'mean': 'mean token'}[summary]}"
             f"{'' if src.keeps_pooler else ' (the checkpoint has no pooler weights: pooler dropped)'}. "
             f"{src.preprocess_note} Facts counted on the meta device at {side} px.")
    return EncoderConfig(
        name="", family="hf", architecture=f"{src.model_cls.__name__} ({src.model_type}) at {side} px (transformers)",
        params_m=count_params_m(model), gflops=gflops, input_size=side, grid=layout.grid, token_dim=int(token_dim),
        summary_dim=int(summary_dim), summary=summary, preprocess=src.preprocess, source="", license="",
        offline=True, notes=notes, extra={"layout": layout.as_dict(), "model_class": src.model_cls.__name__})


def describe(name: str, src: HFSource) -> EncoderConfig:
    """The facts of a checkpoint (cached per config), named `name`."""
    import transformers

    key = facts_key(SCHEME, {"config": src.raw_config, "processor": src.processor, "pooler": src.keeps_pooler,
                             "model_class": src.model_cls.__name__, "transformers": transformers.__version__})
    return cached_facts(key, partial(compute_facts, src, f"encoder '{name}'"), name=name,
                        source=f"hf:{src.label()}", hub_id=src.hub_id, offline=True,
                        license=readme_license(src.path))


# --- the encoder ---------------------------------------------------------------------------------------

class HFAutoEncoder(FrozenEncoder):
    """A transformers vision backbone read out as its facts' layout says."""

    def __init__(self, config: EncoderConfig, model: nn.Module, **kwargs):
        super().__init__(config, **kwargs)
        self.model = model
        self.layout = TokenLayout.from_dict(config.extra["layout"])

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=x)
        tokens = self.layout.tokens(out.last_hidden_state)
        if self.config.summary == "pooled":
            return tokens, out.pooler_output.flatten(1)
        if self.config.summary == "cls":
            return tokens, out.last_hidden_state[:, 0]
        return tokens, tokens.mean(dim=(1, 2))


def pretrained(src: HFSource, what: str) -> nn.Module:
    """Load the checkpoint's weights; every weight the encoder runs must come from it."""
    if checkpoint_keys(src.path, what) is None:
        raise WeightsNotFoundError(f"{what}: {src.path} has no weights ({', '.join(WEIGHT_FILES)}). Pass a complete "
                                   "save_pretrained directory, or weights=random for a random init of its config.")
    with quiet_transformers():
        try:
            model, info = src.model_cls.from_pretrained(str(src.path), output_loading_info=True,
                                                        ignore_mismatched_sizes=True, dtype=torch.float32)
        except (RuntimeError, ValueError, OSError) as exc:
            raise CheckpointMismatchError(f"{what}: could not load {src.model_cls.__name__} from {src.path}: {exc}. "
                                          "Check that the checkpoint files are complete.") from exc
    mismatched = sorted(info.get("mismatched_keys", []), key=lambda item: item[0])
    if mismatched:
        key, found, wanted = mismatched[0]
        raise CheckpointMismatchError(f"{what}: shape mismatch at '{key}': checkpoint {tuple(found)} vs model "
                                      f"{tuple(wanted)} in {src.path}; its config.json does not describe its weights.")
    missing = sorted(k for k in info.get("missing_keys", []) if src.keeps_pooler or not k.startswith("pooler."))
    if missing:
        raise CheckpointMismatchError(
            f"{what}: the checkpoint at {src.path} lacks {len(missing)} weight(s) of {src.model_cls.__name__} (first: "
            f"'{missing[0]}'); transformers would fill them with random values. Pass a complete checkpoint.")
    if not src.keeps_pooler:
        model.pooler = None
    return model


def build(name: str, spec: HFSource, weights: str | None = None, device: str | torch.device = "cpu",
          dtype: str | torch.dtype = "float32", **kwargs) -> FrozenEncoder:
    """The encoder of `spec` with its own weights, a seeded random init, or the weights of another checkpoint."""
    what = f"encoder '{name}'"
    if parse_weights(weights).random:
        with seeded_init(parse_weights(weights).seed):
            model = new_model(spec)
        src, weights_id = spec, str(weights)
    else:
        src = spec if weights is None else read_source(*locate(str(weights), what), what)
        if src.model_type != spec.model_type:
            raise CheckpointMismatchError(f"{what}: weights {weights} hold a '{src.model_type}' checkpoint, but "
                                          f"{name} is a '{spec.model_type}' model. Pass a checkpoint of that "
                                          "architecture, or name it as its own encoder (hf:<it>).")
        model, weights_id = pretrained(src, what), src.label()
    encoder = HFAutoEncoder(describe(name, src), model, device=device, dtype=dtype, weights_id=weights_id, **kwargs)
    return encoder.finalize()


def resolve(name: str) -> ResolvedEntry:
    """The entry of `hf:<hub id or directory>` (the checkpoint is located and its configs read now)."""
    spec = name[len(SCHEME) + 1:]
    what = f"encoder '{name}'"
    if not spec:
        raise InputError(f"{what}: name a Hugging Face model after hf:, a hub id or a save_pretrained directory "
                         "(e.g. hf:facebook/dinov2-small or hf:/models/my-vit).")
    src = read_source(*locate(spec, what), what)
    return ResolvedEntry(name, partial(describe, name, src), partial(build, name, src))


register_scheme(SCHEME, resolve)
