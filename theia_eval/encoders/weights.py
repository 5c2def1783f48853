"""Resolving the `weights=` argument: "random", a local path, a hub id, or the entry's default source."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from theia_eval.encoders.base import EncoderConfig
from theia_eval.errors import CheckpointMismatchError, InputError, WeightsNotFoundError


@dataclass(frozen=True)
class Weights:
    """The `weights=` argument, parsed once: the entry's default (text None), a seeded random init ("random" is
    seed 0, "random:SEED"), or a source (a local path or a hub id)."""

    text: str | None
    seed: int | None = None  # set for a random init

    @property
    def random(self) -> bool:
        return self.seed is not None

    @property
    def default(self) -> bool:
        return self.text is None


def parse_weights(weights: str | Weights | None) -> Weights:
    """The one parser of `weights=` values; a malformed 'random:...' raises an InputError."""
    if isinstance(weights, Weights):
        return weights
    if weights is None:
        return Weights(None)
    text = str(weights)
    if text != "random" and not text.startswith("random:"):
        return Weights(text)
    try:
        return Weights(text, 0 if text == "random" else int(text.split(":", 1)[1]))
    except ValueError as exc:
        raise InputError(f"bad weights '{text}': use 'random' or 'random:<int seed>'.") from exc


class seeded_init:
    """Context manager: reproducible torch random init that leaves the global RNG state untouched."""

    def __init__(self, seed: int):
        self.seed = seed
        self._fork = torch.random.fork_rng(devices=[])

    def __enter__(self):
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def offline_hint(config: EncoderConfig) -> str:
    return (f"Supply weights with create_encoder('{config.name}', weights=PATH) (or weights=... on the CLI), "
            "pre-populate the Hugging Face cache (HF_HOME) on a machine with network, or set HF_HUB_OFFLINE=0 "
            "where the hub is reachable. For a control with random weights pass weights='random'.")


def hf_snapshot(config: EncoderConfig, weights: str | None) -> Path:
    """A local directory in HF save_pretrained layout for this entry: a path, or a hub id found in the cache
    (downloads only when HF_HUB_OFFLINE=0 is set explicitly)."""
    if weights is not None and Path(weights).expanduser().exists():
        return Path(weights).expanduser()
    repo_id = weights or config.hub_id or config.source
    if weights is not None and "/" not in weights:
        raise WeightsNotFoundError(f"weights '{weights}' for {config.name} is neither an existing path nor a hub id "
                                   f"(owner/name). {offline_hint(config)}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    allow_download = os.environ.get("HF_HUB_OFFLINE", "") == "0"
    try:
        return Path(snapshot_download(repo_id, local_files_only=not allow_download))
    except HFValidationError as exc:
        raise WeightsNotFoundError(f"weights '{repo_id}' for {config.name}: no such file or directory, and not a "
                                   f"valid hub id (owner/name). {offline_hint(config)}") from exc
    except (LocalEntryNotFoundError, OSError) as exc:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise WeightsNotFoundError(
            f"weights for {config.name} not found offline: looked for hub id '{repo_id}' in the Hugging Face "
            f"cache {HF_HUB_CACHE}. {offline_hint(config)}") from exc


def require_file(config: EncoderConfig, weights: str | None, default: Path | None = None) -> Path:
    """A local checkpoint file for file-format entries (MAE .pth, R3M model.pt)."""
    path = Path(weights).expanduser() if weights else default
    if path is None or not path.exists():
        where = str(path) if path else "no default location (these weights are not distributed on a package index)"
        raise WeightsNotFoundError(
            f"weights for {config.name} not found: looked at {where}. Download {config.source} on a machine with "
            f"network and pass create_encoder('{config.name}', weights='/path/to/file'). "
            "For a control with random weights pass weights='random'.")
    return path


def check_state(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], what: str,
                hint: str = "Check that the checkpoint is for this encoder and size.") -> None:
    """Raise CheckpointMismatchError naming the first missing/unexpected key or the first shape mismatch."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        first = f"missing key '{missing[0]}'" if missing else f"unexpected key '{unexpected[0]}'"
        raise CheckpointMismatchError(
            f"{what}: checkpoint keys do not match the model ({len(missing)} missing, {len(unexpected)} unexpected; "
            f"first: {first}). {hint}")
    for k, shape in expected.items():
        if tuple(state[k].shape) != tuple(shape):
            raise CheckpointMismatchError(
                f"{what}: shape mismatch at key '{k}': checkpoint {tuple(state[k].shape)} vs model {tuple(shape)}. "
                f"{hint}")


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Strictly load a state dict, naming the first missing/unexpected key or shape mismatch."""
    check_state({k: tuple(v.shape) for k, v in module.state_dict().items()}, state, what)
    module.load_state_dict(state, strict=True)


def weights_available(config: EncoderConfig) -> bool:
    """Whether the entry's default weights can be loaded with no network (shipped, or in the HF cache)."""
    if config.offline:
        return True
    if not config.hub_id:
        return False
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(config.hub_id, "config.json")
    return isinstance(found, str)


WEIGHT_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".json")


def files_key(path: Path) -> str:
    """sha256 (16 hex digits) of a weights file, or of a directory's weight and config files (relative names and
    contents; checkpoints/ and optimizer state excluded). Portable: no machine path goes into it."""
    import hashlib

    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_FILE_SUFFIXES
        and "checkpoints" not in p.relative_to(path).parts)
    for f in files:
        digest.update(f.relative_to(path if path.is_dir() else path.parent).as_posix().encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def default_weights_key(config: EncoderConfig) -> str | None:
    """What identifies an entry's default weights when none are given: the hash of the shipped file named in
    `extra['weights_file']` (files_key), or None for entries whose defaults are named by their source alone
    (hub ids, no weights)."""
    path = config.extra.get("weights_file")
    if path is None or not Path(path).is_file():
        return None
    return files_key(Path(path))


def load_torch_file(config: EncoderConfig, path: Path, trust: bool = False) -> object:
    """torch.load a checkpoint on the CPU; tensors-only (weights_only) unless the caller trusts the file."""
    import argparse
    import pickle

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # MAE-style files keep their 'args'
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch's own text suggests weights_only=False: not shown
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointMismatchError(
            f"{config.name}: {path} holds Python objects besides tensors{what}, so it was not unpickled (unpickling "
            "can run code). Re-save only its tensors where the file comes from (torch.save(model.state_dict(), "
            "PATH) or safetensors) and pass that file.") from exc
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointMismatchError(f"{config.name}: could not read {path} as a torch checkpoint "
                                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); it is damaged or "
                                      "not a checkpoint (a text file?). Pass the checkpoint file.") from exc
