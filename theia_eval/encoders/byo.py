"""Bring-your-own encoders (hf:, timm:, py: names and plugins): the facts cache, token read-out and probing.

A model that no registry entry describes gets its facts (token grid, widths, parameters, GFLOPs, preprocessing)
from one forward of a zero image at its native input size, on the meta device where it can (no weights, no
memory), else on the CPU. The facts are kept in a small JSON file per model under the user cache directory
(`facts_dir()`), keyed by a hash of what decides them (its config files and the library version), so they are
worked out once per model and read back by `theia-eval encoders`, sweeps and leaderboards without building it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from theia_eval.encoders.base import EncoderConfig
from theia_eval.encoders.images import Preprocess
from theia_eval.errors import CheckpointMismatchError, WeightsNotFoundError

FACTS_FORMAT = 1  # bump when the facts of a model would be worked out differently
# EncoderConfig fields that name where a model came from rather than what it is: never read from the cache
IDENTITY_FIELDS = ("name", "source", "hub_id", "offline", "license")


# --- the facts cache -------------------------------------------------------------------------------

def facts_dir() -> Path:
    """$THEIA_EVAL_CACHE/encoder_facts, else $XDG_CACHE_HOME/theia_eval/encoder_facts (~/.cache by default)."""
    root = os.environ.get("THEIA_EVAL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "theia_eval"
    return Path(root).expanduser() / "encoder_facts"


def facts_key(kind: str, ident: dict[str, Any]) -> str:
    """sha256 (24 hex digits) of the canonical JSON of what decides a model's facts."""
    text = json.dumps({"format": FACTS_FORMAT, "kind": kind, **ident}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def config_to_json(config: EncoderConfig) -> dict[str, Any]:
    return {**dataclasses.asdict(config), "preprocess": dataclasses.asdict(config.preprocess)}


def config_from_json(data: dict[str, Any]) -> EncoderConfig:
    pre = dict(data["preprocess"])
    pre.update(mean=tuple(pre["mean"]), std=tuple(pre["std"]))
    return EncoderConfig(**{**data, "grid": tuple(data["grid"]), "preprocess": Preprocess(**pre)})


_MEMO: dict[str, EncoderConfig] = {}


def cached_facts(key: str, compute: Callable[[], EncoderConfig], **identity: Any) -> EncoderConfig:
    """The facts stored under `key` (computed and written on first use), with the identity fields given."""
    if key not in _MEMO:
        path = facts_dir() / f"{key}.json"
        config = None
        if path.is_file():
            try:
                config = config_from_json(json.loads(path.read_text()))
            except (ValueError, TypeError, KeyError):  # damaged or of an older layout: work the facts out again
                config = None
        if config is None:
            from theia_eval.io import atomic_write_json

            config = compute()
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, config_to_json(config))
        _MEMO[key] = config
    return dataclasses.replace(_MEMO[key], **identity)


# --- token read-out ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenLayout:
    """Where a backbone's output keeps its spatial tokens: a channels-first ('nchw') or channels-last ('nhwc')
    map, or an 'nlc' sequence of `prefix` special tokens (CLS, registers, distillation) then h*w patch tokens."""

    kind: str
    grid: tuple[int, int]
    prefix: int = 0

    def tokens(self, out: torch.Tensor) -> torch.Tensor:
        """(B, h, w, C) spatial tokens of one output."""
        h, w = self.grid
        if self.kind == "nchw":
            return out.permute(0, 2, 3, 1)
        if self.kind == "nhwc":
            return out
        return out[:, self.prefix:].reshape(out.shape[0], h, w, out.shape[-1])

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "grid": list(self.grid), "prefix": self.prefix}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLayout:
        return cls(data["kind"], tuple(data["grid"]), int(data["prefix"]))


def map_layout(shape: tuple[int, ...], channels_last: bool) -> TokenLayout:
    """The layout of a 4-d feature map (B,C,h,w) or (B,h,w,C)."""
    return TokenLayout("nhwc", (shape[1], shape[2])) if channels_last else TokenLayout("nchw", (shape[2], shape[3]))


