"""The student being distilled: a ViT backbone plus one translator head per teacher.

Student sizes: nano (ours, for CPU runs), deit-tiny, deit-small, deit-base (the reference's DeiT widths,
random init as in the reference config). Input: uint8 images, squash-resized to the student's input
size, scaled to [0, 1] and normalised with mean = std = 0.5 (the Theia student's preprocessing; the
same Preprocess the `theia` encoder entry applies, so exported students give identical tokens).

Attention kernels (`attention=`, training only; the weights and the exported model do not depend on it):
  sdpa    torch's scaled_dot_product_attention (transformers' default; flash kernels on GPUs)
  matmul  two batched matmuls and a softmax in the input dtype. On CPUs under bf16 autocast the nano
          training step is about 1.3x faster with it than with sdpa, whose CPU flash-attention backward is
          slow at head width 32 (transformers' eager attention is no better: it upcasts the attention
          matrix to float32 for its softmax). In float32 sdpa is the faster one (benchmarks/RESULTS.md).
  auto    matmul on CPUs under bf16 autocast, sdpa everywhere else
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from theia_eval.distill.translators import Translator
from theia_eval.encoders.images import HALF_MEAN, HALF_STD, Preprocess
from theia_eval.encoders.theia_format import STUDENT_SIZES, StudentSize, vit_config
from theia_eval.errors import InputError, unknown_name

STUDENTS: dict[str, str] = {"nano": "nano", "tiny": "tiny", "small": "small", "base": "base",
                            "deit-tiny": "tiny", "deit-small": "small", "deit-base": "base"}


def student_size(name: str, image_size: int | None = None) -> StudentSize:
    """The StudentSize of a student name, optionally at another (multiple-of-patch) input size."""
    if name not in STUDENTS:
        raise unknown_name("student", name, STUDENTS)
    size = STUDENT_SIZES[STUDENTS[name]]
    if image_size and int(image_size) != size.image_size:
        if int(image_size) % size.patch:
            lo = int(image_size) // size.patch * size.patch
            raise InputError(f"student image_size {image_size} is not a multiple of the patch size {size.patch}; "
                             f"use {lo} or {lo + size.patch}.")
        size = dataclasses.replace(size, image_size=int(image_size))
    return size


def build_backbone(size: StudentSize) -> nn.Module:
    """A randomly initialised ViTModel (no pooler) of this size."""
    from transformers import ViTModel

    cfg = vit_config(size.width, size.depth, size.heads, size.mlp, size.patch, size.image_size)
    return ViTModel(cfg, add_pooling_layer=False)


def matmul_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs) -> tuple[torch.Tensor, None]:
    """softmax(q k^T * scaling) v with the softmax in the input dtype; (B, heads, N, d) in, (B, N, heads, d) out."""
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query * scaling, key.transpose(-1, -2))
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = torch.nn.functional.dropout(scores.softmax(-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


ATTENTION_KERNELS = ("auto", "sdpa", "matmul")


def set_attention(backbone: nn.Module, kind: str, device: torch.device, amp: torch.dtype | None = None) -> str:
    """Select the backbone's attention kernel (see the module docstring); returns the one in use."""
    if kind not in ATTENTION_KERNELS:
        raise InputError(f"unknown attention '{kind}'; use one of {list(ATTENTION_KERNELS)}.")
    if kind == "auto":
        kind = "matmul" if device.type == "cpu" and amp == torch.bfloat16 else "sdpa"
    if kind == "matmul":
        from transformers import AttentionInterface

        AttentionInterface.register("theia-matmul", matmul_attention)
        backbone.config._attn_implementation = "theia-matmul"
    else:
        backbone.config._attn_implementation = "sdpa"
    return kind


def student_preprocess(size: StudentSize) -> Preprocess:
    return Preprocess(resize=size.image_size, crop=None, interpolation="bilinear", mean=HALF_MEAN, std=HALF_STD,
                      squash=True)


class DistillModel(nn.Module):
    """uint8 images -> {teacher id: predicted targets (B, h_t*w_t, C_t)}."""

    def __init__(self, size: StudentSize, targets: dict[str, tuple[int, int, int]], translator: str = "auto",
                 hidden_factor: float = 1.0):
        super().__init__()
        self.size = size
        self.preprocess = student_preprocess(size)
        self.backbone = build_backbone(size)
        grid = size.grid
        self.translator = Translator(translator, (size.width, *grid), targets, hidden_factor)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Spatial tokens (B, h*w, C): the last hidden state without [CLS]."""
        x = self.preprocess(images)
        return self.backbone(pixel_values=x).last_hidden_state[:, 1:]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.translator(self.tokens(images))
