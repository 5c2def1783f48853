"""Teacher sets: named lists of teachers in configs/teacher_sets/<set>.yaml, or any list of names.

`teachers=` accepts a set name (cdiv, cddsv, offline, ...), one teacher name, or a list whose items are
set names, teacher names, or mappings {name, weights, id, kwargs}.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from theia_eval.distill.teachers import TeacherSpec
from theia_eval.errors import InputError

SPEC_KEYS = {"name", "weights", "id", "kwargs"}


def sets_dir() -> Path:
    from theia_eval.config import config_dir

    return config_dir() / "teacher_sets"


def list_teacher_sets() -> list[str]:
    return sorted(p.stem for p in sets_dir().glob("*.yaml"))


def load_set(name: str) -> list[TeacherSpec]:
    """The teachers of configs/teachers/<name>.yaml."""
    cfg = OmegaConf.load(sets_dir() / f"{name}.yaml")
    items = cfg.get("teachers")
    if not items:
        raise InputError(f"teacher set file {sets_dir() / name}.yaml has no 'teachers:' list.")
    return [spec_of(item) for item in items]


def spec_of(item) -> TeacherSpec:
    """A TeacherSpec from a name or a mapping."""
    if isinstance(item, str):
        return TeacherSpec(item)
    if isinstance(item, (Mapping, DictConfig)):
        data = OmegaConf.to_container(item, resolve=True) if isinstance(item, DictConfig) else dict(item)
        unknown = set(data) - SPEC_KEYS
        if unknown or "name" not in data:
            raise InputError(f"bad teacher entry {data}: use keys {sorted(SPEC_KEYS)} (name required).")
        return TeacherSpec(str(data["name"]), data.get("weights"), data.get("id"), dict(data.get("kwargs") or {}))
    raise InputError(f"bad teacher entry {item!r}: give a name or a mapping {{name, weights, id, kwargs}}.")


def resolve_teachers(value, weights: Mapping | None = None) -> list[TeacherSpec]:
    """Teacher specs for a `teachers=` value; `weights` maps teacher names or ids to weight paths."""
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not items:
        raise InputError("teachers= is empty; pass a teacher set (e.g. offline, cdiv) or a list of encoder names.")
    sets = set(list_teacher_sets())
    specs: list[TeacherSpec] = []
    for item in items:
        specs.extend(load_set(item) if isinstance(item, str) and item in sets else [spec_of(item)])
    return [with_weights(s, dict(weights or {})) for s in specs]


def with_weights(spec: TeacherSpec, weights: dict) -> TeacherSpec:
    """Apply a `teacher_weights.{name or id}=PATH` override."""
    for key in (spec.id, spec.name):
        if key is not None and key in weights:
            return TeacherSpec(spec.name, weights[key], spec.id, spec.kwargs)
    return spec


def teacher_shapes(set_name) -> dict[str, tuple[int, int, int]]:
    """{teacher id: (C, h, w)} of a teacher set, from registry facts (no weights loaded)."""
    from theia_eval.distill import sim_teachers  # noqa: F401  (registers sim-depth, sim-segmentation)
    from theia_eval.distill.teachers import TEACHERS, build_teachers
    from theia_eval.encoders import get_encoder_config

    shapes = {}
    for spec in resolve_teachers(set_name):
        if spec.name in TEACHERS:
            t = build_teachers([spec])[0]
            shapes[t.id] = (t.dim, *t.grid)
        else:
            c = get_encoder_config(spec.name)
            shapes[(spec.id or c.hub_id or c.name).replace(".", "_")] = (c.token_dim, *c.grid)
    return shapes
