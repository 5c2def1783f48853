"""Validation of uint8 image batches and batched tensor preprocessing (resize, crop, normalize)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from theia_eval.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


def as_uint8_batch(images: np.ndarray | torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """Validate a batch of uint8 RGB images and return it as a (B, 3, H, W) uint8 tensor."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a numpy array or torch tensor, got {type(images).__name__}.")
    if images.dtype != torch.uint8:
        raise InputError(
            f"images must be uint8 in [0, 255], got dtype {images.dtype}. Convert float images in [0, 1] "
            "with (images * 255).round().clip(0, 255).astype(np.uint8) (or .to(torch.uint8) for tensors)."
        )
    if images.ndim != 4:
        hint = " For one image, add a batch axis: images[None]." if images.ndim == 3 else ""
        raise InputError(f"images must have rank 4, (B,H,W,3) or (B,3,H,W); got shape {tuple(images.shape)}.{hint}")
    if images.shape[0] == 0:
        raise InputError("empty batch: images has 0 images; pass at least one image.")
    if images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        channels = images.shape[-1] if images.shape[-1] in (1, 4) else images.shape[1]
        raise InputError(
            f"images must have 3 RGB channels, got shape {tuple(images.shape)} ({channels} channels?). "
            "Drop alpha with images[..., :3] or repeat grey images to 3 channels."
        )
    h, w = images.shape[-2:]
    if min(h, w) < min_size:
        raise InputError(f"images of {h}x{w} px are too small: this encoder needs at least {min_size}x{min_size}; upsample or render larger images.")
    return images


@dataclass(frozen=True)
class Preprocess:
    """How an encoder turns uint8 images into its input tensor, done batched on tensors.

    resize: shorter side is resized to this (aspect kept) when `squash` is False,
    else the image is resized to exactly (resize, resize). crop: center crop size (or None).
    scale: divide by this (255 gives [0, 1]; 1 keeps the 0-255 range).
    """

    resize: int | None
    crop: int | None
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 255.0
    squash: bool = False

    @property
    def output_size(self) -> int | None:
        """Side of the square input the model sees, or None when it depends on the image."""
        if self.crop is not None:
            return self.crop
        return self.resize if self.squash else None

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        x = images.to(torch.float32)
        if self.resize is not None:
            x = resize(x, self.resize, self.interpolation, squash=self.squash)
        if self.crop is not None:
            x = center_crop(x, self.crop)
        return normalize(x, self.mean, self.std, self.scale).to(dtype)


def resize(x: torch.Tensor, size: int, interpolation: str = "bilinear", squash: bool = False) -> torch.Tensor:
    """Resize float (B,C,H,W): shorter side to `size` (aspect kept) or exactly size x size."""
    h, w = x.shape[-2:]
    if squash:
        out = (size, size)
    else:
        short = min(h, w)
        out = (size, int(size * w / h)) if h == short else (int(size * h / w), size)
    if out == (h, w):
        return x
    y = F.interpolate(x, size=out, mode=interpolation, align_corners=False, antialias=True)
    return y.clamp(0, 255) if interpolation == "bicubic" else y


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Center crop (B,C,H,W) to size x size; pads with zeros when the image is smaller."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def normalize(x: torch.Tensor, mean, std, scale: float = 255.0) -> torch.Tensor:
    """(x / scale - mean) / std per channel, with mean/std given in [0, 1] units."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) * (255.0 / scale)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) * (255.0 / scale)
    return (x / scale - m) / s
