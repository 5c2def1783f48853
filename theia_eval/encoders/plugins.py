"""Encoders from Python code: `py:<module>:<callable>` names and the `theia_eval.encoders` entry-point group.

A plugin is a callable that returns a model and its preprocessing, called as `fn(weights=...)` when it takes a
`weights` argument (else `fn()`, and then weights= must not be given):

    def build(weights=None):
        return model, Preprocess(resize=224, crop=224)          # or EncoderParts(model, preprocess, summary=...)

- model: an nn.Module mapping the preprocessed float batch (B,3,S,S) to (tokens (B,h,w,C), summary (B,C')): a
  tuple, a dict with keys tokens/summary or an object with those attributes (e.g. an EncoderOutput).
- preprocess: a `Preprocess` (or a dict of its fields) whose output is a fixed S x S square.

An installed package adds named encoders with an entry point per encoder in the group `theia_eval.encoders`
(pyproject.toml: [project.entry-points."theia_eval.encoders"] my-encoder = "my_pkg.encoders:build"); they are
listed by `theia-eval encoders` like registry entries. Facts (grid, widths, parameters, GFLOPs) come from one
forward of a zero image when the plugin is first built and are cached, keyed by its code and version (byo.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any
from collections.abc import Callable

import torch
from torch import nn

from theia_eval.encoders.base import EncoderConfig, FrozenEncoder
from theia_eval.encoders.byo import cached_facts, count_params_m, counted, facts_key
from theia_eval.encoders.images import Preprocess
from theia_eval.encoders.registry import NameSource, ResolvedEntry, register_name_source, register_scheme
from theia_eval.errors import InputError, TheiaEvalError

SCHEME = "py"
ENTRY_POINT_GROUP = "theia_eval.encoders"
CONTRACT = ("a plugin returns (model, preprocess) or EncoderParts; the model maps the preprocessed float batch "
            "(B,3,S,S) to (tokens (B,h,w,C), summary (B,C')) and preprocess is a Preprocess (or a dict of its "
            "fields) with a fixed square output size")
SUMMARY_KINDS = ("cls", "mean", "pooled")


@dataclass
class EncoderParts:
    """What a plugin returns: the model, its preprocessing and what its summary is."""

    model: nn.Module
    preprocess: Preprocess | Mapping
    summary: str = "pooled"  # cls, mean or pooled
    license: str = "see the plugin"
    notes: str = ""


@dataclass(frozen=True)
class Plugin:
    """A plugin callable: where it is ('module:callable') and what identifies its code (for the facts cache)."""

    name: str
    target: str
    load: Callable[[], Any]
    version: str | None = None

    def code_key(self) -> dict[str, Any]:
        module = self.target.split(":")[0]
        spec = importlib.util.find_spec(module) if module else None
        origin = Path(spec.origin) if spec is not None and spec.origin and Path(spec.origin).is_file() else None
        digest = hashlib.sha256(origin.read_bytes()).hexdigest()[:16] if origin else None
        return {"target": self.target, "version": self.version, "code": digest}

    def default_weights_id(self) -> str:
        """What identifies the weights a plugin builds by itself: its target and version or code hash (so embedding
        caches of an edited plugin are not reused)."""
        key = self.code_key()
        return f"{self.target}@{key['version'] or key['code']}"


# --- finding the callable ------------------------------------------------------------------------------

def import_target(name: str, target: str) -> Any:
    """The object named 'module:attr.path'."""
    module_name, sep, attr = target.partition(":")
    if not (sep and module_name and attr):
        raise InputError(f"encoder '{name}': '{target}' is not module:callable; use e.g. py:my_pkg.encoders:build.")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  (any import failure of user code is reported with its cause)
        raise InputError(f"encoder '{name}': could not import the plugin module '{module_name}' "
                         f"({type(exc).__name__}: {exc}). Install the package or put it on PYTHONPATH.") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"encoder '{name}': module '{module_name}' has no '{attr}'.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"encoder '{name}': '{target}' is a {type(obj).__name__}, not a callable; {CONTRACT}.")
    return obj


def installed_plugins() -> dict[str, metadata.EntryPoint]:
    """Entry points of the `theia_eval.encoders` group: encoder name -> entry point."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def entry_point_plugin(name: str) -> Plugin:
    ep = installed_plugins()[name]
    version = ep.dist.version if getattr(ep, "dist", None) is not None else None
    return Plugin(name, ep.value, partial(import_target, name, ep.value), version)


# --- calling it and checking what it returns ----------------------------------------------------------

def call_plugin(plugin: Plugin, weights: str | None) -> EncoderParts:
    fn = plugin.load()
    try:
        takes_weights = "weights" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_weights = True
    if weights is not None and not takes_weights:
        raise InputError(f"encoder '{plugin.name}': {plugin.target} takes no weights argument, so weights={weights} "
                         "cannot be passed; drop weights= or add a weights parameter to it.")
    try:
        result = fn(weights=weights) if takes_weights else fn()
    except TheiaEvalError:
        raise
    except Exception as exc:  # noqa: BLE001  (a failing plugin is reported with its cause)
        raise InputError(f"encoder '{plugin.name}': the plugin {plugin.target} raised {type(exc).__name__}: "
                         f"{exc}") from exc
    return as_parts(plugin, result)


