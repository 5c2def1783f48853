"""Teachers: frozen models whose spatial maps the student learns to reproduce.

A teacher maps a `Batch` (images plus optional extras) to targets (B, h, w, C) at its native grid.
Any registry encoder is a teacher (its spatial tokens are the target); teachers that read privileged
extras (sim-depth, sim-segmentation) register themselves with `register_teacher`.
`id` names the teacher's translator head in checkpoints (official layout: the HF hub id, e.g.
facebook/dinov2-large; '.' is replaced by '_' as the reference does for module names).
"""
from __future__ import annotations

import torch

from theia_eval.distill.samples import Batch
from theia_eval.distill.teacher_base import (TEACHERS, Teacher, TeacherBuilder, TeacherSpec,  # noqa: F401
                                             legit_id, register_teacher)
from theia_eval.errors import InputError, unknown_name


class EncoderTeacher(Teacher):
    """A registry encoder as a teacher: targets are its spatial tokens."""

    def __init__(self, spec: TeacherSpec, encoder):
        cfg = encoder.config
        super().__init__(spec, spec.id or cfg.hub_id or cfg.name, cfg.grid, cfg.token_dim)
        self.encoder = encoder

    def compute(self, batch: Batch) -> torch.Tensor:
        return self.encoder(batch.images).tokens


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
