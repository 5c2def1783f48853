"""Meta-World (Farama v3, mujoco 3): `metaworld/<task>` for all 50 tasks and the suites.

- sim.py: `MetaWorldSim` (goal-observable env with the CortexBench camera `top_cap2` added), task ids;
- expert.py: `MetaWorldExpert` (the scripted policies);
- suite.py: task facts, proprio (state[:4]) and the family's one registration (importing this package
  registers it).
"""
from theia_eval.envs.metaworld.expert import MetaWorldExpert
from theia_eval.envs.metaworld.sim import (EXTRA_CAMERAS, FAMILY, HORIZON, TOP_CAP2, VERSION_SUFFIX, MetaWorldSim,
                                           upstream_names)
from theia_eval.envs.metaworld.suite import CORTEXBENCH_TASKS, FAMILY_SPEC, gripper_proprio, task_spec

__all__ = ["CORTEXBENCH_TASKS", "EXTRA_CAMERAS", "FAMILY", "FAMILY_SPEC", "HORIZON", "MetaWorldExpert", "MetaWorldSim",
           "TOP_CAP2", "VERSION_SUFFIX", "gripper_proprio", "task_spec", "upstream_names"]
