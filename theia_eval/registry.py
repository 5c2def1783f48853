"""One small registry helper for every name -> entry table (encoders, encoder schemes, policy heads, history
fusions, render presets, ...): registering a taken name raises one error, DuplicateNameError, and looking up an
unknown name raises UnknownNameError with the closest valid names. A Registry is a dict, so `name in reg`,
iteration and `reg[name]` work as on the plain dicts it replaces."""
from __future__ import annotations

import fnmatch
from typing import TypeVar

from theia_eval.errors import DuplicateNameError, unknown_name

T = TypeVar("T")


class Registry(dict[str, T]):
    """Entries by name; `kind` names them in errors ("encoder", "policy head", ...)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under a new `name` (a taken name raises DuplicateNameError); returns the entry."""
        if name in self:
            raise DuplicateNameError(f"{self.kind} '{name}' is already registered: give the new one another name.")
        self[name] = entry
        return entry

    def get_entry(self, name: str) -> T:
        """The entry of `name`; an unknown name raises UnknownNameError listing the closest names."""
        if name not in self:
            raise unknown_name(self.kind, name, self)
        return self[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        return sorted(n for n in self if fnmatch.fnmatchcase(n, pattern))
