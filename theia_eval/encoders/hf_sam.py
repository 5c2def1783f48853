"""SAM ViT-H image encoder (transformers SamModel, vision encoder only): image_embeddings as a 64x64 token grid."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from theia_eval.encoders.base import EncoderConfig
from theia_eval.encoders.hf import ANCHORED, HFEncoder, HFFamily, register_hf, resize_to
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, normalize


def longest_side_shape(h: int, w: int, longest: int) -> tuple[int, int]:
    """SamImageProcessor's resize shape: the longer side becomes `longest`, rounded half up."""
    scale = longest / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


@dataclass(frozen=True)
class LongestSidePad(Preprocess):
    """SAM: longer side resized to `resize` (aspect kept), normalized, zero-padded bottom/right to resize x resize."""

    @property
    def output_size(self) -> int | None:
        return self.resize

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        h, w = images.shape[-2:]
        nh, nw = longest_side_shape(h, w, self.resize)
        x = resize_to(images.to(torch.float32), (nh, nw), self.interpolation)
        x = normalize(x, self.mean, self.std, self.scale)
        return F.pad(x, (0, self.resize - nw, 0, self.resize - nh)).to(dtype)


class SamEncoder(HFEncoder):
    """Keeps SamModel.vision_encoder; tokens = image_embeddings (B,C,64,64) as (B,64,64,C), summary = token mean."""

    def keep(self, model: nn.Module) -> nn.Module:
        return model.vision_encoder

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.model(x).last_hidden_state.permute(0, 2, 3, 1)
        return tokens, tokens.mean(dim=(1, 2))

    def loaded_geometry(self) -> dict[str, Any]:
        vision = self.hf_config.vision_config
        side, channels = int(vision.image_size), int(vision.output_channels)
        return {"input_size": side, "grid": (side // vision.patch_size,) * 2, "token_dim": channels,
                "summary_dim": channels, "preprocess": dataclasses.replace(self.config.preprocess, resize=side)}


SAM = HFFamily("SamModel", "SamConfig", ("sam",), SamEncoder)

SAM_VIT_H = EncoderConfig(
    name="sam-vit-h", family="sam", architecture="SAM ViT-H/16 image encoder + neck at 1024 px (transformers)",
    params_m=637.03, gflops=5961.0, input_size=1024, grid=(64, 64), token_dim=256, summary_dim=256, summary="mean",
    preprocess=LongestSidePad(resize=1024, crop=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    source="hf:facebook/sam-vit-huge", license="Apache-2.0", offline=False, min_size=16, hub_id="facebook/sam-vit-huge",
    notes="transformers SamModel, vision encoder only (prompt encoder and mask decoder dropped). Tokens: "
          "image_embeddings (256 x 64 x 64, after the neck) as a 64x64 grid; summary: mean over tokens. Preprocess as "
          "SamImageProcessor: longer side to 1024 bilinear (aspect kept), ImageNet mean/std, zero padding "
          "bottom/right to 1024x1024 after normalization." + ANCHORED,
    extra={"hf_config": {"vision_config": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
                                           "global_attn_indexes": [7, 15, 23, 31], "output_channels": 256,
                                           "image_size": 1024, "patch_size": 16, "window_size": 14}}},
)

register_hf(SAM_VIT_H, SAM)
