"""Depth-Anything-L (transformers DepthAnythingForDepthEstimation): head features before the last conv, 64x64 grid.

Theia's target (reference code, DepthAnythingHeadFeature + feature extraction): the output of head.conv2 (32
channels at the input resolution, before the ReLU and the 1x1 conv3 that makes depth), resized to 64x64 with
F.interpolate's default nearest mode. We capture head.conv2's output with a forward hook and do the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from theia_eval.encoders.base import EncoderConfig
from theia_eval.encoders.hf import COUNTED, HFEncoder, HFFamily, register_hf, resize_to
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, normalize


def multiple_at_least(value: float, multiple: int, minimum: int) -> int:
    """Nearest multiple of `multiple`, rounded up instead when that falls below `minimum`."""
    out = round(value / multiple) * multiple
    return out if out >= minimum else math.ceil(value / multiple) * multiple


def lower_bound_shape(h: int, w: int, short: int, multiple: int) -> tuple[int, int]:
    """Depth Anything's resize ('lower_bound', keep aspect): both sides >= short, multiples of `multiple`."""
    scale = max(short / h, short / w)
    return multiple_at_least(h * scale, multiple, short), multiple_at_least(w * scale, multiple, short)


@dataclass(frozen=True)
class MultipleOfResize(Preprocess):
    """Depth Anything: aspect kept, shorter side >= `resize`, both sides multiples of `multiple`; then normalize."""

    multiple: int = 14

    @property
    def output_size(self) -> int | None:
        return None  # depends on the image's aspect (resize x resize for square images)

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        shape = lower_bound_shape(*images.shape[-2:], self.resize, self.multiple)
        x = resize_to(images.to(torch.float32), shape, self.interpolation)
        return normalize(x, self.mean, self.std, self.scale).to(dtype)


class DepthAnythingEncoder(HFEncoder):
    """Tokens = head.conv2 output resized to the entry's grid, (B,h,w,C); summary = token mean."""

    def __init__(self, config: EncoderConfig, model: nn.Module, family: HFFamily, **kwargs):
        super().__init__(config, model, family, **kwargs)
        self._head_features: torch.Tensor | None = None
        self.model.head.conv2.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._head_features = output

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model(pixel_values=x)
        features, self._head_features = self._head_features, None
        tokens = F.interpolate(features, size=self.config.grid, mode=self.config.extra["grid_resize"])
        tokens = tokens.permute(0, 2, 3, 1)
        return tokens, tokens.mean(dim=(1, 2))

    def loaded_geometry(self) -> dict[str, Any]:
        channels = int(self.hf_config.head_hidden_size)
        return {"token_dim": channels, "summary_dim": channels}


DEPTH = HFFamily("DepthAnythingForDepthEstimation", "DepthAnythingConfig", ("depth_anything",), DepthAnythingEncoder)

DEPTH_ANYTHING_L = EncoderConfig(
    name="depth-anything-l", family="depth-anything",
    architecture="Depth-Anything-L: DINOv2 ViT-L/14 + DPT neck + head to conv2 at 518 px (transformers)",
    params_m=335.32, gflops=1304.0, input_size=518, grid=(64, 64), token_dim=32, summary_dim=32, summary="mean",
    preprocess=MultipleOfResize(resize=518, crop=None, interpolation="bicubic", mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, multiple=14),
    source="hf:LiheYoung/depth-anything-large-hf", license="Apache-2.0", offline=False, min_size=16,
    hub_id="LiheYoung/depth-anything-large-hf",
    notes="Tokens: the depth head's features before the last conv, as Theia's target: head.conv2 output (32 "
          "channels at the input resolution, before ReLU and conv3) resized to 64x64 with nearest interpolation "
          "(F.interpolate's default, what the Theia reference did); summary: mean over tokens. Preprocess: aspect "
          "kept, bicubic resize so that the shorter side is >= 518 and both sides are multiples of 14 (Depth "
          "Anything's lower_bound rule; equals the hub DPTImageProcessor for square images and for images larger "
          "than 518), ImageNet mean/std. Params: the whole model (conv3 has 33)." + COUNTED + " (518x518 input).",
    extra={"grid_resize": "nearest",
           "hf_config": {"backbone_config": {"model_type": "dinov2", "hidden_size": 1024, "num_hidden_layers": 24,
                                             "num_attention_heads": 16, "image_size": 518, "patch_size": 14,
                                             "out_indices": [5, 12, 18, 24], "apply_layernorm": True,
                                             "reshape_hidden_states": False},
                         "reassemble_hidden_size": 1024, "neck_hidden_sizes": [256, 512, 1024, 1024],
                         "fusion_hidden_size": 256, "head_hidden_size": 32, "patch_size": 14}},
)

register_hf(DEPTH_ANYTHING_L, DEPTH)
