"""Offline baselines that need no weights: `pixels` (the downsampled image as tokens) and `blind` (no image)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.weights import parse_weights
from theia_eval.errors import InputError

PIXELS = EncoderConfig(
    name="pixels", family="baseline", architecture="identity: 64x64 image cut into 4x4-px patches",
    params_m=0.0, gflops=0.0, input_size=64, grid=(16, 16), token_dim=48, summary_dim=768, summary="pooled",
    preprocess=Preprocess(resize=64, crop=None, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                          squash=True),
    source="none (no weights)", license="n/a", offline=True, min_size=16,
    notes="Tokens: each 4x4 patch of the 64x64 squashed, ImageNet-normalized image flattened to 48 values "
          "(grid 16x16). Summary: the image average-pooled to 16x16, flattened (768). A no-representation control.",
)


class PixelsEncoder(FrozenEncoder):
    patch = 4

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        p = self.patch
        tokens = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, h // p, w // p, p * p * c)
        summary = F.adaptive_avg_pool2d(x, (16, 16)).flatten(1)
        return tokens, summary


@register_encoder(PIXELS)
def build_pixels(config: EncoderConfig, weights=None, device="cpu", dtype="float32", **kwargs) -> FrozenEncoder:
    w = parse_weights(weights)
    if not (w.default or w.random):
        raise InputError(f"encoder 'pixels' has no weights; got weights={weights!r}. Leave weights unset.")
    return PixelsEncoder(config, device=device, dtype=dtype, weights_id="none", **kwargs).finalize()


BLIND = EncoderConfig(
    name="blind", family="baseline", architecture="constant zero features (sees no image)",
    params_m=0.0, gflops=0.0, input_size=16, grid=(1, 1), token_dim=1, summary_dim=1, summary="pooled",
    preprocess=Preprocess(resize=None, crop=None), source="none (no weights)", license="n/a", offline=True,
    min_size=1,
    notes="The proprio-only control: every image maps to a single zero token and a zero summary, so a policy "
          "trained on it can only use proprioception. Tasks that need vision should score clearly lower.",
)


class BlindEncoder(FrozenEncoder):
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.new_zeros((images.shape[0], 1, 1, 1), dtype=torch.float32)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.view(-1, 1, 1, 1), x.view(-1, 1)


@register_encoder(BLIND)
def build_blind(config: EncoderConfig, weights=None, device="cpu", dtype="float32", **kwargs) -> FrozenEncoder:
    if weights is not None:
        raise InputError(f"encoder 'blind' has no weights; got weights={weights!r}. Leave weights unset.")
    return BlindEncoder(config, device=device, dtype=dtype, weights_id="none", **kwargs).finalize()
