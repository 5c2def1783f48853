"""Training checkpoints (model, optimizer, scheduler, step) written atomically, and exact resume."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch

from theia_eval.errors import InputError

LAST = "last.pt"
RESUME_KEYS = ("student", "image_size", "teachers", "translator", "batch_size", "steps", "data_fingerprint", "seed",
               "targets", "lr_decay")  # lr_decay: absent (None) for the reference's constant schedule


def save_checkpoint(directory: Path, state: dict) -> Path:
    """Write checkpoints/last.pt via a temp file and rename."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LAST
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # pid: stale ones are found
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(directory: Path) -> dict | None:
    path = directory / LAST
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged pickle
        raise InputError(f"cannot read checkpoint {path} ({exc}); delete it to start over, or pass resume=false "
                         "with a new run_dir.") from exc


def check_resumable(found: dict, current: dict, path: Path) -> None:
    """A checkpoint only resumes the run that wrote it: same student, teachers, data, batch and schedule."""
    for key in RESUME_KEYS:
        if found.get(key) != current.get(key):
            raise InputError(f"checkpoint {path / LAST} belongs to a different run: its {key} is {found.get(key)!r}, "
                             f"this run has {current.get(key)!r}. Use a new run_dir=, or resume=false to start over "
                             "in this one.")
