"""The DMC family: 5 dm_control tasks (`dmc/<domain>-<task>`), the suites `dmc` and `cortexbench-dmc`,
no proprio, scored by return / 10 (DMC has no success flag), with privileged experts (expert.py)."""
from __future__ import annotations

from theia_eval.envs.dmc.frames import DMC_CAMERAS, dmc_extra_tasks
from theia_eval.envs.dmc.sim import DMC_TASKS, FAMILY, STATE_DIMS, DMCSim, DMCTask, facts, no_proprio
from theia_eval.envs.family import Family, first_cameras, register_family
from theia_eval.envs.simstate import params_size
from theia_eval.envs.tasks import DEFAULT_EXPERT, ExpertChoice, SuiteSpec, TaskSpec

CORTEXBENCH_TASKS = ("walker-stand", "walker-walk", "reacher-easy", "cheetah-run", "finger-spin")


def _make_sim(spec: TaskSpec, horizon: int | None = None) -> DMCSim:
    return DMCSim(facts(spec), horizon or spec.horizon)


def _make_expert(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT):
    from theia_eval.envs.dmc.kinds import make_task_expert

    return make_task_expert(facts(spec), choice)


def _expert_source(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT) -> str:
    from theia_eval.envs.dmc.kinds import task_expert_source

    return task_expert_source(facts(spec), choice)


def _expert_kinds(task: DMCTask) -> tuple[str, ...]:
    from theia_eval.envs.dmc.kinds import expert_kinds

    return expert_kinds(task)


def normalized_score(episode_return: float) -> float:
    """CortexBench DMC score: return / 10 (a 1000-step episode scores at most 100)."""
    return float(episode_return) / 10.0


def task_spec(task: DMCTask) -> TaskSpec:
    """The TaskSpec of one DMC task."""
    return TaskSpec(name=f"{FAMILY}/{task.name}", suite=FAMILY, camera=task.camera,
                    horizon=task.horizon, action_dim=task.action_dim, proprio_dim=0,
                    state_dim=STATE_DIMS[task.domain] + params_size(task.params),
                    make_sim=_make_sim, proprio=no_proprio, make_expert=_make_expert,
                    expert_source=_expert_source, expert_kinds=_expert_kinds(task), upstream_id=task.upstream_id,
                    description=f"dm_control {task.domain}-{task.task}, action repeat "
                                f"{task.action_repeat}, camera 0 ({task.camera}), privileged expert")


def family() -> Family:
    """The 5 DMC tasks, the suites `dmc` and `cortexbench-dmc`, and the score (return / 10)."""
    tasks = tuple(task_spec(t) for t in DMC_TASKS.values())
    return Family(
        FAMILY, tasks,
        (SuiteSpec(FAMILY, tuple(t.name for t in tasks), demos_per_task=100, eval_episodes=10,
                   description="the DMC tasks with privileged experts"),
         SuiteSpec("cortexbench-dmc", tuple(f"{FAMILY}/{t}" for t in CORTEXBENCH_TASKS),
                   demos_per_task=100, eval_episodes=10,
                   description="the 5 DMC tasks of CortexBench (score = return / 10)")),
        cortexbench="cortexbench-dmc", score=normalized_score, mujoco_subset=True,
        frame_tasks=dmc_extra_tasks, frame_cameras=first_cameras(DMC_CAMERAS),
        description="DeepMind Control Suite (dm_control), privileged experts")


FAMILY_SPEC = register_family(family())
