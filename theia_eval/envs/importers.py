"""Import the original CortexBench demonstration pickles into our HDF5 layout.

eai-vc's data (e.g. metaworld-expert-v1.0/<env>.pickle) is a pickled list of path dicts:
"images" (T, H, W, 3) uint8 (256 x 256, uncropped, upright), "actions" (T, A), "rewards" (T,),
optionally "observations" (T, S), and "env_infos", a dict of per-step arrays: Meta-World has
"success" and "gripper_proprio" (the config's proprio_key). The frames come from mujoco-py on
MuJoCo 2.0, so the file is labelled preset `cortexbench-mujoco-py` with crop None: evaluating on our
renderer is refused unless forced (the images differ), which is the honest default.

Pickles execute code when loaded: only import files you trust.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from theia_eval.envs.dataset import DatasetMeta, Episode, Storage, write_demos
from theia_eval.envs.renderer import RenderSpec
from theia_eval.envs.tasks import TaskSpec, get_task
from theia_eval.errors import InputError

IMPORTED_PRESET = "cortexbench-mujoco-py"
DEFAULT_PROPRIO_KEYS = ("gripper_proprio", "proprio")


def load_paths(path: str | Path) -> list[dict]:
    """The list of path dicts of a CortexBench pickle, with a clear error for other content."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"CortexBench pickle {path} does not exist")
    try:
        with open(path, "rb") as fh:
            paths = pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise InputError(f"{path} is not a readable pickle ({exc!r})") from exc
    if not isinstance(paths, list) or not paths or not all(isinstance(p, dict) for p in paths):
        raise InputError(f"{path} must hold a non-empty list of path dicts (CortexBench format), "
                         f"got {type(paths).__name__}")
    return paths


def _proprio(p: dict, task: TaskSpec, key: str | None, where: str) -> np.ndarray:
    infos = p.get("env_infos", {})
    for k in ([key] if key else list(DEFAULT_PROPRIO_KEYS)):
        if k in infos:
            return np.asarray(infos[k], dtype=np.float32)
    if key is None and "observations" in p:
        return np.asarray(task.proprio(np.asarray(p["observations"])), dtype=np.float32)
    raise InputError(f"{where}: no proprio: env_infos has {sorted(infos)}; pass proprio_key=NAME")


def path_to_episode(p: dict, task: TaskSpec, proprio_key: str | None, where: str) -> Episode:
    """One CortexBench path dict as an Episode (seed unknown: -1); actions stored as the simulator executed them
    (the pickles hold the expert's raw actions, some outside the task's bounds)."""
    missing = [k for k in ("images", "actions", "rewards") if k not in p]
    if missing:
        raise InputError(f"{where} lacks {missing}; CortexBench paths have images, actions, "
                         "rewards and env_infos")
    images = np.asarray(p["images"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"{where}: images must be uint8 (T, H, W, 3), got {images.dtype} {images.shape}")
    n = len(p["actions"])
    state = np.asarray(p.get("observations", np.zeros((n, 0))), dtype=np.float32)
    success = np.asarray(p.get("env_infos", {}).get("success", np.zeros(n)), dtype=bool)
    return Episode(rgb=images, proprio=_proprio(p, task, proprio_key, where), state=state,
                   actions=task.executed_actions(np.asarray(p["actions"], dtype=np.float32)),
                   rewards=np.asarray(p["rewards"], dtype=np.float32), success=success, seed=-1)


def import_cortexbench_pickle(pickle_path: str | Path, task: str, out_path: str | Path,
                              camera: str | None = None, proprio_key: str | None = None,
                              num_demos: int | None = None, storage: Storage = Storage(),
                              valid_fraction: float = 0.1) -> Path:
    """Convert a CortexBench pickle into one demo file (atomic); returns its path."""
    spec = get_task(task)
    paths = load_paths(pickle_path)[:num_demos]
    episodes = [path_to_episode(p, spec, proprio_key, f"{pickle_path}[{i}]")
                for i, p in enumerate(paths)]
    sizes = {ep.rgb.shape[1:3] for ep in episodes}
    if len(sizes) != 1 or len({*next(iter(sizes))}) != 1:
        raise InputError(f"{pickle_path}: frames must be square and of one size, got {sorted(sizes)}")
    side = int(next(iter(sizes))[0])
    meta = DatasetMeta(task=spec.name, suite=spec.suite, camera=camera or spec.camera,
                       render=RenderSpec(IMPORTED_PRESET, side, None), horizon=spec.horizon,
                       post_success_steps=None, base_seed=-1,
                       source=f"cortexbench-pickle:{Path(pickle_path).name}")
    return write_demos(out_path, episodes, meta, storage, valid_fraction)
