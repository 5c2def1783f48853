"""DeepMind Control Suite tasks of CortexBench: `dmc/<domain>-<task>` and the suites `dmc`, `cortexbench-dmc`.

- sim.py: task facts (`DMCTask`, `DMC_TASKS`), dm_control loading without its GL backend, `DMCSim`;
- expert.py: the privileged experts (reacher: inverse kinematics + PD; others: sampling MPC);
- frames.py: the other dm_control tasks, for frame sets only;
- suite.py: TaskSpecs, the score rule (return / 10) and the family's one registration (importing this
  package registers it).
"""
from theia_eval.envs.dmc.sim import (DMC_TASKS, EPISODE_STEPS, FAMILY, REACHER_TARGET, STATE_DIMS, DMCSim, DMCTask,
                                     dm_control_suite, facts, load_env, no_proprio, state_dim)
from theia_eval.envs.dmc.suite import CORTEXBENCH_TASKS, FAMILY_SPEC, normalized_score, task_spec

__all__ = ["CORTEXBENCH_TASKS", "DMCSim", "DMCTask", "DMC_TASKS", "EPISODE_STEPS", "FAMILY", "FAMILY_SPEC",
           "REACHER_TARGET", "STATE_DIMS", "dm_control_suite", "facts", "load_env", "no_proprio", "normalized_score",
           "state_dim", "task_spec"]
