"""Hugging Face transformers encoders: loading shared by every HF family, and the ViT-style ones (CLIP, DINOv2, ViT).

Weights come from a save_pretrained directory or a hub id found in the local HF cache (`weights.hf_snapshot`);
weights='random' builds the entry's real architecture from `extra['hf_config']` with a seeded init. A checkpoint
is accepted only when its config.json `model_type` is one the family knows and every weight of the model is in it
(transformers would otherwise fill missing weights with random values and only warn).
SAM and Depth-Anything live in hf_sam.py / hf_depth.py and reuse `HFFamily`, `HFEncoder` and `build_hf`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.images import CLIP_MEAN, CLIP_STD, HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.weights import hf_snapshot, parse_weights, seeded_init
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError


@dataclass(frozen=True)
class HFFamily:
    """How one transformers model family is loaded and read out."""

    model_class: str  # transformers class loaded with from_pretrained, e.g. "CLIPVisionModel"
    config_class: str  # its config class: weights='random' builds extra['hf_config'] with it
    model_types: tuple[str, ...]  # config.json model_type values this family loads
    encoder: type[HFEncoder]  # the FrozenEncoder subclass that reads the model out
    summary_output: str = "cls"  # key of SUMMARY_READERS (ViT-style families)
    fixed_input: bool = True  # learned positions for one size: the input side follows the model's image_size
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def model_cls(self) -> type[nn.Module]:
        import transformers

        return getattr(transformers, self.model_class)

    def new_model(self, hf_config: Any) -> nn.Module:
        """A randomly initialised model of this family (under the caller's RNG / device context)."""
        return self.model_cls()(hf_config, **self.model_kwargs)

    def config_from(self, kwargs: dict[str, Any]) -> Any:
        import transformers

        return getattr(transformers, self.config_class)(**kwargs)


# --- loading -------------------------------------------------------------------------------------

@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar (we check missing/mismatched keys ourselves and raise)."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def read_model_type(config: EncoderConfig, family: HFFamily, path: Path) -> str:
    """config.json's model_type of a save_pretrained directory, checked against the family."""
    if not path.is_dir():
        raise WeightsNotFoundError(
            f"weights for {config.name} must be a Hugging Face save_pretrained directory (config.json + "
            f"model.safetensors), got the file {path}. Pass its folder, e.g. the snapshot of {config.hub_id}.")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise WeightsNotFoundError(
            f"{path} has no config.json, so it is not a save_pretrained directory for {config.name}. Pass the folder "
            f"written by {family.model_class}.save_pretrained or a snapshot of {config.hub_id}.")
    model_type = json.loads(cfg_file.read_text()).get("model_type", "?")
    if model_type not in family.model_types:
        raise CheckpointMismatchError(
            f"{path} holds a '{model_type}' checkpoint (config.json model_type) but {config.name} loads "
            f"{family.model_class} (model_type {' or '.join(family.model_types)}). Pass a checkpoint of that "
            f"architecture, e.g. the snapshot of {config.hub_id}, or pick the registry entry that matches it.")
    return model_type


def pretrained_model(config: EncoderConfig, family: HFFamily, path: Path) -> nn.Module:
    """Load a family model from a local directory; every model weight must come from the checkpoint."""
    read_model_type(config, family, path)
    with quiet_transformers():
        try:
            model, info = family.model_cls().from_pretrained(
                str(path), output_loading_info=True, ignore_mismatched_sizes=True, dtype=torch.float32,
                **family.model_kwargs)
        except (RuntimeError, ValueError, OSError) as exc:
            raise CheckpointMismatchError(
                f"{config.name}: could not load {family.model_class} from {path}: {exc}. Check that the "
                "checkpoint files are complete and match its config.json.") from exc
    check_loading_info(config, family, path, info)
    return model


def check_loading_info(config: EncoderConfig, family: HFFamily, path: Path, info: dict[str, Any]) -> None:
    """Raise on weights that transformers would leave randomly initialised (missing or of another shape)."""
    mismatched = sorted(info.get("mismatched_keys", []), key=lambda item: item[0])
    if mismatched:
        key, found, wanted = mismatched[0]
        raise CheckpointMismatchError(
            f"{config.name}: shape mismatch at '{key}': checkpoint {tuple(found)} vs model {tuple(wanted)} "
            f"({len(mismatched)} mismatched) in {path}; its config.json does not describe its weights. "
            "Pass an unmodified save_pretrained directory.")
    missing = list(info.get("missing_keys", []))
    if missing:
        raise CheckpointMismatchError(
            f"{config.name}: the checkpoint at {path} lacks {len(missing)} weight(s) of {family.model_class} "
            f"(first: '{sorted(missing)[0]}'); transformers would fill them with random values. "
            "Pass a complete checkpoint.")


def random_model(config: EncoderConfig, family: HFFamily, seed: int) -> nn.Module:
    """The entry's real architecture with a seeded random init."""
    with seeded_init(seed):
        return family.new_model(family.config_from(config.extra["hf_config"]))


def load_hf_model(config: EncoderConfig, family: HFFamily, weights: str | None) -> tuple[nn.Module, str]:
    """The transformers model of an entry and where its weights came from."""
    if parse_weights(weights).random:
        return random_model(config, family, parse_weights(weights).seed), str(weights)
    path = hf_snapshot(config, weights)
    return pretrained_model(config, family, path), str(weights or config.hub_id)


def resize_to(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Resize float (B,C,H,W) in 0-255 to exactly `size` (antialiased; bicubic clamped to 0-255)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=True)
    return y.clamp(0, 255) if interpolation == "bicubic" else y


# --- facts of a loaded model --------------------------------------------------------------------

def significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def meta_gflops(encoder_cls: type[HFEncoder], config: EncoderConfig, family: HFFamily, hf_config: Any) -> float:
    """GFLOPs (multiply-add = 2) of forward_features at the native input, counted on the meta device."""
    side = config.input_size
    with torch.device("meta"):
        twin = encoder_cls(config, family.new_model(hf_config), family)
        x = torch.zeros(1, 3, side, side)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        twin.forward_features(x)
    return counter.get_total_flops() / 1e9


def meta_params_m(config: EncoderConfig, family: HFFamily) -> float:
    """Parameters (millions) of the entry's real architecture as the encoder keeps it, built on the meta device."""
    hf_config = family.config_from(config.extra["hf_config"])
    with torch.device("meta"):
        twin = family.encoder(config, family.new_model(hf_config), family)
    return sum(p.numel() for p in twin.parameters()) / 1e6


class HFEncoder(FrozenEncoder):
    """A frozen transformers model; subclasses say what they keep, read out and how the loaded model looks."""

    def __init__(self, config: EncoderConfig, model: nn.Module, family: HFFamily, **kwargs):
        super().__init__(config, **kwargs)
        self.family = family
        self.hf_config = model.config
        self.model = self.keep(model)

    def keep(self, model: nn.Module) -> nn.Module:
        """The part of the loaded model that the encoder runs (all of it by default)."""
        return model

    def loaded_geometry(self) -> dict[str, Any]:
        """EncoderConfig fields (grid, dims, input size, preprocess) of the model actually loaded."""
        return {}

    def describe_loaded(self) -> EncoderConfig:
        """The entry's config with the facts of what was loaded (differs for e.g. tiny test checkpoints)."""
        entry = self.config
        facts = dict(self.loaded_geometry(), params_m=round(sum(p.numel() for p in self.parameters()) / 1e6, 2))
        loaded = dataclasses.replace(entry, **facts)
        if any(getattr(loaded, k) != getattr(entry, k) for k in facts):
            flops = meta_gflops(type(self), loaded, self.family, self.hf_config)
            loaded = dataclasses.replace(loaded, gflops=significant(flops))
        return loaded


def build_hf(config: EncoderConfig, weights: str | None = None, device: str | torch.device = "cpu",
             dtype: str | torch.dtype = "float32", *, family: HFFamily, **kwargs) -> FrozenEncoder:
    """Registry builder shared by every HF entry (bound to its family with functools.partial)."""
    model, source = load_hf_model(config, family, weights)
    encoder = family.encoder(config, model, family, device=device, dtype=dtype, weights_id=source, **kwargs)
    encoder.config = encoder.describe_loaded()
    return encoder.finalize()


def register_hf(config: EncoderConfig, family: HFFamily) -> None:
    register_encoder(config)(partial(build_hf, family=family))


# --- ViT-style: [CLS] (+ registers) + patch tokens --------------------------------------------

SUMMARY_READERS: dict[str, Callable[[Any], torch.Tensor]] = {
    "pooler_output": lambda out: out.pooler_output,  # CLIP: CLS after post_layernorm
    "cls": lambda out: out.last_hidden_state[:, 0],  # DINOv2 / ViT: CLS after the final layernorm
}


class HFViTEncoder(HFEncoder):
    """CLIP / DINOv2 / ViT: tokens = last_hidden_state without CLS and register tokens, summary per family."""

    @property
    def prefix_tokens(self) -> int:
        return 1 + int(getattr(self.hf_config, "num_register_tokens", 0) or 0)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=x)
        hidden = out.last_hidden_state
        patch = self.hf_config.patch_size
        h, w = x.shape[-2] // patch, x.shape[-1] // patch
        tokens = hidden[:, self.prefix_tokens:].reshape(hidden.shape[0], h, w, hidden.shape[-1])
        return tokens, SUMMARY_READERS[self.family.summary_output](out)

    def loaded_geometry(self) -> dict[str, Any]:
        cfg, pre = self.hf_config, self.config.preprocess
        if self.family.fixed_input:
            side = int(cfg.image_size)
            pre = dataclasses.replace(pre, resize=side, crop=side if pre.crop else None)
        else:
            side = int(pre.output_size)
        grid = (side // cfg.patch_size,) * 2
        return {"input_size": side, "grid": grid, "token_dim": cfg.hidden_size, "summary_dim": cfg.hidden_size,
                "preprocess": pre}


CLIP = HFFamily("CLIPVisionModel", "CLIPVisionConfig", ("clip", "clip_vision_model"), HFViTEncoder,
                summary_output="pooler_output")
DINOV2 = HFFamily("Dinov2Model", "Dinov2Config", ("dinov2",), HFViTEncoder, fixed_input=False)
VIT = HFFamily("ViTModel", "ViTConfig", ("vit",), HFViTEncoder, model_kwargs={"add_pooling_layer": False})

# Preprocessing of the upstream HF image processors (preprocessor_config.json of each hub id).
CLIP_PRE = Preprocess(resize=224, crop=224, interpolation="bicubic", mean=CLIP_MEAN, std=CLIP_STD)
DINOV2_PRE = Preprocess(resize=256, crop=224, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD)
VIT_PRE = Preprocess(resize=224, crop=None, interpolation="bilinear", mean=HALF_MEAN, std=HALF_STD, squash=True)

CLIP_NOTES = ("transformers CLIPVisionModel (the image tower of CLIPModel; a full CLIP checkpoint loads too). Tokens: "
              "last_hidden_state without CLS (no final LayerNorm on patch tokens, as Theia's targets); summary: "
              "pooler_output = CLS after post_layernorm, no projection. Preprocess as CLIPImageProcessor: shorter side "
              "224 bicubic, center crop 224, CLIP mean/std.")
DINOV2_NOTES = ("transformers Dinov2Model. Tokens: last_hidden_state (after the final LayerNorm) without CLS and "
                "register tokens; summary: CLS (pooler_output). Preprocess as the hub BitImageProcessor config: "
                "shorter side 256 bicubic, center crop 224, ImageNet mean/std -> 16x16 patches of 14 px. Params "
                "include the 518-px position table (37x37), interpolated to 16x16 at run time.")
VIT_NOTES = ("transformers ViTModel without the pooler (add_pooling_layer=False). Tokens: last_hidden_state (after "
             "the final LayerNorm) without CLS; summary: CLS. Preprocess as ViTImageProcessor: resize to exactly "
             "224x224 bilinear, mean=std=0.5.")
COUNTED = " GFLOPs counted with torch FlopCounterMode (matmul/conv, multiply-add = 2) at the native input."
ANCHORED = " GFLOPs from shared/spec/anchors.md (FlopCounterMode agrees to 1%)."


def clip_config(hidden: int, layers: int, heads: int, patch: int, projection: int) -> dict[str, Any]:
    return {"hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "patch_size": patch, "image_size": 224, "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5, "projection_dim": projection}


def dinov2_config(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "mlp_ratio": 4,
            "patch_size": 14, "image_size": 518, "layerscale_value": 1.0, "layer_norm_eps": 1e-6}


def vit_config(hidden: int, layers: int, heads: int, patch: int) -> dict[str, Any]:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": 4 * hidden, "patch_size": patch, "image_size": 224, "layer_norm_eps": 1e-12}


def vit_style_entry(name: str, family_name: str, hub_id: str, hf_config: dict[str, Any], params_m: float,
                    gflops: float, preprocess: Preprocess, summary: str, license: str, notes: str) -> EncoderConfig:
    """Registry config of a ViT-style HF entry (square input, CLS summary of width hidden_size)."""
    side, patch, dim = preprocess.output_size, hf_config["patch_size"], hf_config["hidden_size"]
    arch = (f"ViT d{dim} x{hf_config['num_hidden_layers']} h{hf_config['num_attention_heads']} patch {patch} "
            f"at {side} px (transformers)")
    return EncoderConfig(
        name=name, family=family_name, architecture=arch, params_m=params_m, gflops=gflops, input_size=side,
        grid=(side // patch,) * 2, token_dim=dim, summary_dim=dim, summary=summary, preprocess=preprocess,
        source=f"hf:{hub_id}", license=license, offline=False, min_size=16, notes=notes, hub_id=hub_id,
        extra={"hf_config": hf_config})


ENTRIES: list[tuple[EncoderConfig, HFFamily]] = [
    (vit_style_entry("clip-vit-l14", "clip", "openai/clip-vit-large-patch14", clip_config(1024, 24, 16, 14, 768),
                     303.18, 162.0, CLIP_PRE, "pooled", "MIT", CLIP_NOTES + ANCHORED), CLIP),
    (vit_style_entry("clip-vit-b16", "clip", "openai/clip-vit-base-patch16", clip_config(768, 12, 12, 16, 512),
                     85.8, 35.1, CLIP_PRE, "pooled", "MIT", CLIP_NOTES + COUNTED), CLIP),
    (vit_style_entry("dinov2-vit-s14", "dinov2", "facebook/dinov2-small", dinov2_config(384, 12, 6),
                     22.06, 12.2, DINOV2_PRE, "cls", "Apache-2.0", DINOV2_NOTES + COUNTED), DINOV2),
    (vit_style_entry("dinov2-vit-b14", "dinov2", "facebook/dinov2-base", dinov2_config(768, 12, 12),
                     86.58, 46.3, DINOV2_PRE, "cls", "Apache-2.0", DINOV2_NOTES + COUNTED), DINOV2),
    (vit_style_entry("dinov2-vit-l14", "dinov2", "facebook/dinov2-large", dinov2_config(1024, 24, 16),
                     304.37, 162.0, DINOV2_PRE, "cls", "Apache-2.0", DINOV2_NOTES + ANCHORED), DINOV2),
    (vit_style_entry("vit-h14-in21k", "vit", "google/vit-huge-patch14-224-in21k", vit_config(1280, 32, 16, 14),
                     630.76, 335.0, VIT_PRE, "cls", "Apache-2.0", VIT_NOTES + ANCHORED), VIT),
    (vit_style_entry("vit-b16-in21k", "vit", "google/vit-base-patch16-224-in21k", vit_config(768, 12, 12, 16),
                     85.8, 35.1, VIT_PRE, "cls", "Apache-2.0", VIT_NOTES + COUNTED), VIT),
]

for _config, _family in ENTRIES:
    register_hf(_config, _family)
