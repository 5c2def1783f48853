"""Simulated tasks, the headless renderer and demonstration datasets.

- tasks.py: `TaskSpec`/`SuiteSpec` registry (`get_task`, `list_tasks`, `get_suite`, `list_suites`).
- renderer.py: `RenderSpec` (preset/resolution/crop), `FrameRenderer` (upright frames).
- env.py: `make_env(task, preset, resolution, crop, camera, seed)` -> `TaskEnv`.
- vector.py: `VectorEnv` lock-step subprocess workers.
- dataset.py: robomimic-layout HDF5 (`open_demos`, `dataset_info`, atomic writes).
- demos.py: expert demo collection (resumable); importers.py: CortexBench pickles.
Family modules (metaworld.py) register their tasks when this package is imported.
"""
from theia_eval.envs import metaworld  # noqa: F401  (registers the Meta-World tasks and suites)
from theia_eval.envs import dmc  # noqa: F401  (registers the DMC tasks, suites and score)
from theia_eval.envs import adroit  # noqa: F401  (registers the Adroit tasks and suites)
from theia_eval.envs.dataset import DemoFile, dataset_info, open_demos
from theia_eval.envs.env import TaskEnv, make_env
from theia_eval.envs.renderer import PRESETS, RenderSpec
from theia_eval.envs.tasks import (SuiteSpec, TaskSpec, episode_seeds, get_suite, get_task,
                                   list_suites, list_tasks, resolve_tasks)
from theia_eval.envs.vector import VectorEnv

__all__ = ["DemoFile", "PRESETS", "RenderSpec", "SuiteSpec", "TaskEnv", "TaskSpec", "VectorEnv",
           "dataset_info", "episode_seeds", "get_suite", "get_task", "list_suites", "list_tasks",
           "make_env", "open_demos", "resolve_tasks"]
