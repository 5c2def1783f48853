"""MAE-pretrained ViTs loaded from MAE-format checkpoints: VC-1 (eai-vc) and MVP (ir413/mvp).

Checkpoint format: torch.load(path)['model'] with timm ViT key names; decoder*, mask_token and a
classifier head are dropped, and the position embeddings are resized (bicubic, CLS kept) when the
checkpoint's grid differs from the model's. The architecture (width, depth, patch, MLP ratio) is
read from the checkpoint shapes, so small test checkpoints load into any entry.
Summary = CLS after the final LayerNorm; tokens = the patch tokens after the final LayerNorm.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from theia_eval.encoders.registry import register_encoder
from theia_eval.encoders.weights import (load_matching, load_torch_file, parse_weights, require_file,
                                         seeded_init)
from theia_eval.errors import CheckpointMismatchError, InputError

# Attention heads of the standard ViT widths (Ti, S, B, L, H); an entry's own width uses the entry's heads.
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
DROPPED_PREFIXES = ("decoder", "mask_token", "head.")  # MAE decoder, mask token, classifier of supervised ViTs
CROP_FRACTION = 224 / 256  # eai-vc vit_transforms: resize 256 -> center crop 224


@dataclass(frozen=True)
class VitShape:
    """A ViT architecture as written in a config or read from a checkpoint."""

    embed_dim: int
    depth: int
    num_heads: int
    patch: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True

    def tokens(self, size: int) -> int:
        return (size // self.patch) ** 2

    def params(self, size: int) -> int:
        """Parameter count of the encoder (no head) at input side `size`."""
        c, h, p = self.embed_dim, int(self.embed_dim * self.mlp_ratio), self.patch
        embed = 3 * p * p * c + c + c + (self.tokens(size) + 1) * c
        block = 4 * c + 3 * c * c + (3 * c if self.qkv_bias else 0) + c * c + c + 2 * c * h + h + c
        return embed + self.depth * block + 2 * c

    def gflops(self, size: int) -> float:
        """Forward GFLOPs per image (multiply-add = 2): patch embedding, linear layers and attention."""
        c, h, n = self.embed_dim, int(self.embed_dim * self.mlp_ratio), self.tokens(size) + 1
        embed = 2 * self.tokens(size) * c * 3 * self.patch ** 2
        block = 2 * n * (4 * c * c + 2 * c * h) + 4 * n * n * c
        return (embed + self.depth * block) / 1e9


def vit_preprocess(size: int) -> Preprocess:
    """eai-vc's vit_transforms scaled to `size`: bicubic resize of the shorter side to size/0.875, center crop."""
    return Preprocess(resize=int(size / CROP_FRACTION), crop=size, interpolation="bicubic",
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)


