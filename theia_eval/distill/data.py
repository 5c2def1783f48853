"""Datasets, the train/validation split and the deterministic step-indexed sampler.

The sampler walks one endless stream: the concatenation of per-epoch permutations of the training
indices (permutation e is drawn from numpy's default_rng([seed, e])). Global step s takes stream positions
[s*B, (s+1)*B); that batch is cut into world_size x grad_accum equal chunks, chunk m*world + r going to
rank r's micro-batch m. The data a step sees depends only on (seed, step, B), so a resumed run and a run
on any number of processes see exactly the same global batches.
"""
from __future__ import annotations

import fnmatch
import hashlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from theia_eval.distill.samples import Batch, Sample, collate_samples
from theia_eval.errors import InputError


class SourceDataset(Dataset):
    """Samples of a source (optionally with their cached targets)."""

    def __init__(self, source, cached=None):
        self.source, self.cached = source, cached

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Sample, list[torch.Tensor] | None]:
        sample = self.source.load(index)
        return sample, (self.cached.get(sample.key) if self.cached is not None else None)


def collate_items(items: list[tuple[Sample, list[torch.Tensor] | None]]) -> tuple[Batch, list[torch.Tensor] | None]:
    batch = collate_samples([s for s, _ in items])
    if items[0][1] is None:
        return batch, None
    return batch, [torch.stack(parts) for parts in zip(*(t for _, t in items))]


def collate_batch(items) -> Batch:
    return collate_items(items)[0]


def source_loader(source, indices: list[int], batch_size: int, num_workers: int = 0) -> DataLoader:
    """Batches of samples at the given indices, in order."""
    chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    return DataLoader(SourceDataset(source), batch_sampler=chunks, collate_fn=collate_batch, num_workers=num_workers)


def key_unit(key: str) -> float:
    """A stable pseudo-uniform number in [0, 1) from a key (sha1), for the held-out split."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64


def expand_task_patterns(patterns: list[str]) -> list[str]:
    """Held-out task patterns with suite names (cortexbench-dmc, ...) replaced by their task names."""
    out = []
    for p in patterns:
        if "/" not in p and not any(c in p for c in "*?["):
            from theia_eval.envs import get_suite, list_suites

            if p not in list_suites():
                raise InputError(f"val_tasks entry '{p}' is neither a task pattern (family/task, globs allowed, "
                                 f"e.g. dmc/walker-*) nor a suite ({', '.join(list_suites())}).")
            out += list(get_suite(p).tasks)
        else:
            out.append(p)
    return out


def key_in_tasks(key: str, patterns: list[str]) -> bool:
    """Whether a sample key belongs to one of the tasks: the key is `<task>/...` (frame sets) or the task itself."""
    return any(fnmatch.fnmatchcase(key, p) or fnmatch.fnmatchcase(key, p + "/*") for p in patterns)


def split_indices(keys: list[str], val_fraction: float, val_tasks=None) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices, independent of order.

    val_tasks null: a sample is held out when key_unit(key) < val_fraction (a hash of its key).
    val_tasks given (task patterns or suite names): exactly the samples of those tasks are held out (so the
    held-out cosine measures tasks the student never trained on) and val_fraction is not used."""
    if val_tasks:
        patterns = expand_task_patterns([str(p) for p in ([val_tasks] if isinstance(val_tasks, str) else val_tasks)])
        held = np.array([key_in_tasks(k, patterns) for k in keys], dtype=bool)
        rule = f"val_tasks={list(val_tasks) if not isinstance(val_tasks, str) else val_tasks}"
        if not held.any():
            raise InputError(f"{rule} matches none of the {len(keys)} sample keys (they look like '{keys[0]}'); "
                             "name tasks as the keys start, e.g. metaworld/assembly or dmc/walker-*.")
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}.")
        held = np.array([key_unit(k) < val_fraction for k in keys], dtype=bool)
        rule = f"val_fraction={val_fraction}"
    train, val = np.flatnonzero(~held), np.flatnonzero(held)
    if len(train) == 0:
        raise InputError(f"no training images left after holding out {rule} of {len(keys)}.")
    return train, val


class StepSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (dataset indices) for steps [start, steps)."""

    def __init__(self, train: np.ndarray, global_batch: int, seed: int, start: int, steps: int, rank: int = 0,
                 world: int = 1, accum: int = 1):
        chunks = world * accum
        if global_batch % chunks:
            raise InputError(f"batch_size={global_batch} is not divisible by world_size x grad_accum = {world} x "
                             f"{accum}; pick a batch size that splits evenly.")
        self.train, self.batch, self.seed = np.asarray(train), int(global_batch), int(seed)
        self.start, self.steps, self.rank, self.world, self.accum = start, steps, rank, world, accum
        self.micro = global_batch // chunks
        self._perms: dict[int, np.ndarray] = {}

    def perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        return self._perms[epoch]

    def global_batch(self, step: int) -> np.ndarray:
        """Dataset indices of global step `step`."""
        pos = np.arange(step * self.batch, (step + 1) * self.batch)
        n = len(self.train)
        epochs = pos // n
        return np.array([self.train[self.perm(int(e))[p % n]] for e, p in zip(epochs, pos)])

    def epoch_of(self, step: int) -> float:
        return step * self.batch / len(self.train)

    def __iter__(self):
        for step in range(self.start, self.steps):
            idx = self.global_batch(step)
            for m in range(self.accum):
                j = m * self.world + self.rank
                yield idx[j * self.micro:(j + 1) * self.micro].tolist()

    def __len__(self) -> int:
        return (self.steps - self.start) * self.accum
