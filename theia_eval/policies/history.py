"""History fusion: T frames of embeddings -> one policy input ("flare" deltas or plain "stack").

Conventions used everywhere in theia_eval.policies:
- a window holds T frames oldest first, on axis 1: (B, T, C) for summary vectors or
  (B, T, h, w, C) for token maps;
- fusion concatenates on the LAST (feature/channel) axis, frame-major: the result is (B, T*C) or
  (B, h, w, T*C) whose channel k*C + c comes from part k;
- at an episode start the window is padded with copies of the first frame (CortexBench), so the
  first FLARE input is [0, 0, e_0].

Two ways to build windows, which agree exactly (tests check it):
- offline (training): `window_indices(lengths, T)` gives, for every frame of every demo, the T row
  indices into the flat per-frame embedding array; `gather_windows` reads only those rows;
- online (evaluation): `HistoryBuffer` keeps the last T frames of N parallel envs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from theia_eval.errors import InputError
from theia_eval.registry import Registry

Array = torch.Tensor | np.ndarray
FusionFn = Callable[[list[Array]], list[Array]]


@dataclass(frozen=True)
class Fusion:
    """A registered fusion: `parts(frames)` turns T frames (oldest first) into T parts to concatenate."""

    name: str
    parts: FusionFn
    doc: str


_FUSIONS: Registry[Fusion] = Registry("history fusion")


def register_fusion(name: str, doc: str) -> Callable[[FusionFn], FusionFn]:
    """Register `parts(list of T frames) -> list of T arrays` under `name`."""

    def wrap(fn: FusionFn) -> FusionFn:
        _FUSIONS.add(name, Fusion(name, fn, doc))
        return fn

    return wrap


@register_fusion("flare", "[e1-e0, ..., e_{T-1}-e_{T-2}, e_{T-1}]: consecutive deltas, then the newest frame")
def _flare_parts(frames: list[Array]) -> list[Array]:
    return [b - a for a, b in zip(frames[:-1], frames[1:])] + [frames[-1]]


@register_fusion("stack", "[e0, e1, ..., e_{T-1}]: the frames themselves, oldest first")
def _stack_parts(frames: list[Array]) -> list[Array]:
    return list(frames)


def get_fusion(name: str) -> Fusion:
    return _FUSIONS.get_entry(name)


def list_fusions() -> list[str]:
    return _FUSIONS.names()


def fused_dim(name: str, dim: int, history: int) -> int:
    """Feature size after fusing `history` frames of size `dim` (both fusions keep T*dim)."""
    get_fusion(name)
    return dim * history


def fuse(frames: Array, name: str = "flare") -> Array:
    """(B, T, ..., C) window, oldest first -> (B, ..., T*C), concatenated on the last axis."""
    if frames.ndim < 3:
        raise InputError(f"fuse expects a window (B, T, ..., C) with a frame axis 1; got shape {tuple(frames.shape)}.")
    split = [frames[:, k] for k in range(frames.shape[1])]
    parts = get_fusion(name).parts(split)
    return torch.cat(parts, dim=-1) if isinstance(frames, torch.Tensor) else np.concatenate(parts, axis=-1)


def window_indices(lengths: Sequence[int], history: int, offsets: Sequence[int] | None = None) -> np.ndarray:
    """(sum(lengths), T) int64 rows of the T-frame window of every frame, oldest first.

    Episode e covers rows offsets[e] .. offsets[e] + lengths[e] - 1 (offsets default to the running
    sum of lengths); windows never cross an episode start: earlier slots repeat the first frame.
    """
    if history < 1:
        raise InputError(f"history must be >= 1 frame, got {history}.")
    lengths = [int(n) for n in lengths]
    if offsets is None:
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if lengths else []
    lag = np.arange(-history + 1, 1, dtype=np.int64)
    blocks = [np.clip(np.arange(n, dtype=np.int64)[:, None] + lag, 0, None) + int(o) for n, o in zip(lengths, offsets)]
    return np.concatenate(blocks) if blocks else np.zeros((0, history), np.int64)


def gather_windows(embeddings: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Read the (B, T) rows of `windows` from a (N, ...) array or memmap -> float32 (B, T, ...).

    Each distinct row is read once, in increasing order (friendly to memory-mapped files).
    """
    rows, inverse = np.unique(windows.reshape(-1), return_inverse=True)
    block = torch.from_numpy(np.ascontiguousarray(embeddings[rows]))  # stored dtype (float16 caches)
    out = block.index_select(0, torch.from_numpy(inverse.reshape(-1))).to(torch.float32)  # multi-threaded
    return out.reshape(*windows.shape, *embeddings.shape[1:]).numpy()


class HistoryBuffer:
    """The last T embeddings of N parallel envs, fused on every push (for closed-loop evaluation).

    Usage per step: `fused = buf.push(emb)` with emb (N, C) or (N, h, w, C) for all N envs; call
    `buf.reset(ids)` when those envs start a new episode (all envs start reset). The first push after
    a reset fills that env's T slots with copies of its frame, as the offline windows do.
    Push embeddings rounded like the training cache (`cache.match_cache_precision`) so that the
    fused inputs equal the training windows exactly.
    """

    def __init__(self, num_envs: int, history: int = 3, fusion: str = "flare"):
        if num_envs < 1 or history < 1:
            raise InputError(f"HistoryBuffer needs num_envs >= 1 and history >= 1; got {num_envs}, {history}.")
        get_fusion(fusion)
        self.num_envs, self.history, self.fusion = int(num_envs), int(history), fusion
        self._frames: torch.Tensor | None = None  # (N, T, ...)
        self._fresh = torch.ones(self.num_envs, dtype=torch.bool)

    def reset(self, env_ids: Sequence[int] | torch.Tensor | None = None) -> None:
        """Mark envs (all when None) as starting a new episode."""
        if env_ids is None:
            self._fresh[:] = True
        else:
            self._fresh[torch.as_tensor(env_ids, dtype=torch.long)] = True

    @property
    def frames(self) -> torch.Tensor:
        """The current (N, T, ...) window, oldest first."""
        if self._frames is None:
            raise InputError("HistoryBuffer is empty: push the first frame of the episode before reading it.")
        return self._frames

    def push(self, embedding: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Add one frame per env and return the fused window (N, ..., T*C)."""
        x = torch.as_tensor(embedding)
        if x.shape[0] != self.num_envs:
            raise InputError(f"HistoryBuffer holds {self.num_envs} envs but got a batch of {x.shape[0]} embeddings.")
        if self._frames is not None and x.shape[1:] != self._frames.shape[2:]:
            raise InputError(f"embedding shape {tuple(x.shape[1:])} differs from earlier pushes "
                             f"{tuple(self._frames.shape[2:])}; use one HistoryBuffer per encoder output.")
        copies = x.unsqueeze(1).expand(-1, self.history, *x.shape[1:])
        if self._frames is None:
            self._frames = copies.clone()
        else:
            rolled = torch.cat([self._frames[:, 1:], x.unsqueeze(1).to(self._frames)], dim=1)
            fresh = self._fresh.to(x.device).view(-1, *([1] * (x.ndim)))
            self._frames = torch.where(fresh, copies.to(rolled), rolled)
        self._fresh[:] = False
        return fuse(self._frames, self.fusion)
