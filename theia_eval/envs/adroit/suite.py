"""The Adroit family: `adroit/pen`, `adroit/relocate`, the suites `adroit` and `cortexbench-adroit`, scored by
success (goal achieved on more than 20 / 25 steps), proprio the hand's joint angles, privileged MPC experts
(expert.py) and the Minari/D4RL importer (importer.py)."""
from __future__ import annotations

from functools import partial

from theia_eval.envs.adroit.frames import adroit_extra_tasks
from theia_eval.envs.adroit.importer import import_minari_adroit
from theia_eval.envs.adroit.sim import (ADROIT_TASKS, CAMERA, FAMILY, AdroitSim, AdroitTask, check_ready, facts,
                                       hand_qpos)
from theia_eval.envs.family import Family, fixed_cameras, register_family
from theia_eval.envs.tasks import DEFAULT_EXPERT, ExpertChoice, SuiteSpec, TaskSpec


def _make_sim(spec: TaskSpec, horizon: int | None = None) -> AdroitSim:
    return AdroitSim(facts(spec))


def _make_expert(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT):
    """The MPC expert (one per task; tasks.check_expert_choice refuses other kinds)."""
    from theia_eval.envs.adroit.expert import make_expert

    return make_expert(facts(spec))


def _expert_source(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT) -> str:
    from theia_eval.envs.adroit.expert import expert_source

    return expert_source(facts(spec))


def task_spec(task: AdroitTask) -> TaskSpec:
    """The TaskSpec of one Adroit task."""
    return TaskSpec(name=f"{FAMILY}/{task.name}", suite=FAMILY, camera=CAMERA, horizon=task.horizon,
                    action_dim=task.action_dim, proprio_dim=task.hand_dofs,
                    state_dim=task.state_dim, make_sim=_make_sim,
                    proprio=partial(hand_qpos, dofs=task.hand_dofs), make_expert=_make_expert,
                    expert_source=_expert_source, upstream_id=task.upstream_id, check_ready=check_ready,
                    description=f"gymnasium-robotics {task.upstream_id} (CortexBench "
                                f"{task.cortexbench_id}), success: goal on > {task.min_goal_steps} "
                                "steps, privileged MPC expert")


def family() -> Family:
    """The 2 Adroit tasks and the suites `adroit` and `cortexbench-adroit`."""
    tasks = tuple(task_spec(t) for t in ADROIT_TASKS.values())
    names = tuple(t.name for t in tasks)
    return Family(
        FAMILY, tasks,
        (SuiteSpec(FAMILY, names, demos_per_task=100, eval_episodes=25,
                   description="the Adroit hand tasks (gymnasium-robotics v1)"),
         SuiteSpec("cortexbench-adroit", names, demos_per_task=100, eval_episodes=25,
                   description="the 2 Adroit tasks of CortexBench (pen, relocate)")),
        cortexbench="cortexbench-adroit", mujoco_subset=True, importer=import_minari_adroit,
        frame_tasks=adroit_extra_tasks, frame_cameras=fixed_cameras(CAMERA, "fixed"),
        description="Adroit hand (gymnasium-robotics v1), privileged MPC experts, Minari/D4RL import")


FAMILY_SPEC = register_family(family())
