"""Distilled DMC experts: a small MLP on the privileged state, trained from the task's planner (`dagger.py`).

- `StateFeatures` (one per domain, `FEATURES`): the state vector of `envs/dmc/sim.py` (time, qpos, qvel, act,
  randomized parameters) without the time and without the positions the task does not depend on (the walker's
  and the cheetah's horizontal position), free angles as (sin, cos), everything after qpos as it is.
- `StatePolicy`: input standardization (statistics of the training states), hidden layers with ELU, a linear
  output clipped to the action bounds, run in numpy (demo workers never import torch; ~40 us a step).
- Weights: one safetensors file (float32) whose metadata say the task, the features, the layers and where the
  labels came from. `load_policy` refuses a file of another task, another feature layout or other shapes.
- `DistilledExpert`: the `distilled` expert kind of `expert.py`; its `distilled_source` (stored in demo files)
  names the weights by their sha256, so demos of other weights, or of the planner, are never mixed.

Weights are looked up as `<folder>/<task>.safetensors` (e.g. `walker-stand.safetensors`): `expert_weights=` of
`theia-eval demos` names the folder (or the file); by default the shipped folder `theia_eval/assets/dmc-experts`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from theia_eval.envs.dmc.sim import DMCTask
from theia_eval.errors import InputError

FORMAT = "theia-eval dmc distilled expert v1"  # metadata "format" of every weights file
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "dmc-experts"
TRAIN_COMMAND = "theia-eval experts task=dmc/{task} out_dir=DIR"  # docs/suites.md "Distilled experts"
ACTIVATION = "elu"


@dataclass(frozen=True)
class StateFeatures:
    """Which parts of a domain's state vector the policy reads (indices into qpos)."""

    nq: int  # qpos entries (the state is [time, qpos, rest])
    drop_qpos: tuple[int, ...] = ()  # positions the task is invariant to
    angle_qpos: tuple[int, ...] = ()  # unbounded angles, given as (sin, cos)

    def size(self, state_dim: int) -> int:
        """Feature length for a state vector of `state_dim` entries."""
        return state_dim - 1 - len(self.drop_qpos) + len(self.angle_qpos)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        """Features of one state (D,) or a batch (..., D), float64."""
        state = np.asarray(state, dtype=np.float64)
        qpos = state[..., 1:1 + self.nq]
        plain = [i for i in range(self.nq) if i not in self.drop_qpos and i not in self.angle_qpos]
        angles = qpos[..., list(self.angle_qpos)]
        return np.concatenate([qpos[..., plain], np.sin(angles), np.cos(angles), state[..., 1 + self.nq:]], axis=-1)


FEATURES: dict[str, StateFeatures] = {  # domain -> features; joint order checked by tests/envs/test_dmc_distilled.py
    "walker": StateFeatures(9, drop_qpos=(1,), angle_qpos=(2,)),  # rootz, rootx, rooty, 6 joints
    "cheetah": StateFeatures(9, drop_qpos=(0,), angle_qpos=(2,)),  # rootx, rootz, rooty, 6 joints
    "finger": StateFeatures(3, angle_qpos=(2,)),  # proximal, distal, hinge (the spinner)
    "reacher": StateFeatures(2, angle_qpos=(0, 1)),  # shoulder, wrist (+ the target's x, y after qvel)
}


def features_of(task: DMCTask) -> StateFeatures:
    if task.domain not in FEATURES:
        raise InputError(f"no state features for the {task.domain} domain (dmc/{task.name}); "
                         f"distilled experts exist for the domains {', '.join(sorted(FEATURES))}")
    return FEATURES[task.domain]


class StatePolicy:
    """The MLP: standardize features, (Linear, ELU) x hidden, Linear; numpy float64."""

    def __init__(self, task: DMCTask, features: StateFeatures, mean: np.ndarray, std: np.ndarray,
                 layers: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, str] | None = None) -> None:
        self.task, self.features = task, features
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        self.layers = [(np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)) for w, b in layers]
        self.meta = dict(meta or {})

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w, _ in self.layers[:-1])

    def __call__(self, state: np.ndarray) -> np.ndarray:
        """Actions (..., action_dim) of states (..., D), clipped to [-1, 1]."""
        h = (self.features(state) - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i + 1 < len(self.layers):
                h = np.where(h > 0, h, np.expm1(np.minimum(h, 0.0)))
        return np.clip(h, -1.0, 1.0)

    def tensors(self) -> dict[str, np.ndarray]:
        """The float32 arrays of the weights file."""
        out = {"input.mean": self.mean, "input.std": self.std}
        for i, (w, b) in enumerate(self.layers):
            out[f"layers.{i}.weight"], out[f"layers.{i}.bias"] = w, b
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def save_policy(policy: StatePolicy, path: str | Path, meta: dict[str, str]) -> None:
    """Write the weights file atomically (temporary name in the same folder, then rename)."""
    import torch

    from theia_eval.io import save_safetensors

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**meta, "format": FORMAT, "task": policy.task.name, "activation": ACTIVATION,
              "features": json.dumps(asdict(policy.features), sort_keys=True)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_safetensors({k: torch.from_numpy(v) for k, v in policy.tensors().items()}, tmp,
                         {k: str(v) for k, v in header.items()})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable safetensors file ({exc}): it is damaged or not a weights "
                         "file. Train the expert again or pass another expert_weights.") from exc


