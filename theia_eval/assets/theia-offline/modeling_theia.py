"""A Theia student with its translator heads, as one self-contained module (torch + transformers only).

Every export directory carries a copy of this file as `modeling_theia.py`, so that
`transformers.AutoModel.from_pretrained(export_dir, trust_remote_code=True)` builds the same model that
`theia_eval.load_theia(export_dir)` returns, without theia_eval installed. Keep it free of theia_eval imports.

Parameter names are the official Theia checkpoint names (transformers-4 ViT names under `backbone.model.`,
heads under `translator.translator_heads.<teacher id>.pad.*` / `.adapter.<i>.*`), so official checkpoints,
our exports and upstream training state dicts load strictly, whatever transformers version is installed.

    model.forward_feature(images, feature_reduce=None)  # uint8 (B,H,W,3) or (B,3,H,W) -> tokens (B, h*w, C)
    model(images)                                       # {teacher id: standardized prediction (B, h_t*w_t, C_t)}
    model.teacher_features(images)                      # {teacher id: (B, h_t, w_t, C_t) in the teacher's scale}

Translator heads (`kind` in config.translator_heads; C = student width, hidden = int(C * factor)):
  lconv    the reference light-conv head. 14x14 student grid -> 16x16 or 64x64 targets: a 3x3 stride-1
           transposed conv grows 14 to 16, then LN(C,16,16) -> Conv3x3 -> ReLU -> LN -> Conv3x3 -> ReLU -> LN
           -> Linear (16x16), or two stride-2 transposed convs 16 -> 31 -> 64 (64x64); 14x14 -> 14x14: the
           16x16 body at 14x14; 14x14 -> 7x7: LN(C,14,14) -> Conv4x4/2 -> ReLU -> LN(hidden,7,7) -> Linear.
  general  any other grid: LN(C,h,w) -> bilinear resample to the target grid -> the 16x16 body.
LayerNorms are elementwise-affine over the whole (C, H, W) map (nn.LayerNorm([C, H, W]) parameters) and are
computed on channels-last maps (same numbers).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

Shape = tuple  # (C, H, W)
FEATURE_REDUCE_ALIASES = {None: None, "none": None, "tokens": None, "mean": "mean", "mean_pooling": "mean",
                          "max": "max", "max_pooling": "max", "cls": "cls", "identity": "identity"}


# --- translator heads --------------------------------------------------------------------------------
class TokensToMap(nn.Module):
    """(B, h*w, C) tokens -> (B, C, h, w) map (a channels-last view, no copy)."""

    def __init__(self, h: int, w: int):
        super().__init__()
        self.h, self.w = h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.h, self.w, x.shape[-1]).permute(0, 3, 1, 2)


class MapToTokens(nn.Module):
    """(B, C, h, w) map -> (B, h*w, C) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class MapLayerNorm(nn.Module):
    """LayerNorm over a whole (C, H, W) map with (C, H, W) affine parameters (nn.LayerNorm([C, H, W]))."""

    def __init__(self, shape: Shape, eps: float = 1e-5):
        super().__init__()
        self.shape, self.eps = tuple(shape), eps
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)
        y = F.layer_norm(y, y.shape[1:], self.weight.permute(1, 2, 0), self.bias.permute(1, 2, 0), self.eps)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.shape}, eps={self.eps}"


class Resample(nn.Module):
    """Bilinear resize of a map to (h, w); antialiased when shrinking."""

    def __init__(self, h: int, w: int):
        super().__init__()
        self.size = (h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        shrink = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink)


class TranslatorHead(nn.Module):
    """pad (tokens -> map) then adapter (map -> target tokens (B, h_t*w_t, C_t))."""

    def __init__(self, pad: nn.Sequential, adapter: nn.Sequential, source: Shape, target: Shape, kind: str,
                 hidden: int):
        super().__init__()
        self.pad, self.adapter = pad, adapter
        self.source, self.target, self.kind, self.hidden = tuple(source), tuple(target), kind, int(hidden)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.pad(tokens))

    def spec(self) -> dict:
        """What rebuilds this head: kind, source and target (C, H, W), hidden width."""
        return {"kind": self.kind, "source": list(self.source), "target": list(self.target), "hidden": self.hidden}


