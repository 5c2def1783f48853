"""Exceptions with messages that say what went wrong and how to fix it."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class TheiaEvalError(Exception):
    """Base class of every error this package raises on purpose."""


class UnknownNameError(TheiaEvalError, KeyError):
    """A registry lookup for a name that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class WeightsNotFoundError(TheiaEvalError, FileNotFoundError):
    """Pretrained weights could not be found offline."""


class CheckpointMismatchError(TheiaEvalError, ValueError):
    """A checkpoint's keys or shapes do not match the model."""


class InputError(TheiaEvalError, ValueError):
    """Bad user input: images, configs, datasets."""


class DuplicateNameError(InputError):
    """A registry already holds an entry under that name (theia_eval.registry.Registry.add)."""


class TrainingError(TheiaEvalError, RuntimeError):
    """Training could not go on (e.g. a NaN/inf loss); the message names the epoch and step."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build an error for an unknown registry name, suggesting the closest valid ones."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listing = ", ".join(choices) if len(choices) <= 60 else f"{len(choices)} names"
    return UnknownNameError(f"unknown {kind} '{name}'.{hint} Valid {kind}s: {listing}.")
