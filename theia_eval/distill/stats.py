"""Per-channel target statistics in one pass, in float64, mergeable across shards and processes.

Saved as <dir>/<teacher id>.stats.safetensors with tensors `mean` and `std` (the population standard
deviation, not the variance: the reference's "*var*.npy" files hold the std under a misleading name),
plus `m2` and `count` so partial statistics can be merged exactly.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from theia_eval.errors import InputError

STATS_SUFFIX = ".stats.safetensors"


@dataclass
class RunningStats:
    """count, mean and sum of squared deviations (m2) per channel, float64 (Chan et al. merge)."""

    count: int
    mean: torch.Tensor
    m2: torch.Tensor

    @classmethod
    def empty(cls, dim: int) -> "RunningStats":
        return cls(0, torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64))

    def update(self, targets: torch.Tensor) -> None:
        """Add targets (..., C): every token of every image is one observation per channel."""
        x = targets.detach().reshape(-1, targets.shape[-1]).to("cpu", torch.float64)
        if x.shape[-1] != self.mean.numel():
            raise InputError(f"stats for {self.mean.numel()} channels got targets with {x.shape[-1]} channels.")
        n = x.shape[0]
        if n:
            mean = x.mean(0)
            self.merge(RunningStats(n, mean, ((x - mean) ** 2).sum(0)))

    def merge(self, other: "RunningStats") -> None:
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    @property
    def std(self) -> torch.Tensor:
        if self.count == 0:
            raise InputError("no targets were seen, so no statistics exist; the data source is empty.")
        return (self.m2 / self.count).sqrt()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "std": self.std, "m2": self.m2.clone(),
                "count": torch.tensor([self.count], dtype=torch.int64)}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "RunningStats":
        return cls(int(t["count"][0]), t["mean"].to(torch.float64), t["m2"].to(torch.float64))


def stats_path(directory: str | Path, teacher_id: str) -> Path:
    return Path(directory) / f"{teacher_id.replace('/', '__')}{STATS_SUFFIX}"


def save_stats(directory: str | Path, teacher_id: str, stats: RunningStats, meta: dict[str, str] | None = None) -> Path:
    """Write a teacher's statistics atomically."""
    from safetensors.torch import save_file

    path = stats_path(directory, teacher_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    info = {"teacher_id": teacher_id, "std": "population standard deviation (not variance)", **(meta or {})}
    save_file(stats.tensors(), str(tmp), metadata={k: str(v) for k, v in info.items()})
    os.replace(tmp, path)
    return path


def load_stats(directory: str | Path, teacher_id: str, dim: int) -> RunningStats:
    """A teacher's saved statistics, checked for presence, width and finiteness."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = stats_path(directory, teacher_id)
    if not path.is_file():
        have = sorted(p.name[: -len(STATS_SUFFIX)] for p in Path(directory).glob(f"*{STATS_SUFFIX}"))
        raise InputError(f"missing target statistics for teacher '{teacher_id}': {path} does not exist (found: "
                         f"{have or 'none'}). Drop stats= to compute them in one pass, or re-run the extraction.")
    try:
        stats = RunningStats.from_tensors(load_file(str(path)))
    except (SafetensorError, KeyError, OSError) as exc:
        raise InputError(f"target statistics {path} are unreadable ({exc}); delete the file to recompute them.") from exc
    if stats.mean.numel() != dim:
        raise InputError(f"target statistics {path} hold {stats.mean.numel()} channels but teacher '{teacher_id}' "
                         f"gives {dim}; they belong to another teacher: delete them or point stats= elsewhere.")
    check_finite(stats, str(path))
    return stats


def check_finite(stats: RunningStats, where: str) -> None:
    if not (torch.isfinite(stats.mean).all() and torch.isfinite(stats.m2).all()):
        bad = int((~torch.isfinite(stats.mean)).nonzero()[0, 0]) if not torch.isfinite(stats.mean).all() else -1
        raise InputError(f"non-finite target statistics in {where} (first bad channel {bad}): the teacher produced "
                         "NaN/inf targets; check its weights and inputs.")


class Standardizer(torch.nn.Module):
    """(targets - mean) / max(std, min_std) per channel, in float32 on the targets' device."""

    def __init__(self, stats: RunningStats, min_std: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", stats.mean.to(torch.float32), persistent=False)
        self.register_buffer("scale", stats.std.clamp_min(min_std).to(torch.float32), persistent=False)

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        return (targets.float() - self.mean) / self.scale