def conv_body(c_in: int, hidden: int, side: tuple, c_out: int) -> list:
    """LN -> Conv3x3 -> ReLU -> LN -> Conv3x3 -> ReLU -> LN -> tokens -> Linear, at one grid."""
    return [MapLayerNorm((c_in, *side)), nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
            MapLayerNorm((hidden, *side)), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            MapLayerNorm((hidden, *side)), MapToTokens(), nn.Linear(hidden, c_out)]


LCONV_GRIDS = {(14, 7), (14, 14), (14, 16), (16, 16), (14, 64), (16, 64)}  # (student side, target side)


def lconv_supported(source: Shape, target: Shape) -> bool:
    """Whether the reference light-conv head exists for this (student grid, target grid)."""
    _, h, w = source
    _, ht, wt = target
    return h == w and ht == wt and (h, ht) in LCONV_GRIDS


def lconv_head(source: Shape, target: Shape, hidden_factor: float = 1.0, hidden: int | None = None) -> TranslatorHead:
    """The reference light-conv head (module indices as upstream, so its strict load passes)."""
    if not lconv_supported(source, target):
        raise ValueError(f"the lconv translator maps a square student grid to a target grid in "
                         f"{sorted(LCONV_GRIDS)} (student side, target side); got {source[1]}x{source[2]} -> "
                         f"{target[1]}x{target[2]}. Use translator=auto or general.")
    c, h, w = source
    c_t, side = target[0], target[1]
    hidden = int(c * hidden_factor) if hidden is None else int(hidden)
    grows = h == 14 and side in (16, 64)
    pad = [TokensToMap(h, w)] + ([nn.ConvTranspose2d(c, c, 3, stride=1)] if grows else [])
    if side == 7:
        adapter = [MapLayerNorm((c, h, w)), nn.Conv2d(c, hidden, 4, stride=2, padding=1), nn.ReLU(),
                   MapLayerNorm((hidden, 7, 7)), MapToTokens(), nn.Linear(hidden, c_t)]
    elif side == 64:
        adapter = [MapLayerNorm((c, 16, 16)), nn.ConvTranspose2d(c, hidden, 3, stride=2, padding=1), nn.ReLU(),
                   MapLayerNorm((hidden, 31, 31)), nn.ConvTranspose2d(hidden, hidden, 3, stride=2, output_padding=1),
                   nn.ReLU(), MapLayerNorm((hidden, 64, 64)), MapToTokens(), nn.Linear(hidden, c_t)]
    else:
        adapter = conv_body(c, hidden, (side, side), c_t)
    return TranslatorHead(nn.Sequential(*pad), nn.Sequential(*adapter), source, target, "lconv", hidden)


def general_head(source: Shape, target: Shape, hidden_factor: float = 1.0, hidden: int | None = None) -> TranslatorHead:
    """Any student grid to any target grid: LN, bilinear resample, then the light-conv body."""
    c, h, w = source
    c_t, ht, wt = target
    hidden = int(c * hidden_factor) if hidden is None else int(hidden)
    body = conv_body(c, hidden, (ht, wt), c_t)
    adapter = [MapLayerNorm((c, h, w)), Resample(ht, wt), *body[1:]]
    return TranslatorHead(nn.Sequential(TokensToMap(h, w)), nn.Sequential(*adapter), source, target, "general", hidden)


def auto_head(source: Shape, target: Shape, hidden_factor: float = 1.0, hidden: int | None = None) -> TranslatorHead:
    """lconv where the reference defines it, general elsewhere."""
    build = lconv_head if lconv_supported(source, target) else general_head
    return build(source, target, hidden_factor, hidden)


HEAD_BUILDERS = {"auto": auto_head, "lconv": lconv_head, "general": general_head}