def mae_entry(name: str, family: str, shape: VitShape, size: int, source: str, license: str,
              notes: str) -> EncoderConfig:
    """Registry config of one MAE-format ViT."""
    arch = f"ViT d{shape.embed_dim} x{shape.depth} h{shape.num_heads} patch {shape.patch} at {size} px (timm)"
    grid = (size // shape.patch,) * 2
    return EncoderConfig(
        name=name, family=family, architecture=arch, params_m=round(shape.params(size) / 1e6, 2),
        gflops=round(shape.gflops(size), 2), input_size=size, grid=grid, token_dim=shape.embed_dim,
        summary_dim=shape.embed_dim, summary="cls", preprocess=vit_preprocess(size), source=source,
        license=license, offline=False, min_size=16, notes=notes, extra={"vit": dataclasses.asdict(shape)})


VC1_NOTES = ("MAE-pretrained on Ego4D+ImageNet+... (eai-vc VC-1). Preprocess as eai-vc vit_transforms: bicubic "
             "resize of the shorter side to 256, center crop 224, ImageNet mean/std. LayerNorm eps 1e-6, qkv bias.")
MVP_NOTES = ("MAE-pretrained (ir413/mvp). MVP's own pixel pipeline renders at the model size and center-crops; "
             "we preprocess as VC-1/CortexBench (resize to size/0.875 bicubic, center crop, ImageNet mean/std).")
MVP_LICENSE = "unspecified (ir413/mvp ships no LICENSE; MAE code is CC-BY-NC 4.0): research use"
VC1_URL = "https://dl.fbaipublicfiles.com/eai-vc/"
MVP_URL = "https://berkeley.box.com/shared/static/"

MAE_ENTRIES = [
    mae_entry("vc1-base", "vc1", VitShape(768, 12, 12), 224, f"vc1_vitb.pth from {VC1_URL}vc1_vitb.pth (eai-vc)",
              "CC-BY-NC 4.0", VC1_NOTES),
    mae_entry("vc1-large", "vc1", VitShape(1024, 24, 16), 224, f"vc1_vitl.pth from {VC1_URL}vc1_vitl.pth (eai-vc)",
              "CC-BY-NC 4.0", VC1_NOTES),
    mae_entry("mvp-small", "mvp", VitShape(384, 12, 12), 224,
              f"MVP vits-mae-hoi checkpoint ({MVP_URL}m93ynem558jo8vltlads5rcmnahgsyzr.pth)", MVP_LICENSE,
              MVP_NOTES + " MVP's ViT-S uses 12 heads of width 32 (mvp/backbones/vit.py vit_s16), not DeiT-S's 6."),
    mae_entry("mvp-base", "mvp", VitShape(768, 12, 12), 224,
              f"MVP vitb-mae-egosoup checkpoint ({MVP_URL}0ckepd2ja3pi570z89ogd899cn387yut.pth)", MVP_LICENSE,
              MVP_NOTES),
    mae_entry("mvp-large", "mvp", VitShape(1024, 24, 16), 256,
              f"MVP vitl-256-mae-egosoup checkpoint ({MVP_URL}6p0pc47mlpp4hhwlin2hf035lxlgddxr.pth)", MVP_LICENSE,
              MVP_NOTES + " Trained at 256 px (16x16 grid): resize 292 bicubic, center crop 256."),
]


def entry_shape(config: EncoderConfig) -> VitShape:
    return VitShape(**config.extra["vit"])


def heads_for(width: int, config: EncoderConfig) -> int:
    """Attention heads for a checkpoint of this width: the entry's, a standard ViT's, or width/64."""
    own = entry_shape(config)
    if width == own.embed_dim:
        return own.num_heads
    if width in HEADS_BY_WIDTH:
        return HEADS_BY_WIDTH[width]
    if width % 64 == 0:
        return width // 64
    raise CheckpointMismatchError(
        f"{config.name}: cannot tell the number of attention heads of a ViT of width {width} (not a standard width "
        f"{sorted(HEADS_BY_WIDTH)} and not a multiple of 64). Pass it: create_encoder('{config.name}', "
        "weights=PATH, num_heads=N).")


def require_key(state: dict, key: str, config: EncoderConfig) -> torch.Tensor:
    if key not in state:
        raise CheckpointMismatchError(f"{config.name}: MAE checkpoint has no key '{key}' (needed to read the ViT "
                                      "architecture). Is this a timm/MAE-format ViT checkpoint?")
    return state[key]


def infer_shape(state: dict, config: EncoderConfig, num_heads: int | None = None) -> VitShape:
    """Read width, depth, patch, MLP ratio and qkv bias from the checkpoint shapes."""
    width = require_key(state, "cls_token", config).shape[-1]
    patch = require_key(state, "patch_embed.proj.weight", config).shape[-1]
    hidden = require_key(state, "blocks.0.mlp.fc1.weight", config).shape[0]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    heads = num_heads or heads_for(width, config)
    if width % heads:
        raise InputError(f"{config.name}: num_heads={heads} does not divide the ViT width {width}.")
    return VitShape(width, depth, heads, patch, hidden / width, "blocks.0.attn.qkv.bias" in state)


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], config: EncoderConfig) -> torch.Tensor:
    """Bicubic resize of the grid part of (1, 1+N, C) position embeddings to `grid`; the CLS entry is kept."""
    n, c = pos.shape[1] - 1, pos.shape[2]
    side = math.isqrt(n)
    if side * side != n:
        raise CheckpointMismatchError(f"{config.name}: pos_embed has {n} patch positions, not a square grid.")
    if (side, side) == tuple(grid):
        return pos
    old = pos[:, 1:].reshape(1, side, side, c).permute(0, 3, 1, 2).float()
    new = F.interpolate(old, size=tuple(grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], new.permute(0, 2, 3, 1).reshape(1, -1, c).to(pos.dtype)], dim=1)


