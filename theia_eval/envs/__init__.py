"""Simulated tasks, the headless renderer and demonstration datasets.

- tasks.py: `TaskSpec`/`SuiteSpec` registry (`get_task`, `list_tasks`, `get_suite`, `list_suites`).
- family.py: `Family`, one registration per suite family (tasks, suites, score rule, CortexBench suite,
  MuJoCo subset, dataset importer); `get_family`, `episode_scores`.
- metaworld/, dmc/, adroit/: one folder per family: sim.py (simulator), expert.py, suite.py (task facts,
  score rule, the family's registration), adroit/importer.py (Minari/D4RL); mpc.py: the sampling MPC the
  privileged experts share.
- renderer.py: `RenderSpec` (preset/resolution/crop), `FrameRenderer` (upright frames).
- env.py: `make_env(task, preset, resolution, crop, camera, seed)` -> `TaskEnv`.
- vector.py: `VectorEnv` lock-step subprocess workers.
- dataset.py: robomimic-layout HDF5 (`open_demos`, `dataset_info`, atomic writes).
- demos.py: expert demo collection (resumable); importers.py: CortexBench pickles (any family).
Family packages register themselves when this package is imported, in this order.
"""
# the import order is the registration order (of tasks, suites, families and the MuJoCo subset): keep it
# isort: off
from theia_eval.envs import metaworld  # noqa: F401  (registers the Meta-World family)
from theia_eval.envs import dmc  # noqa: F401  (registers the DMC family)
from theia_eval.envs import adroit  # noqa: F401  (registers the Adroit family)
# isort: on
from theia_eval.envs.dataset import DemoFile, dataset_info, open_demos
from theia_eval.envs.env import TaskEnv, make_env
from theia_eval.envs.family import Family, episode_scores, get_family, list_families
from theia_eval.envs.renderer import PRESETS, RenderSpec
from theia_eval.envs.tasks import (SuiteSpec, TaskSpec, episode_seeds, get_suite, get_task,
                                   list_suites, list_tasks, resolve_tasks)
from theia_eval.envs.vector import VectorEnv

__all__ = ["DemoFile", "Family", "PRESETS", "RenderSpec", "SuiteSpec", "TaskEnv", "TaskSpec", "VectorEnv",
           "dataset_info", "episode_scores", "episode_seeds", "get_family", "get_suite", "get_task", "list_families",
           "list_suites", "list_tasks", "make_env", "open_demos", "resolve_tasks"]