def build_head(kind: str, source: Shape, target: Shape, hidden_factor: float = 1.0,
               hidden: int | None = None) -> TranslatorHead:
    if kind not in HEAD_BUILDERS:
        raise ValueError(f"unknown translator '{kind}'; use one of {sorted(HEAD_BUILDERS)}.")
    return HEAD_BUILDERS[kind](tuple(source), tuple(target), hidden_factor, hidden)


def module_name(teacher_id: str) -> str:
    """A teacher id as a module name ('.' -> '_', as the reference does)."""
    return teacher_id.replace(".", "_")


class Translator(nn.Module):
    """One head per teacher; parameters under translator_heads.<teacher id>.* (the official layout)."""

    def __init__(self, heads: dict):
        super().__init__()
        self.translator_heads = nn.ModuleDict({module_name(t): h for t, h in heads.items()})

    def forward(self, tokens: torch.Tensor, names: list | None = None) -> dict:
        names = list(self.translator_heads) if names is None else [module_name(n) for n in names]
        return {n: self.translator_heads[n](tokens) for n in names}


# --- the student backbone: a plain ViT under transformers-4 ViTModel parameter names ------------------
class PatchEmbeddings(nn.Module):
    def __init__(self, width: int, patch: int, channels: int = 3):
        super().__init__()
        self.projection = nn.Conv2d(channels, width, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self, width: int, patch: int, image_size: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position_embeddings = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, width))
        self.patch_embeddings = PatchEmbeddings(width, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embeddings(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.position_embeddings


class Linear(nn.Module):
    """A holder named like transformers-4's ViT{Self,}Output / Intermediate: `.dense`."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.dense = nn.Linear(c_in, c_out)


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return out.transpose(1, 2).reshape(b, n, c)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attention = SelfAttention(width, heads)
        self.output = Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output.dense(self.attention(x))


ACTIVATIONS = {"gelu": lambda x: F.gelu(x), "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "relu": F.relu}


class Layer(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int, eps: float, act: str):
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act '{act}'; this modeling code knows {sorted(ACTIVATIONS)}.")
        self.act = act
        self.attention = Attention(width, heads)
        self.intermediate = Linear(width, mlp)
        self.output = Linear(mlp, width)
        self.layernorm_before = nn.LayerNorm(width, eps=eps)
        self.layernorm_after = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output.dense(ACTIVATIONS[self.act](self.intermediate.dense(self.layernorm_after(x))))


class Encoder(nn.Module):
    def __init__(self, config: "TheiaConfig"):
        super().__init__()
        self.layer = nn.ModuleList(
            Layer(config.hidden_size, config.num_attention_heads, config.intermediate_size, config.layer_norm_eps,
                  config.hidden_act) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class ViT(nn.Module):
    """pixel values (B, 3, S, S) -> last hidden state (B, 1 + (S/p)^2, C) after the final LayerNorm."""

    def __init__(self, config: "TheiaConfig"):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not divisible by num_attention_heads "
                             f"{config.num_attention_heads}.")
        self.embeddings = Embeddings(config.hidden_size, config.patch_size, config.image_size)
        self.encoder = Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.encoder(self.embeddings(pixel_values)))


class Backbone(nn.Module):
    """Holds the ViT as `.model`, as the reference's DeiT wrapper does (names backbone.model.*)."""

    def __init__(self, config: "TheiaConfig"):
        super().__init__()
        self.model = ViT(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values)


# --- config and model -----------------------------------------------------------------------------------
class TheiaConfig(PretrainedConfig):
    """Architecture, translator heads and per-teacher feature statistics of a Theia student.

    translator_heads: {teacher id: {"kind": "lconv"|"general", "source": [C,h,w], "target": [C_t,H_t,W_t],
                       "hidden": int}}
    feature_stats:    {teacher id: {"mean": [C_t floats], "std": [C_t floats]}} (targets were standardized as
                       (t - mean) / max(std, min_std))
    feature_reduce_method: the default of forward_feature(feature_reduce=...): null | mean | max | cls
    """

    model_type = "theia"

    def __init__(self, hidden_size: int = 192, num_hidden_layers: int = 12, num_attention_heads: int = 3,
                 intermediate_size: int = 768, patch_size: int = 16, image_size: int = 224,
                 layer_norm_eps: float = 1e-12, hidden_act: str = "gelu", image_mean=(0.5, 0.5, 0.5),
                 image_std=(0.5, 0.5, 0.5), translator_heads: dict | None = None, feature_stats: dict | None = None,
                 min_std: float = 1e-4, feature_reduce_method: str | None = None, teacher_names: dict | None = None,
                 **kwargs: Any):
        self.hidden_size, self.num_hidden_layers = int(hidden_size), int(num_hidden_layers)
        self.num_attention_heads, self.intermediate_size = int(num_attention_heads), int(intermediate_size)
        self.patch_size, self.image_size = int(patch_size), int(image_size)
        self.layer_norm_eps, self.hidden_act = float(layer_norm_eps), hidden_act
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.translator_heads = dict(translator_heads or {})
        self.feature_stats = dict(feature_stats or {})
        self.min_std = float(min_std)
        self.feature_reduce_method = feature_reduce_method
        self.teacher_names = dict(teacher_names or {})
        super().__init__(**kwargs)


def as_image_batch(images: Any) -> torch.Tensor:
    """uint8 images (B,H,W,3) / (B,3,H,W) / (H,W,3), numpy or torch, or a list of same-size images -> (B,3,H,W)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("empty batch: pass at least one image.")
        items = [as_image_batch(im) for im in images]
        if len({tuple(t.shape[-2:]) for t in items}) > 1:
            raise ValueError("images of different sizes in one list; pass them one at a time or resize them first.")
        return torch.cat(items)
    if not isinstance(images, torch.Tensor):
        if hasattr(images, "convert") and hasattr(images, "size"):  # a PIL image
            images = images.convert("RGB")
        images = torch.as_tensor(images.__array__() if hasattr(images, "__array__") else images)
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 RGB in [0, 255], got dtype {images.dtype}; convert floats in [0, 1] "
                         "with (x * 255).round().clamp(0, 255).to(torch.uint8).")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"images must be (B,H,W,3) or (B,3,H,W); got shape {tuple(images.shape)}.")
    if images.shape[0] == 0:
        raise ValueError("empty batch: pass at least one image.")
    if images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise ValueError(f"images must have 3 RGB channels, got shape {tuple(images.shape)}.")
    return images


class TheiaModel(PreTrainedModel):
    """Theia student (ViT backbone) + translator heads: forward_feature, forward and teacher_features."""

    config_class = TheiaConfig
    base_model_prefix = "theia"
    main_input_name = "images"
    _no_split_modules = ["Layer"]

    def __init__(self, config: TheiaConfig):
        super().__init__(config)
        self.backbone = Backbone(config)
        heads = {tid: build_head(spec["kind"], spec["source"], spec["target"], hidden=spec["hidden"])
                 for tid, spec in config.translator_heads.items()}
        self.translator = Translator(heads)
        self.teacher_ids = list(config.translator_heads)
        self._extra_stats: dict = {}
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Truncated-normal init for fresh (never loaded) weights, as ViT does."""
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, MapLayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, Embeddings):
            nn.init.trunc_normal_(module.cls_token, std=0.02)
            nn.init.trunc_normal_(module.position_embeddings, std=0.02)

    # --- inputs ---------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple:
        side = self.config.image_size // self.config.patch_size
        return side, side

    def preprocess(self, images: Any) -> torch.Tensor:
        """uint8 images -> squash-resized to image_size (bilinear, antialiased), [0, 1], (x - mean) / std."""
        x = as_image_batch(images).to(self.device, torch.float32)
        size = (self.config.image_size, self.config.image_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.config.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, device=x.device).view(1, 3, 1, 1)
        return ((x / 255.0 - mean) / std).to(self.dtype)

    def hidden_states(self, images: Any) -> torch.Tensor:
        """The last hidden state (B, 1 + h*w, C): [CLS] then the spatial tokens."""
        return self.backbone(self.preprocess(images))

    # --- outputs --------------------------------------------------------------------------------
    def forward_feature(self, images: Any, feature_reduce: str | None = "default") -> torch.Tensor:
        """The representation: tokens (B, h*w, C) for feature_reduce=None, or (B, C) for mean | max | cls.

        'default' uses config.feature_reduce_method (set it with from_pretrained(..., feature_reduce_method=...));
        upstream names (mean_pooling, max_pooling, identity = the whole hidden state) are accepted too."""
        method = self.config.feature_reduce_method if feature_reduce == "default" else feature_reduce
        if method not in FEATURE_REDUCE_ALIASES:
            raise ValueError(f"unknown feature_reduce {method!r}; use None (tokens), 'mean', 'max' or 'cls'.")
        hidden = self.hidden_states(images)
        method = FEATURE_REDUCE_ALIASES[method]
        if method == "identity":
            return hidden
        if method == "cls":
            return hidden[:, 0]
        tokens = hidden[:, 1:]
        if method == "mean":
            return tokens.mean(dim=1)
        if method == "max":
            return tokens.amax(dim=1)
        return tokens

    def forward(self, images: Any, target_model_names: list | None = None) -> dict:
        """{teacher id: predicted standardized features (B, h_t*w_t, C_t)}, as the translators output them."""
        tokens = self.hidden_states(images)[:, 1:]
        names = self.teacher_ids if target_model_names is None else list(target_model_names)
        unknown = [n for n in names if n not in self.teacher_ids]
        if unknown:
            raise ValueError(f"unknown teacher(s) {unknown}; this student predicts {self.teacher_ids}.")
        out = self.translator(tokens, names)
        return {n: out[module_name(n)] for n in names}

    def set_feature_stats(self, stats: dict) -> None:
        """Per-teacher {"mean": ..., "std": ...} (lists or tensors) used by teacher_features, e.g. from files."""
        for tid, s in stats.items():
            self._extra_stats[tid] = {"mean": torch.as_tensor(s["mean"], dtype=torch.float32).flatten(),
                                      "std": torch.as_tensor(s["std"], dtype=torch.float32).flatten()}

    def feature_stats(self, teacher_id: str) -> tuple:
        """(mean, std floored at min_std) of a teacher, float32 on the CPU."""
        s = self._extra_stats.get(teacher_id) or self.config.feature_stats.get(teacher_id)
        if s is None:
            raise ValueError(
                f"no feature statistics for teacher '{teacher_id}': this checkpoint carries none. Pass them with "
                "theia_eval.load_theia(source, stats=DIR) (a directory with <prefix>_mean_<id>.npy and "
                "<prefix>_var_<id>.npy per teacher, '/' in ids written as '_', e.g. the reference's feature_stats/), "
                "or model.set_feature_stats({teacher id: {'mean': ..., 'std': ...}}).")
        mean = torch.as_tensor(s["mean"], dtype=torch.float32).flatten()
        std = torch.as_tensor(s["std"], dtype=torch.float32).flatten().clamp_min(self.config.min_std)
        channels = self.config.translator_heads[teacher_id]["target"][0]
        if mean.numel() != channels or std.numel() != channels:
            raise ValueError(f"feature statistics of teacher '{teacher_id}' hold {mean.numel()} channels, but its "
                             f"head predicts {channels}; they belong to another teacher.")
        return mean, std

    def teacher_features(self, images: Any, target_model_names: list | None = None) -> dict:
        """{teacher id: predicted features in the teacher's own scale, (B, h_t, w_t, C_t)} (its own output shape)."""
        names = self.teacher_ids if target_model_names is None else list(target_model_names)
        stats = {n: self.feature_stats(n) for n in names}  # fail before the forward pass
        preds = self.forward(images, names)
        out = {}
        for n, pred in preds.items():
            mean, std = (t.to(pred.device, pred.dtype) for t in stats[n])
            c, h, w = self.config.translator_heads[n]["target"]
            out[n] = (pred * std + mean).reshape(pred.shape[0], h, w, c)
        return out
