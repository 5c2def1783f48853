"""Encoder registry: entries registered by decorator, created by name, listed by pattern.

Besides the registered entries, a name can be resolved on demand: `scheme:spec` names (hf:, timm:, py:;
see byo_hf.py, byo_timm.py, plugins.py) and encoders that installed packages add through the
`theia_eval.encoders` entry-point group. Their facts are worked out when first asked (byo.py).
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import torch

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.weights import parse_weights
from theia_eval.errors import InputError, UnknownNameError, unknown_name
from theia_eval.registry import Registry

Builder = Callable[..., FrozenEncoder]


@dataclass(frozen=True)
class RegistryEntry:
    config: EncoderConfig
    builder: Builder

    def build(self, weights: str | None = None, **kwargs) -> FrozenEncoder:
        return self.builder(self.config, weights=weights, **kwargs)


class ResolvedEntry:
    """An encoder resolved from its name (a scheme name or an installed plugin): facts computed when first read."""

    def __init__(self, name: str, describe: Callable[[], EncoderConfig], builder: Builder):
        self.name, self._describe, self._builder = name, describe, builder

    @cached_property
    def config(self) -> EncoderConfig:
        return self._describe()

    def build(self, weights: str | None = None, **kwargs) -> FrozenEncoder:
        """builder(weights=..., device=..., dtype=..., **kwargs); the built encoder carries its own facts."""
        return self._builder(weights=weights, **kwargs)


Resolver = Callable[[str], ResolvedEntry]  # the full name ("hf:owner/name") -> entry


@dataclass(frozen=True)
class NameSource:
    """Encoder names that are not registered entries: installed plugins (listed) or a scheme (never listed)."""

    names: Callable[[], Iterable[str]]
    resolve: Resolver


_REGISTRY: Registry[RegistryEntry] = Registry("encoder")
_SCHEMES: Registry[Resolver] = Registry("encoder scheme")  # "hf" -> resolver of "hf:..."
_SOURCES: list[NameSource] = []
SCHEME_HELP = "hf:<hub id or save_pretrained directory>, timm:<model name>, py:<module>:<callable>"


def register_encoder(config: EncoderConfig) -> Callable[[Builder], Builder]:
    """Register `builder(config, weights, device, dtype, **kwargs) -> FrozenEncoder` under config.name."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY.add(config.name, RegistryEntry(config, builder))
        return builder

    return wrap


def register_scheme(scheme: str, resolver: Resolver) -> None:
    """Resolve names `scheme:...` with `resolver(name)`."""
    _SCHEMES.add(scheme, resolver)


def register_name_source(source: NameSource) -> None:
    """Add names (e.g. the encoders of installed plugins) that list_encoders shows and get_entry resolves."""
    _SOURCES.append(source)


def scheme_of(name: str) -> str | None:
    """The registered scheme a name starts with ('hf' for 'hf:owner/name'), else None."""
    scheme, sep, _ = name.partition(":")
    return scheme if sep and scheme in _SCHEMES else None


def source_names() -> dict[str, NameSource]:
    """Names given by the name sources (installed plugins), each with its source; a plugin name that is also a
    built-in name is an error."""
    found: dict[str, NameSource] = {}
    for source in _SOURCES:
        for name in source.names():
            if name in _REGISTRY:
                raise InputError(f"an installed plugin adds the encoder '{name}', which is a built-in name; rename "
                                 "its entry point (group theia_eval.encoders) or uninstall the package.")
            found[name] = source
    return found


def is_encoder(name: str) -> bool:
    """Whether a name can be resolved: a registered entry, a scheme name or an installed plugin (checked no further)."""
    return name in _REGISTRY or scheme_of(name) is not None or name in source_names()


def get_entry(name: str) -> RegistryEntry | ResolvedEntry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    scheme = scheme_of(name)
    if scheme is not None:
        return _SCHEMES[scheme](name)
    sources = source_names()
    if name in sources:
        return sources[name].resolve(name)
    exc = unknown_name("encoder", name, [*_REGISTRY, *sources])
    raise UnknownNameError(f"{exc} Any vision model also works by name: {SCHEME_HELP}.")


def get_encoder_config(name: str) -> EncoderConfig:
    """The config of an encoder (no model is built for registry entries; scheme and plugin encoders work out
    their facts on first use and cache them)."""
    return get_entry(name).config


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered and plugin encoder names matching a shell-style pattern, sorted."""
    return sorted(n for n in [*_REGISTRY, *source_names()] if fnmatch.fnmatch(n, pattern))


def create_encoder(name: str, weights: str | None = None, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype = "float32", **kwargs) -> FrozenEncoder:
    """Build a frozen encoder.

    name: a registry entry, an installed plugin, or hf:<hub id or directory> / timm:<model> / py:<module>:<callable>.
    weights: None (the entry's default source, offline), "random" (seeded random init, only
    when asked), a local path (file or directory in the upstream format) or a hub id.
    """
    parse_weights(weights)  # a malformed value fails here, the same way for every entry
    return get_entry(name).build(weights=weights, device=device, dtype=dtype, **kwargs)