def sequence_layout(length: int, side: int, patch: int | None, prefix: int | None, what: str) -> TokenLayout:
    """The layout of a (B, N, C) sequence at a square input of `side` px.

    prefix known (timm's num_prefix_tokens): the rest is a square grid. Else, with a patch size whose grid fits
    in N (ViT-like), the special tokens are what is left; else (hierarchical models such as Swin, no special
    tokens) N must be a square.
    """
    if prefix is None and patch:
        g = side // patch
        if 0 < g * g <= length < 2 * g * g:
            return TokenLayout("nlc", (g, g), length - g * g)
    rest = length - (prefix or 0)
    g = math.isqrt(max(rest, 0))
    if g == 0 or g * g != rest:
        raise CheckpointMismatchError(
            f"{what}: its output is a sequence of {length} tokens at {side} px, which is not a square grid of patch "
            f"tokens after {prefix or 0} special token(s); the token grid cannot be told. Use a model whose last "
            "hidden state is a patch sequence or a feature map, or wrap it in a plugin (py:module:callable).")
    return TokenLayout("nlc", (g, g), prefix or 0)


# --- probing a model -----------------------------------------------------------------------------------

def count_params_m(model: nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 4)


def significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def probe(build: Callable[[], nn.Module], run: Callable[[nn.Module, torch.Tensor], Any],
          side: int) -> tuple[nn.Module, Any, float]:
    """Build a model and run it on one zero image of `side` px, counting FLOPs (multiply-add = 2): on the meta
    device (no weights, no memory) and on the CPU when an operation has no meta kernel.
    Returns (model, outputs, GFLOPs)."""
    try:
        with torch.device("meta"):
            model = build()
        return (model, *counted(model, run, torch.zeros(1, 3, side, side, device="meta")))
    except (NotImplementedError, RuntimeError):
        from theia_eval.encoders.weights import seeded_init

        with seeded_init(0):  # a throwaway random init that leaves the global RNG alone
            model = build()
        return (model, *counted(model, run, torch.zeros(1, 3, side, side)))


def counted(model: nn.Module, run: Callable[[nn.Module, torch.Tensor], Any], x: torch.Tensor) -> tuple[Any, float]:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = run(model.eval(), x)
    return out, significant(counter.get_total_flops() / 1e9)


# --- where checkpoints are -----------------------------------------------------------------------------

def looks_like_path(spec: str) -> bool:
    """A path rather than a hub id (owner/name)."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1


def hub_snapshot(repo_id: str, what: str) -> Path:
    """A hub repository's snapshot directory from the local Hugging Face cache (downloaded only when
    HF_HUB_OFFLINE=0 is set explicitly)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    allow_download = os.environ.get("HF_HUB_OFFLINE", "") == "0"
    try:
        return Path(snapshot_download(repo_id, local_files_only=not allow_download))
    except HFValidationError as exc:
        raise WeightsNotFoundError(f"{what}: '{repo_id}' is neither an existing directory nor a valid hub id "
                                   "(owner/name). Pass a save_pretrained directory or a hub id.") from exc
    except (LocalEntryNotFoundError, OSError) as exc:
        from huggingface_hub import constants

        raise WeightsNotFoundError(
            f"{what}: '{repo_id}' is not an existing directory, and the hub id is not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} (nothing is downloaded unless HF_HUB_OFFLINE=0). Download it on a machine "
            f"with network (`huggingface-cli download {repo_id}`) and copy HF_HOME, pass a local directory, or set "
            "HF_HUB_OFFLINE=0 where the hub is reachable.") from exc


def readme_license(folder: Path) -> str:
    """The `license:` of a model card's front matter (README.md), or 'see model card'."""
    readme = folder / "README.md"
    if readme.is_file():
        match = re.search(r"^license:\s*([^\s#]+)", readme.read_text(errors="replace")[:4000], re.MULTILINE)
        if match:
            return match.group(1).strip("'\"")
    return "see model card"
