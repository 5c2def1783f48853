"""Teachers: frozen models whose spatial maps the student learns to reproduce.

A teacher maps a `Batch` (images plus optional extras) to targets (B, h, w, C) at its native grid.
Any registry encoder is a teacher (its spatial tokens are the target); teachers that read privileged
extras (sim-depth, sim-segmentation) register themselves with `register_teacher`.
`id` names the teacher's translator head in checkpoints (official layout: the HF hub id, e.g.
facebook/dinov2-large; '.' is replaced by '_' as the reference does for module names).
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from theia_eval.distill.samples import Batch
from theia_eval.errors import InputError, unknown_name


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


class EncoderTeacher(Teacher):
    """A registry encoder as a teacher: targets are its spatial tokens."""

    def __init__(self, spec: TeacherSpec, encoder):
        cfg = encoder.config
        super().__init__(spec, spec.id or cfg.hub_id or cfg.name, cfg.grid, cfg.token_dim)
        self.encoder = encoder

    def compute(self, batch: Batch) -> torch.Tensor:
        return self.encoder(batch.images).tokens


TeacherBuilder = Callable[[TeacherSpec, torch.device, str], Teacher]
TEACHERS: dict[str, TeacherBuilder] = {}


def register_teacher(name: str) -> Callable[[TeacherBuilder], TeacherBuilder]:
    """Register a teacher that is not a registry encoder (e.g. one that reads simulator extras)."""

    def wrap(builder: TeacherBuilder) -> TeacherBuilder:
        if name in TEACHERS:
            raise ValueError(f"teacher '{name}' is registered twice")
        TEACHERS[name] = builder
        return builder

    return wrap


def build_teacher(spec: TeacherSpec, device: torch.device | str = "cpu", dtype: str = "float32") -> Teacher:
    """A teacher by name: a registered teacher, else a registry encoder (create_encoder)."""
    from theia_eval.distill import sim_teachers  # noqa: F401  (registers sim-depth, sim-segmentation)
    from theia_eval.encoders import create_encoder, list_encoders
    from theia_eval.encoders.registry import is_encoder

    device = torch.device(device)
    if spec.name in TEACHERS:
        return TEACHERS[spec.name](spec, device, dtype).to(device).eval()
    if not is_encoder(spec.name):  # registry entries, installed plugins and hf:/timm:/py: names
        raise unknown_name("teacher", spec.name, [*TEACHERS, *list_encoders()])
    encoder = create_encoder(spec.name, weights=spec.weights, device=device, dtype=dtype, **spec.kwargs)
    return EncoderTeacher(spec, encoder).eval()


def build_teachers(specs: list[TeacherSpec], device: torch.device | str = "cpu", dtype: str = "float32") -> list[Teacher]:
    """Build a teacher set; ids must be unique."""
    teachers = [build_teacher(s, device, dtype) for s in specs]
    ids = [t.id for t in teachers]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"teacher id(s) {dup} appear twice in the teacher set; give each an explicit id: "
                         "teachers=[{name: ..., id: ...}, ...].")
    return teachers
