"""Adroit hand tasks of CortexBench (gymnasium-robotics v1): `adroit/pen`, `adroit/relocate`.

- sim.py: task facts (`AdroitTask`, `ADROIT_TASKS`), the goal rules, `AdroitSim`;
- expert.py: the privileged sampling-MPC experts;
- importer.py: the Minari / D4RL datasets re-rendered as demos (`import_minari_adroit`);
- frames.py: the door and hammer tasks, for frame sets only;
- suite.py: TaskSpecs, proprio and the family's one registration (importing this package registers it).
"""
from theia_eval.envs.adroit.sim import (ADROIT_TASKS, CAMERA, FAMILY, GOAL_RULES, AdroitSim, AdroitTask, facts,
                                        hand_qpos, make_gym_env, pen_goal_achieved, relocate_goal_achieved)
from theia_eval.envs.adroit.suite import FAMILY_SPEC, task_spec

__all__ = ["ADROIT_TASKS", "CAMERA", "FAMILY", "FAMILY_SPEC", "GOAL_RULES", "AdroitSim", "AdroitTask", "facts",
           "hand_qpos", "make_gym_env", "pen_goal_achieved", "relocate_goal_achieved", "task_spec"]
