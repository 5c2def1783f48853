"""An encoder entry of a sweep or an entropy run: 'name' or {name, label?, weights?, heads?, families?}."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from theia_eval.config import to_plain
from theia_eval.errors import InputError


@dataclass(frozen=True)
class EncoderEntry:
    """An encoder of the sweep: a label (unique, shown on leaderboards), a registry name and weights."""

    label: str
    name: str
    weights: str | None = None
    student: str | None = None  # the distill-stage student whose export these weights are
    weights_key: str | None = None  # what identifies the weights in cell hashes
    heads: tuple[str, ...] | None = None  # this encoder's heads (None = the sweep's heads)
    families: tuple[str, ...] | None = None  # the task families it runs on (None = all of the sweep's)


ENTRY_KEYS = {"name", "label", "weights", "heads", "families"}


def folder_name(encoder: str) -> str:
    """An encoder name or label as one folder name: '/' -> '_' (hf:/models/vit -> hf:_models_vit; registry names
    have no '/' and are unchanged), so a hub id or a directory in the name does not nest run folders."""
    return encoder.replace("/", "_")


def entry_list(item: Mapping, key: str, example: str) -> tuple[str, ...] | None:
    """An optional non-empty list setting of an encoder entry."""
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise InputError(f"encoder entry {dict(item)!r}: {key} must be a non-empty list such as {example}.")
    return tuple(str(v) for v in value)


def parse_encoder(item: Any) -> EncoderEntry:
    """'name' or {name, label?, weights?, heads?, families?} -> EncoderEntry."""
    item = to_plain(item)
    if isinstance(item, str):
        item = {"name": item}
    if not (isinstance(item, Mapping) and "name" in item and set(item) <= ENTRY_KEYS):
        raise InputError(f"bad encoder entry {item!r} in the sweep: give a registry name or "
                         "{name, label?, weights?, heads?, families?}.")
    weights = None if item.get("weights") is None else str(item["weights"])
    return EncoderEntry(str(item.get("label") or item["name"]), str(item["name"]), weights, None, weights,
                        entry_list(item, "heads", "[conv] or [conv, mlp]"),
                        entry_list(item, "families", "[dmc] or [metaworld, adroit]"))