def read_mae_state(path: Path, config: EncoderConfig, trust: bool = False) -> dict[str, torch.Tensor]:
    """The encoder part of an MAE-format checkpoint ({'model': state_dict})."""
    ckpt = load_torch_file(config, path, trust)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointMismatchError(
            f"{config.name}: {path} is not an MAE-format checkpoint: expected a dict with key 'model', found {found}. "
            "Wrap a bare state dict as torch.save({'model': state_dict}, path).")
    return {k: v for k, v in ckpt["model"].items() if not k.startswith(DROPPED_PREFIXES)}


def make_vit(shape: VitShape, size: int) -> torch.nn.Module:
    """timm VisionTransformer with MAE's settings (LayerNorm eps 1e-6, CLS token, no head)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=size, patch_size=shape.patch, embed_dim=shape.embed_dim, depth=shape.depth,
                             num_heads=shape.num_heads, mlp_ratio=shape.mlp_ratio, qkv_bias=shape.qkv_bias,
                             num_classes=0, global_pool="token", norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))


class MaeEncoder(FrozenEncoder):
    """A timm ViT: tokens are the patch tokens and summary the CLS token, both after the final LayerNorm."""

    def __init__(self, config: EncoderConfig, vit: torch.nn.Module, **kwargs):
        super().__init__(config, **kwargs)
        self.vit = vit

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq = self.vit.forward_features(x)
        h, w = self.vit.patch_embed.grid_size
        return seq[:, 1:].reshape(seq.shape[0], h, w, seq.shape[-1]), seq[:, 0]


def describe(config: EncoderConfig, shape: VitShape, size: int) -> EncoderConfig:
    """The entry's config updated to the architecture and input size actually built."""
    if shape == entry_shape(config) and size == config.input_size:
        return config
    built = mae_entry(config.name, config.family, shape, size, config.source, config.license, config.notes)
    return dataclasses.replace(built, notes=config.notes + f" Built as {built.architecture}.")


def load_vit(config: EncoderConfig, weights: str | None, size: int | None, num_heads: int | None,
             trust: bool) -> tuple[torch.nn.Module, VitShape, int]:
    """Build the ViT from an MAE checkpoint file (the entry's size unless `size` is given)."""
    path = require_file(config, weights)
    state = read_mae_state(path, config, trust)
    shape = infer_shape(state, config, num_heads)
    size = size or config.input_size
    vit = make_vit(shape, size)
    if "pos_embed" in state:
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], vit.patch_embed.grid_size, config)
    load_matching(vit, state, f"{config.name} from {path}")
    return vit, shape, size


def random_vit(config: EncoderConfig, weights: str, size: int | None,
               num_heads: int | None) -> tuple[torch.nn.Module, VitShape, int]:
    """The entry's real architecture with timm's seeded random init."""
    shape = dataclasses.replace(entry_shape(config), num_heads=num_heads or entry_shape(config).num_heads)
    size = size or config.input_size
    with seeded_init(parse_weights(weights).seed):
        return make_vit(shape, size), shape, size


def build_mae(config: EncoderConfig, weights: str | None = None, device="cpu", dtype="float32",
              img_size: int | None = None, num_heads: int | None = None, trust_checkpoint: bool = False,
              **kwargs) -> FrozenEncoder:
    """weights: None (error: not distributed offline), 'random[:SEED]', or an MAE-format .pth file.

    img_size overrides the entry's input side (position embeddings are resized); num_heads overrides
    the heads inferred for a checkpoint's width.
    """
    if parse_weights(weights).random:
        vit, shape, size = random_vit(config, weights, img_size, num_heads)
        weights_id = f"random:{parse_weights(weights).seed}"
    else:
        vit, shape, size = load_vit(config, weights, img_size, num_heads, trust_checkpoint)
        weights_id = str(weights)
    return MaeEncoder(describe(config, shape, size), vit, device=device, dtype=dtype, weights_id=weights_id,
                      **kwargs).finalize()


for _entry in MAE_ENTRIES:
    register_encoder(_entry)(build_mae)
