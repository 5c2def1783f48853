"""What `theia-eval frames` can render: every task of a simulator family, and each family's cameras.

A frame set needs scenes, not protocols, so a family here is the whole simulator the envs package wraps:
  metaworld  the 50 registered Meta-World v3 tasks (scripted experts)
  dmc        every task of dm_control's suite (suite.ALL_TASKS) but quadruped's (DMC_UNSUPPORTED): 18
             domains, 47 tasks; the 5 CortexBench tasks are the registered ones (privileged experts), the
             others are built here, driven by random actions only, with the action repeat of CortexBench's
             DMC tasks for their domains and 2 elsewhere
  adroit     the registered pen and relocate plus AdroitHandDoor-v1 and AdroitHandHammer-v1 (random actions)
The extra tasks are TaskSpecs that are not registered: no demos, training or evaluation use them.
Names follow the registry: `<family>/<task>`, dm_control tasks as `dmc/<domain>-<task>` (dm_control's own
spelling, e.g. dmc/ball_in_cup-catch, dmc/point_mass-easy).

Cameras (frames.yaml `cameras: null`): the task's protocol camera first, then the family's others:
  metaworld  top_cap2 (protocol), corner, corner3, topview
  dmc        the model's cameras 0 and 1 (camera 0 is the protocol camera of the CortexBench tasks and
             dm_control's default view of every domain; camera 1 is its second fixed or tracking view)
  adroit     vil_camera (protocol), fixed
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from functools import partial, cache

from theia_eval.envs.tasks import TaskSpec, get_task, list_tasks
from theia_eval.errors import InputError, unknown_name

EXTRA_ACTION_REPEAT = 2  # dm_control domains outside CortexBench
DMC_UNSUPPORTED = {  # domain -> why it is left out
    "quadruped": "dm_control 1.0.28's quadruped calls numpy.in1d (gone in numpy 2), and quadruped-escape uploads "
                 "its terrain through dm_control's own GL backend, which this project keeps off (envs/dmc.py)"}
DMC_CAMERAS = 2  # cameras 0 .. DMC_CAMERAS-1 of each dm_control model


# --- extra dm_control tasks -----------------------------------------------------------------------
def _dmc_sim(task, spec: TaskSpec, horizon: int | None = None):
    from theia_eval.envs.dmc import DMCSim

    return DMCSim(task, horizon or spec.horizon)


def dmc_extra_tasks() -> list[TaskSpec]:
    """Unregistered TaskSpecs of every dm_control suite task that CortexBench does not use."""
    from theia_eval.envs.dmc import DMC_TASKS, DMCTask, dm_control_suite, no_proprio
    from theia_eval.envs.simstate import state_size

    suite = dm_control_suite()
    registered = {(t.domain, t.task) for t in DMC_TASKS.values()}
    repeats = {t.domain: t.action_repeat for t in DMC_TASKS.values()}
    specs = []
    for domain, task in suite.ALL_TASKS:
        if (domain, task) in registered or domain in DMC_UNSUPPORTED:
            continue
        env = suite.load(domain, task)  # cameras, action and state sizes (the model can differ per task)
        m = env.physics.model.ptr
        camera, action_dim, state_dim = m.camera(0).name, int(env.action_spec().shape[0]), state_size(m)
        env.close()
        facts = DMCTask(f"{domain}-{task}", domain, task, repeats.get(domain, EXTRA_ACTION_REPEAT), camera,
                        action_dim, success_return=float("inf"))
        specs.append(TaskSpec(name=f"dmc/{facts.name}", suite="dmc", camera=camera, horizon=facts.horizon,
                              action_dim=action_dim, proprio_dim=0, state_dim=state_dim,
                              make_sim=partial(_dmc_sim, facts), proprio=no_proprio, upstream_id=f"{domain}-{task}",
                              description=f"dm_control {domain}-{task} (frames only, random actions)"))
    return specs


# --- extra Adroit tasks ---------------------------------------------------------------------------
ADROIT_EXTRA = {"door": ("AdroitHandDoor-v1", "door-v0", 28, 30), "hammer": ("AdroitHandHammer-v1", "hammer-v0", 26, 33)}


def _adroit_sim(task, spec: TaskSpec, horizon: int | None = None):
    from theia_eval.envs.adroit import AdroitSim

    return AdroitSim(task)


def adroit_extra_tasks() -> list[TaskSpec]:
    """Unregistered TaskSpecs of the Adroit door and hammer tasks (gymnasium-robotics v1)."""
    from theia_eval.envs.adroit import CAMERA, AdroitTask, hand_qpos

    specs = []
    for name, (upstream, original, dofs, nq) in ADROIT_EXTRA.items():
        task = AdroitTask(name, upstream, original, horizon=200, min_goal_steps=25, hand_dofs=dofs, action_dim=dofs,
                          nq=nq, params=())
        specs.append(TaskSpec(name=f"adroit/{name}", suite="adroit", camera=CAMERA, horizon=task.horizon,
                              action_dim=dofs, proprio_dim=dofs, state_dim=task.state_dim,
                              make_sim=partial(_adroit_sim, task), proprio=partial(hand_qpos, dofs=dofs),
                              upstream_id=upstream, description=f"gymnasium-robotics {upstream} (frames only, "
                                                                "random actions)"))
    return specs


# --- families -------------------------------------------------------------------------------------
def registered(family: str) -> Callable[[], list[TaskSpec]]:
    return lambda: [get_task(n) for n in list_tasks(f"{family}/*")]


FAMILIES: dict[str, Callable[[], list[TaskSpec]]] = {
    "metaworld": registered("metaworld"),
    "dmc": lambda: registered("dmc")() + dmc_extra_tasks(),
    "adroit": lambda: registered("adroit")() + adroit_extra_tasks(),
}


def fixed_cameras(*names: str) -> Callable[[TaskSpec, list[str]], list[str]]:
    return lambda task, available: list(names)


def first_cameras(count: int) -> Callable[[TaskSpec, list[str]], list[str]]:
    return lambda task, available: available[:count]


FAMILY_CAMERAS: dict[str, Callable[[TaskSpec, list[str]], list[str]]] = {
    "metaworld": fixed_cameras("top_cap2", "corner", "corner3", "topview"),
    "dmc": first_cameras(DMC_CAMERAS),
    "adroit": fixed_cameras("vil_camera", "fixed"),
}


@cache
def family_tasks(family: str) -> tuple[TaskSpec, ...]:
    """Every renderable task of a family."""
    import theia_eval.envs  # noqa: F401  (registers the tasks)

    if family not in FAMILIES:
        raise unknown_name("frame family", family, FAMILIES)
    return tuple(FAMILIES[family]())


def suite_tasks(suite: str) -> list[TaskSpec]:
    """A family's tasks (metaworld, dmc, adroit), or a registered suite's (cortexbench-dmc, ...)."""
    from theia_eval.envs import get_suite, list_suites

    if suite in FAMILIES:
        return list(family_tasks(suite))
    if suite in list_suites():
        return [get_task(n) for n in get_suite(suite).tasks]
    raise unknown_name("frame suite", suite, [*FAMILIES, *list_suites()])


def match_tasks(patterns: list[str]) -> list[TaskSpec]:
    """Tasks named by patterns (globs allowed, e.g. dmc/quadruped-*) or suite names, in pattern order."""
    from theia_eval.envs import list_suites

    out: dict[str, TaskSpec] = {}
    for p in patterns:
        if "/" not in p and (p in FAMILIES or p in list_suites()):
            found = suite_tasks(p)
        else:
            family = p.split("/", 1)[0]
            pool = family_tasks(family) if family in FAMILIES else ()
            found = [t for t in pool if fnmatch.fnmatchcase(t.name, p)]
        if not found:
            raise InputError(f"frame task '{p}' matches no task; use family/task names (globs allowed) of "
                             f"{', '.join(FAMILIES)} or a suite name (`theia-eval tasks` lists the registered ones).")
        out.update({t.name: t for t in found})
    return list(out.values())


def frame_tasks(suite: str, tasks: list[str] | None = None, exclude: list[str] | None = None) -> list[TaskSpec]:
    """The tasks of a frame set: `tasks` (patterns or suite names) or the suite's, minus `exclude` (patterns or
    registered suite names, e.g. cortexbench-metaworld)."""
    from theia_eval.envs import get_suite, list_suites

    chosen = match_tasks(list(tasks)) if tasks else suite_tasks(suite)
    drop = [n for p in (exclude or []) for n in (get_suite(p).tasks if p in list_suites() else [p])]
    kept = [t for t in chosen if not any(fnmatch.fnmatchcase(t.name, p) for p in drop)]
    if not kept:
        raise InputError(f"no tasks left to render: exclude_tasks={drop} removes all {len(chosen)} tasks.")
    return kept


def task_cameras(task: TaskSpec, available: list[str], cameras: list[str] | None) -> list[str]:
    """The cameras to render a task from: `cameras` if given, else its protocol camera and its family's others."""
    if cameras:
        return list(cameras)
    pick = FAMILY_CAMERAS.get(task.suite, fixed_cameras())(task, available)
    return list(dict.fromkeys([task.camera, *pick]))
