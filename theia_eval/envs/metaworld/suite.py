"""The Meta-World family: all 50 v3 tasks (`metaworld/<task>`), the suites `metaworld` and
`cortexbench-metaworld`, scored by success (the flag at the final step), with a proprio of state[:4]."""
from __future__ import annotations

import numpy as np

from theia_eval.envs.family import Family, fixed_cameras, register_family
from theia_eval.envs.metaworld.expert import MetaWorldExpert
from theia_eval.envs.metaworld.sim import FAMILY, HORIZON, TOP_CAP2, VERSION_SUFFIX, MetaWorldSim, upstream_names
from theia_eval.envs.tasks import DEFAULT_EXPERT, ExpertChoice, SuiteSpec, TaskSpec

CORTEXBENCH_TASKS = ("assembly", "bin-picking", "button-press-topdown", "drawer-open", "hammer")


def _make_sim(spec: TaskSpec, horizon: int | None = None) -> MetaWorldSim:
    return MetaWorldSim(spec.upstream_id, horizon=horizon or spec.horizon)


def _make_expert(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT) -> MetaWorldExpert:
    """The scripted expert (one per task; tasks.check_expert_choice refuses other kinds)."""
    return MetaWorldExpert(spec.upstream_id)


def gripper_proprio(state: np.ndarray) -> np.ndarray:
    """Hand position (3) and gripper opening (1): the first 4 entries of the state."""
    return state[..., :4]


def task_spec(upstream_id: str) -> TaskSpec:
    """The TaskSpec of one Meta-World v3 task id."""
    short = upstream_id.removesuffix(VERSION_SUFFIX)
    return TaskSpec(name=f"{FAMILY}/{short}", suite=FAMILY, camera=TOP_CAP2.name, horizon=HORIZON,
                    action_dim=4, proprio_dim=4, state_dim=39, make_sim=_make_sim,
                    proprio=gripper_proprio, make_expert=_make_expert, upstream_id=upstream_id,
                    description=f"Meta-World {upstream_id} (goal observable), scripted expert")


def family() -> Family:
    """The 50 tasks and the suites `metaworld` and `cortexbench-metaworld`."""
    tasks = tuple(task_spec(uid) for uid in upstream_names())
    return Family(
        FAMILY, tasks,
        (SuiteSpec(FAMILY, tuple(t.name for t in tasks), description="all 50 Meta-World v3 tasks"),
         SuiteSpec("cortexbench-metaworld", tuple(f"{FAMILY}/{t}" for t in CORTEXBENCH_TASKS),
                   demos_per_task=25, eval_episodes=25, description="the 5 Meta-World tasks of CortexBench")),
        cortexbench="cortexbench-metaworld", mujoco_subset=True,
        frame_cameras=fixed_cameras(TOP_CAP2.name, "corner", "corner3", "topview"),
        description="Meta-World v3 (Farama), goal observable, scripted experts")


FAMILY_SPEC = register_family(family())
