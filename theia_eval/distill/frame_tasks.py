"""What `theia-eval frames` can render: every task of a simulator family, and each family's cameras.

Both come from the suite families' registrations (envs/family.py: `frame_tasks`, `frame_cameras`; the
extra scenes are built in envs/dmc/frames.py and envs/adroit/frames.py), so a new family brings its own.
A frame set needs scenes, not protocols, so a family here is the whole simulator the envs package wraps:
  metaworld  the 50 registered Meta-World v3 tasks (scripted experts)
  dmc        every task of dm_control's suite (suite.ALL_TASKS) but quadruped's (DMC_UNSUPPORTED): 18
             domains, 47 tasks; the 5 CortexBench tasks are the registered ones (privileged experts), the
             others are built for frames only, driven by random actions only, with the action repeat of
             CortexBench's DMC tasks for their domains and 2 elsewhere
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
from functools import cache

from theia_eval.envs.family import FAMILIES as SUITE_FAMILIES
from theia_eval.envs.family import Family, fixed_cameras
from theia_eval.envs.tasks import TaskSpec, get_task, list_tasks
from theia_eval.errors import InputError, unknown_name


def registered(family: str) -> Callable[[], list[TaskSpec]]:
    return lambda: [get_task(n) for n in list_tasks(f"{family}/*")]


def with_frame_tasks(family: Family) -> Callable[[], list[TaskSpec]]:
    """The family's registered tasks, then the scenes it registers for frame sets only."""
    return lambda: registered(family.name)() + (family.frame_tasks() if family.frame_tasks else [])


# every registered suite family, in registration order (importing envs.family registers metaworld, dmc, adroit)
FAMILIES: dict[str, Callable[[], list[TaskSpec]]] = {name: with_frame_tasks(f) for name, f in SUITE_FAMILIES.items()}
FAMILY_CAMERAS: dict[str, Callable[[TaskSpec, list[str]], list[str]]] = {
    name: f.frame_cameras for name, f in SUITE_FAMILIES.items() if f.frame_cameras}


@cache
def family_tasks(family: str) -> tuple[TaskSpec, ...]:
    """Every renderable task of a family."""
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