def load_policy(path: str | Path, task: DMCTask) -> StatePolicy:
    """The distilled expert of `task` in the weights file `path`, checked against the task."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no distilled expert weights for dmc/{task.name} at {path}: train them with "
                         f"`{TRAIN_COMMAND.format(task=task.name)}` (docs/suites.md, \"Distilled experts\") and pass "
                         "expert_weights=DIR (the folder holding <task>.safetensors), or use the planner expert.")
    tensors, meta = _read(path)
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a distilled DMC expert (metadata format {meta.get('format')!r}, "
                         f"expected {FORMAT!r}).")
    if meta.get("task") != task.name:
        raise InputError(f"{path} holds the distilled expert of dmc/{meta.get('task')}, not dmc/{task.name}: "
                         f"pass the folder holding {task.name}.safetensors.")
    features = features_of(task)
    if meta.get("features") != json.dumps(asdict(features), sort_keys=True) or meta.get("activation") != ACTIVATION:
        raise InputError(f"{path} was trained on other state features or activation ({meta.get('features')}, "
                         f"{meta.get('activation')}) than this version reads ({asdict(features)}, {ACTIVATION}): "
                         "train it again.")
    return StatePolicy(task, features, tensors.get("input.mean"), tensors.get("input.std"),
                       _layers(tensors, path, task, features), meta)


def _layers(tensors: dict[str, np.ndarray], path: Path, task: DMCTask,
            features: StateFeatures) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (weight, bias) pairs of the file, their shapes chained from the features to the actions."""
    from theia_eval.envs.dmc.sim import STATE_DIMS
    from theia_eval.envs.simstate import params_size

    n_in = features.size(STATE_DIMS[task.domain] + params_size(task.params))
    layers, i = [], 0
    while f"layers.{i}.weight" in tensors:
        layers.append((tensors[f"layers.{i}.weight"], tensors.get(f"layers.{i}.bias")))
        i += 1
    shapes = [(w.shape, None if b is None else b.shape) for w, b in layers]
    dims = [n_in] + [int(w.shape[0]) for w, _ in layers]
    ok = (bool(layers) and dims[-1] == task.action_dim
          and all(w.ndim == 2 and w.shape[1] == dims[j] and b is not None and b.shape == (w.shape[0],)
                  for j, (w, b) in enumerate(layers))
          and all(tensors.get(k) is not None and tensors[k].shape == (n_in,) for k in ("input.mean", "input.std")))
    if not ok:
        raise InputError(f"{path}: the layer shapes {shapes} do not map the {n_in} state features of dmc/{task.name} "
                         f"to its {task.action_dim} actions (or input.mean/std are missing): the file is not this "
                         "task's distilled expert.")
    if not all(np.all(np.isfinite(a)) for a in tensors.values()) or np.any(tensors["input.std"] <= 0):
        raise InputError(f"{path} holds non-finite weights or a non-positive input std: train the expert again.")
    return layers


def weights_file(task: DMCTask, weights: str | Path | None) -> Path:
    """`<folder>/<task>.safetensors` for a folder (None: the shipped one), or the file itself."""
    where = SHIPPED_DIR if weights is None else Path(weights).expanduser()
    return where / f"{task.name}.safetensors" if where.is_dir() or weights is None else where


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class DistilledExpert:
    """A state-based policy distilled from the task's planner: one MLP forward per step."""

    def __init__(self, task: DMCTask, weights: str | Path | None = None) -> None:
        self.task = task
        self.path = weights_file(task, weights)
        self.policy = load_policy(self.path, task)

    def get_action(self, state: np.ndarray) -> np.ndarray:
        return self.policy(state)


def distilled_source(task: DMCTask, weights: str | Path | None = None) -> str:
    """What demo files record for the distilled expert: the network, where its labels came from, the weights hash."""
    path = weights_file(task, weights)
    policy = load_policy(path, task)
    hidden = "-".join(str(h) for h in policy.hidden)
    labeller = policy.meta.get("labeller", "unknown labeller")
    return (f"distilled expert: MLP ({hidden}, {ACTIVATION}) on the privileged state, DAgger-trained from "
            f"[{labeller}]; weights sha256 {file_sha256(path)[:16]}")
