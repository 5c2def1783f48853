"""Encoder registry: entries registered by decorator, created by name, listed by pattern."""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

import torch

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.errors import unknown_name

Builder = Callable[..., FrozenEncoder]


@dataclass(frozen=True)
class RegistryEntry:
    config: EncoderConfig
    builder: Builder


_REGISTRY: dict[str, RegistryEntry] = {}


def register_encoder(config: EncoderConfig) -> Callable[[Builder], Builder]:
    """Register `builder(config, weights, device, dtype, **kwargs) -> FrozenEncoder` under config.name."""

    def wrap(builder: Builder) -> Builder:
        if config.name in _REGISTRY:
            raise ValueError(f"encoder '{config.name}' is registered twice")
        _REGISTRY[config.name] = RegistryEntry(config, builder)
        return builder

    return wrap


def get_entry(name: str) -> RegistryEntry:
    if name not in _REGISTRY:
        raise unknown_name("encoder", name, _REGISTRY)
    return _REGISTRY[name]


def get_encoder_config(name: str) -> EncoderConfig:
    """The config of a registry entry (no model is built)."""
    return get_entry(name).config


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered encoder names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_encoder(name: str, weights: str | None = None, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype = "float32", **kwargs) -> FrozenEncoder:
    """Build a frozen encoder.

    weights: None (the entry's default source, offline), "random" (seeded random init, only
    when asked), a local path (file or directory in the upstream format) or a hub id.
    """
    entry = get_entry(name)
    return entry.builder(entry.config, weights=weights, device=device, dtype=dtype, **kwargs)
