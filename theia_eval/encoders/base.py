"""The one encoder contract: uint8 images in, spatial tokens (B,h,w,C) and a summary (B,C') out."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from theia_eval.encoders.images import Preprocess, as_uint8_batch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


@dataclass(frozen=True)
class EncoderConfig:
    """Facts about one registry entry, known without building the model or running a forward pass."""

    name: str
    family: str
    architecture: str
    params_m: float  # millions of parameters of the encoder used (heads dropped)
    gflops: float  # per image at the native input size, multiply-add counted as 2
    input_size: int  # side of the native square input
    grid: tuple[int, int]  # token grid (h, w) at the native input size
    token_dim: int
    summary_dim: int
    summary: str  # what the summary vector is: "cls", "mean", "pooled"
    preprocess: Preprocess
    source: str  # default weights: hub id, file or package
    license: str
    offline: bool  # whether default weights are available with no network
    min_size: int = 16  # smallest accepted image side
    notes: str = ""
    hub_id: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class EncoderOutput:
    """Spatial tokens (B, h, w, C) and summary vector (B, C')."""

    tokens: torch.Tensor
    summary: torch.Tensor


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    from theia_eval.errors import InputError

    if dtype not in DTYPES:
        raise InputError(f"unknown dtype '{dtype}'; use one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


class FrozenEncoder(nn.Module, abc.ABC):
    """Wraps a backbone: validates input, preprocesses on tensors, chunks big batches, no grads.

    Subclasses implement `forward_features(x) -> (tokens (B,h,w,C), summary (B,C'))` on the
    preprocessed float tensor, and may override `preprocess` when upstream does more than
    resize/crop/normalize (padding, aspect-keeping multiples of the patch size).
    """

    def __init__(self, config: EncoderConfig, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = torch.float32, max_batch: int = 64, weights_id: str = ""):
        super().__init__()
        self.config = config
        self.dtype = resolve_dtype(dtype)
        self.max_batch = int(max_batch)
        self.weights_id = weights_id  # what the weights were loaded from ("random:seed", a path, a hub id)
        self._device = torch.device(device)

    # --- facts without a forward pass -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def token_dim(self) -> int:
        return self.config.token_dim

    @property
    def summary_dim(self) -> int:
        return self.config.summary_dim

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def device(self) -> torch.device:
        return self._device

    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        h, w = self.grid
        return {"tokens": (batch, h, w, self.token_dim), "summary": (batch, self.summary_dim)}

    # --- the contract -----------------------------------------------------------------------
    def finalize(self) -> FrozenEncoder:
        """Put the module in eval mode, freeze it and move it to its device (call at the end of building)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self.to(self._device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B,3,H,W) on the encoder's device -> model input (float)."""
        return self.config.preprocess(images)

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed float input -> (tokens (B,h,w,C), summary (B,C'))."""

    @torch.inference_mode()
    def forward(self, images: np.ndarray | torch.Tensor) -> EncoderOutput:
        batch = as_uint8_batch(images, self.config.min_size).to(self._device, non_blocking=True)
        outs = [self._encode_chunk(chunk) for chunk in batch.split(self.max_batch)]
        if len(outs) == 1:
            return outs[0]
        return EncoderOutput(torch.cat([o.tokens for o in outs]), torch.cat([o.summary for o in outs]))

    def _encode_chunk(self, images: torch.Tensor) -> EncoderOutput:
        x = self.preprocess(images)
        use_autocast = self.dtype != torch.float32
        with torch.autocast(self._device.type, dtype=self.dtype, enabled=use_autocast):
            tokens, summary = self.forward_features(x)
        return EncoderOutput(tokens.to(self.dtype), summary.to(self.dtype))

    def extra_repr(self) -> str:
        return f"name={self.name}, grid={self.grid}, token_dim={self.token_dim}, weights={self.weights_id or '?'}"
