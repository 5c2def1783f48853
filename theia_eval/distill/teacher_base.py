"""What every teacher is (a frozen map from a Batch to targets (B, h, w, C)), its spec, and the registry of
teachers that are not registry encoders (`register_teacher`; sim_teachers.py registers sim-depth and
sim-segmentation). teachers.py builds teachers by name."""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from theia_eval.distill.samples import Batch
from theia_eval.errors import InputError
from theia_eval.registry import Registry


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher of a set: a teacher/encoder name, its weights and optional checkpoint id and kwargs."""

    name: str
    weights: str | None = None
    id: str | None = None
    kwargs: dict = field(default_factory=dict)


def legit_id(teacher_id: str) -> str:
    """A teacher id usable as a module name and checkpoint key part ('.' -> '_')."""
    return teacher_id.replace(".", "_")


class Teacher(nn.Module, abc.ABC):
    """A frozen map from a Batch to targets (B, h, w, C)."""

    def __init__(self, spec: TeacherSpec, teacher_id: str, grid: tuple[int, int], dim: int,
                 requires: tuple[str, ...] = ()):
        super().__init__()
        self.spec = spec
        self.id = legit_id(teacher_id)
        self.grid = (int(grid[0]), int(grid[1]))
        self.dim = int(dim)
        self.requires = tuple(requires)

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    def compute(self, batch: Batch) -> torch.Tensor:
        """Targets (B, h, w, C) for a batch already on the teacher's device."""

    @torch.no_grad()
    def forward(self, batch: Batch) -> torch.Tensor:
        missing = [r for r in self.requires if r not in batch.extras]
        if missing:
            raise InputError(f"teacher '{self.name}' needs the extra channel(s) {missing} stored with each image, "
                             f"but the batch has {sorted(batch.extras) or 'none'}. Use a frame set rendered by "
                             "`theia-eval frames` (it stores depth and segmentation).")
        out = self.compute(batch)
        expected = (len(batch), *self.grid, self.dim)
        if tuple(out.shape) != expected:
            raise InputError(f"teacher '{self.name}' produced targets of shape {tuple(out.shape)}, expected "
                             f"{expected} (its declared grid and width); its encoder config is wrong.")
        return out

    def describe(self) -> dict:
        return {"name": self.name, "id": self.id, "weights": self.spec.weights, "grid": list(self.grid),
                "dim": self.dim, "requires": list(self.requires), "kwargs": dict(self.spec.kwargs)}


TeacherBuilder = Callable[[TeacherSpec, torch.device, str], Teacher]
TEACHERS: Registry[TeacherBuilder] = Registry("teacher")


def register_teacher(name: str) -> Callable[[TeacherBuilder], TeacherBuilder]:
    """Register a teacher that is not a registry encoder (e.g. one that reads simulator extras)."""

    def wrap(builder: TeacherBuilder) -> TeacherBuilder:
        return TEACHERS.add(name, builder)

    return wrap
