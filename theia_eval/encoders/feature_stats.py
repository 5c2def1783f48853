"""Per-channel target statistics in one pass, in float64, mergeable across shards and processes.

Two file layouts:
  ours       <dir>/<teacher id>.stats.safetensors with tensors `mean` and `std` (the population standard
             deviation), plus `m2` and `count` so partial statistics can be merged exactly ('/' in ids -> '__').
  reference  the upstream `feature_stats/` layout: <dir>/<prefix>_mean_<id>.npy and <dir>/<prefix>_var_<id>.npy,
             float32 (C,), '/' in ids -> '_'. Beware: the file named "var" holds the standard deviation, not
             the variance. The reference's readers hard-code the prefix "imagenet"; exports write that prefix
             (the data they were computed on is named in the export's config.json and card).
`load_stats` reads either layout (ours first); `save_feature_stats` writes the reference one.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from theia_eval.errors import InputError

STATS_SUFFIX = ".stats.safetensors"
REFERENCE_PREFIX = "imagenet"  # the prefix the reference's feature_stats readers expect


@dataclass
class RunningStats:
    """count, mean and sum of squared deviations (m2) per channel, float64 (Chan et al. merge)."""

    count: int
    mean: torch.Tensor
    m2: torch.Tensor

    @classmethod
    def empty(cls, dim: int) -> RunningStats:
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

    def merge(self, other: RunningStats) -> None:
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
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> RunningStats:
        return cls(int(t["count"][0]), t["mean"].to(torch.float64), t["m2"].to(torch.float64))


def stats_path(directory: str | Path, teacher_id: str) -> Path:
    return Path(directory) / f"{teacher_id.replace('/', '__')}{STATS_SUFFIX}"


def save_stats(directory: str | Path, teacher_id: str, stats: RunningStats, meta: dict[str, str] | None = None) -> Path:
    """Write a teacher's statistics atomically."""
    from theia_eval.io import save_safetensors

    path = stats_path(directory, teacher_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    info = {"teacher_id": teacher_id, "std": "population standard deviation (not variance)", **(meta or {})}
    save_safetensors(stats.tensors(), tmp, metadata={k: str(v) for k, v in info.items()})
    os.replace(tmp, path)
    return path


def reference_name(teacher_id: str) -> str:
    """A teacher id as the reference's feature_stats files spell it ('/' -> '_')."""
    return teacher_id.replace("/", "_")


def reference_paths(directory: str | Path, teacher_id: str, prefix: str = REFERENCE_PREFIX) -> tuple[Path, Path]:
    """(<prefix>_mean_<id>.npy, <prefix>_var_<id>.npy) in `directory`."""
    name = reference_name(teacher_id)
    return Path(directory) / f"{prefix}_mean_{name}.npy", Path(directory) / f"{prefix}_var_{name}.npy"


def find_reference_stats(directory: str | Path, teacher_id: str) -> tuple[Path, Path] | None:
    """The reference-layout mean/std files of a teacher under any prefix, or None; several prefixes are refused."""
    name = reference_name(teacher_id)
    means = sorted(Path(directory).glob(f"*_mean_{name}.npy"))
    means = [m for m in means if m.name.endswith(f"_mean_{name}.npy")]
    if not means:
        return None
    if len(means) > 1:
        raise InputError(f"several feature statistics for teacher '{teacher_id}' in {directory}: "
                         f"{[m.name for m in means]}; keep one prefix per directory.")
    prefix = means[0].name[: -len(f"_mean_{name}.npy")]
    mean, std = reference_paths(directory, teacher_id, prefix)
    if not std.is_file():
        raise InputError(f"{mean} has no partner {std.name} (the reference's file holding the std); "
                         "copy both files of the pair.")
    return mean, std


def save_feature_stats(directory: str | Path, teacher_id: str, mean: torch.Tensor, std: torch.Tensor,
                       prefix: str = REFERENCE_PREFIX) -> tuple[Path, Path]:
    """Write a teacher's mean and std in the reference layout (float32 .npy pair), atomically per file."""
    import numpy as np

    paths = reference_paths(directory, teacher_id, prefix)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path, value in zip(paths, (mean, std)):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, torch.as_tensor(value).detach().to("cpu", torch.float32).flatten().numpy())
        os.replace(tmp, path)
    return paths


def read_reference_stats(mean_path: Path, std_path: Path) -> RunningStats:
    """Reference-layout statistics as RunningStats (count 1: they carry no count and cannot be merged)."""
    import numpy as np

    try:
        mean = torch.from_numpy(np.load(mean_path).astype(np.float64).reshape(-1))
        std = torch.from_numpy(np.load(std_path).astype(np.float64).reshape(-1))
    except (OSError, ValueError) as exc:
        raise InputError(f"feature statistics {mean_path.name}/{std_path.name} are unreadable ({exc}).") from exc
    if mean.shape != std.shape:
        raise InputError(f"{mean_path} holds {mean.numel()} channels but {std_path} holds {std.numel()}; "
                         "they are not one teacher's pair.")
    return RunningStats(1, mean, std**2)


def load_stats(directory: str | Path, teacher_id: str, dim: int) -> RunningStats:
    """A teacher's saved statistics (our layout, else the reference's), checked for presence, width, finiteness."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = stats_path(directory, teacher_id)
    if not path.is_file():
        reference = find_reference_stats(directory, teacher_id)
        if reference is None:
            have = sorted(p.name[: -len(STATS_SUFFIX)] for p in Path(directory).glob(f"*{STATS_SUFFIX}"))
            have += sorted(p.name for p in Path(directory).glob("*_mean_*.npy"))
            raise InputError(
                f"missing target statistics for teacher '{teacher_id}': neither {path.name} nor "
                f"<prefix>_mean_{reference_name(teacher_id)}.npy + <prefix>_var_... exist in {directory} (found: "
                f"{have or 'none'}). Drop stats= to compute them in one pass, or re-run the extraction.")
        path = reference[0]
        stats = read_reference_stats(*reference)
    else:
        try:
            stats = RunningStats.from_tensors(load_file(str(path)))
        except (SafetensorError, KeyError, OSError) as exc:
            raise InputError(f"target statistics {path} are unreadable ({exc}); delete the file to recompute "
                             "them.") from exc
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