def as_parts(plugin: Plugin, result: Any) -> EncoderParts:
    """A plugin's return value as EncoderParts, checked."""
    if isinstance(result, (tuple, list)) and len(result) == 2:
        result = EncoderParts(*result)
    if not isinstance(result, EncoderParts):
        raise InputError(f"encoder '{plugin.name}': {plugin.target} returned {type(result).__name__}; {CONTRACT}.")
    if not isinstance(result.model, nn.Module):
        raise InputError(f"encoder '{plugin.name}': {plugin.target} returned a {type(result.model).__name__} as the "
                         f"model, not a torch.nn.Module; {CONTRACT}.")
    if result.summary not in SUMMARY_KINDS:
        raise InputError(f"encoder '{plugin.name}': summary='{result.summary}'; use one of {SUMMARY_KINDS}.")
    pre = result.preprocess
    if isinstance(pre, Mapping):
        fields = {f.name for f in dataclasses.fields(Preprocess)}
        if set(pre) - fields:
            raise InputError(f"encoder '{plugin.name}': preprocess keys {sorted(set(pre) - fields)} are unknown; "
                             f"valid: {sorted(fields)}.")
        pre = Preprocess(**{"resize": None, "crop": None, **pre})
    if not isinstance(pre, Preprocess) or pre.output_size is None:
        raise InputError(f"encoder '{plugin.name}': its preprocess {result.preprocess!r} has no fixed output size "
                         f"(give a crop, or resize with squash=True); {CONTRACT}.")
    return dataclasses.replace(result, preprocess=dataclasses.replace(pre, mean=tuple(pre.mean), std=tuple(pre.std)))


def read_output(name: str, out: Any, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, summary) of a plugin model's output, checked: (B,h,w,C) and (B,C')."""
    if isinstance(out, Mapping):
        out = (out.get("tokens"), out.get("summary"))
    elif hasattr(out, "tokens") and hasattr(out, "summary"):
        out = (out.tokens, out.summary)
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise InputError(f"encoder '{name}': its model returned {describe_value(out)}; {CONTRACT}.")
    tokens, summary = out
    if tokens.ndim != 4 or summary.ndim != 2 or tokens.shape[0] != batch or summary.shape[0] != batch:
        raise InputError(f"encoder '{name}': its model returned tokens {tuple(tokens.shape)} and summary "
                         f"{tuple(summary.shape)} for a batch of {batch}; expected (B,h,w,C) and (B,C'). "
                         "Permute (B,C,h,w) maps to channels-last.")
    return tokens, summary


def describe_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


# --- facts and the encoder --------------------------------------------------------------------------------

def compute_facts(plugin: Plugin, parts: EncoderParts) -> EncoderConfig:
    side = parts.preprocess.output_size
    model = parts.model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        (tokens, summary), gflops = counted(model, lambda m, x: read_output(plugin.name, m(x), 1),
                                            torch.zeros(1, 3, side, side, device=device))
    except TheiaEvalError:
        raise
    except Exception as exc:  # noqa: BLE001  (a failing plugin model is reported with its cause)
        raise InputError(f"encoder '{plugin.name}': its model failed on a {side}x{side} input "
                         f"({type(exc).__name__}: {exc}); {CONTRACT}.") from exc
    return EncoderConfig(
        name="", family="plugin", architecture=f"{type(model).__name__} at {side} px (plugin {plugin.target})",
        params_m=count_params_m(model), gflops=gflops, input_size=side, grid=(tokens.shape[1], tokens.shape[2]),
        token_dim=int(tokens.shape[-1]), summary_dim=int(summary.shape[-1]), summary=parts.summary,
        preprocess=parts.preprocess, source="", license=parts.license, offline=True,
        notes=parts.notes or f"plugin {plugin.target}; facts from one forward at {side} px.")


def describe(plugin: Plugin, weights: str | None, parts: EncoderParts | None = None) -> EncoderConfig:
    """The plugin's facts (cached per code, version and weights; built only when not cached)."""
    key = facts_key("plugin", {**plugin.code_key(), "weights": weights})

    def compute() -> EncoderConfig:
        return compute_facts(plugin, parts or call_plugin(plugin, weights))

    source = f"py:{plugin.target}" + (f" ({plugin.version})" if plugin.version else "")
    return cached_facts(key, compute, name=plugin.name, source=source, hub_id=None, offline=True)


class PluginEncoder(FrozenEncoder):
    """A plugin's model behind the encoder contract."""

    def __init__(self, config: EncoderConfig, model: nn.Module, **kwargs):
        super().__init__(config, **kwargs)
        self.model = model

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return read_output(self.name, self.model(x), x.shape[0])


def build(plugin: Plugin, weights: str | None = None, device: str | torch.device = "cpu",
          dtype: str | torch.dtype = "float32", **kwargs) -> FrozenEncoder:
    parts = call_plugin(plugin, weights)
    config = describe(plugin, weights, parts)
    if config.preprocess != parts.preprocess:  # the plugin changed its preprocessing since the facts were cached
        config = dataclasses.replace(compute_facts(plugin, parts), **{k: getattr(config, k) for k in
                                                                      ("name", "source", "hub_id", "offline")})
    weights_id = str(weights) if weights is not None else plugin.default_weights_id()
    return PluginEncoder(config, parts.model, device=device, dtype=dtype, weights_id=weights_id, **kwargs).finalize()


def entry(plugin: Plugin) -> ResolvedEntry:
    return ResolvedEntry(plugin.name, partial(describe, plugin, None), partial(build, plugin))


def resolve_py(name: str) -> ResolvedEntry:
    """The entry of `py:<module>:<callable>` (the callable is imported now)."""
    target = name[len(SCHEME) + 1:]
    plugin = Plugin(name, target, partial(import_target, name, target))
    plugin.load()
    return entry(plugin)


register_scheme(SCHEME, resolve_py)
register_name_source(NameSource(lambda: installed_plugins().keys(), lambda name: entry(entry_point_plugin(name))))
