"""Distillation of Theia students: teachers, image sources, cached or online targets, translators,
training (single process or torchrun DDP) and export in the official Theia checkpoint layout.

Entry points: `theia-eval distill ...` (commands.distill), `theia-eval frames ...` (commands.frames),
and `run_distillation(cfg)` for a composed configs/distill.yaml. Heavy modules import lazily.
"""
from theia_eval.distill.teachers import Teacher, TeacherSpec, build_teacher, build_teachers, register_teacher

__all__ = ["Teacher", "TeacherSpec", "build_teacher", "build_teachers", "register_teacher"]
