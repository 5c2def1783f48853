"""A suite family: one simulator's tasks, suites and scoring, registered once by its package envs/<name>/.

A `Family` (metaworld, dmc, adroit) is the unit a simulated suite is added by: its folder holds the
simulator, the expert, the task facts, an optional dataset importer and the score rule, and its `suite.py`
registers one `Family`, which registers its tasks and suites with it. The family name is what
`TaskSpec.suite`, demo folders, the results store's `suite` column and sweeps' `suite_overrides` use. The
layers above learn what they need from here, never from a family's name: evaluation and the store score an
episode with `score` (else success), sweeps find the protocol numbers in the `cortexbench` suite, and the
leaderboard's MuJoCo-subset score covers the families with `mujoco_subset`, and `theia-eval frames` renders a
family's tasks plus its `frame_tasks` from its `frame_cameras`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from theia_eval.envs.tasks import SuiteSpec, TaskSpec, get_suite, register_suite, register_task
from theia_eval.errors import InputError
from theia_eval.registry import Registry


@dataclass(frozen=True)
class Family:
    """One simulator family: its tasks and suites, how its episodes score, where it sits in CortexBench."""

    name: str  # e.g. "dmc": TaskSpec.suite of its tasks
    tasks: tuple[TaskSpec, ...]
    suites: tuple[SuiteSpec, ...]  # named task lists, e.g. "dmc" (all) and "cortexbench-dmc"
    cortexbench: str | None = None  # the suite (of `suites`) holding the CortexBench protocol numbers
    score: Callable[[float], float] | None = None  # episode return -> normalized score 0-100; None: success
    mujoco_subset: bool = False  # part of CortexBench's MuJoCo subset (the leaderboard's overall score)
    importer: Callable[..., Any] | None = None  # renders a public dataset as demos (`demos --import DIR`)
    frame_tasks: Callable[[], list[TaskSpec]] | None = None  # unregistered scenes only frame sets render
    frame_cameras: Callable[[TaskSpec, list[str]], list[str]] | None = None  # (task, its cameras) -> frame cameras
    description: str = ""

    @property
    def has_proprio(self) -> bool:
        """Whether its policies see proprioception (DMC's do not)."""
        return any(t.proprio_dim for t in self.tasks)

    def protocol_suite(self) -> SuiteSpec | None:
        """Its CortexBench suite (demos per task, evaluation episodes), if it is part of CortexBench."""
        return None if self.cortexbench is None else get_suite(self.cortexbench)


def fixed_cameras(*names: str) -> Callable[[TaskSpec, list[str]], list[str]]:
    """A `frame_cameras` rule: these cameras for every task."""
    return lambda task, available: list(names)


def first_cameras(count: int) -> Callable[[TaskSpec, list[str]], list[str]]:
    """A `frame_cameras` rule: the model's first `count` cameras."""
    return lambda task, available: available[:count]


FAMILIES: Registry[Family] = Registry("suite family")


def register_family(family: Family) -> Family:
    """Register a family with its tasks and suites (every name must be new; nothing is registered when one is
    taken)."""
    from theia_eval.envs.tasks import SUITES, TASKS

    for registry, name in ((FAMILIES, family.name), *((TASKS, t.name) for t in family.tasks),
                           *((SUITES, s.name) for s in family.suites)):
        if name in registry:
            registry.add(name, None)  # raises the registry's duplicate-name error before anything is added
    wrong = [t.name for t in family.tasks if t.suite != family.name]
    if wrong:
        raise InputError(f"tasks {wrong} of family '{family.name}' must have suite='{family.name}'")
    if family.cortexbench is not None and family.cortexbench not in {s.name for s in family.suites}:
        raise InputError(f"family '{family.name}': its CortexBench suite '{family.cortexbench}' is not one of its "
                         f"suites {[s.name for s in family.suites]}")
    for task in family.tasks:
        register_task(task)
    for suite in family.suites:
        register_suite(suite)
    return FAMILIES.add(family.name, family)


def get_family(name: str) -> Family:
    """Look up a family by name; unknown names suggest close ones."""
    return FAMILIES.get_entry(name)


def list_families() -> list[str]:
    """Registered family names, in registration order."""
    return list(FAMILIES)


def mujoco_subset() -> tuple[str, ...]:
    """The families of CortexBench's MuJoCo subset, in registration order."""
    return tuple(name for name, f in FAMILIES.items() if f.mujoco_subset)


def normalized_scores(family: str, returns: list[float]) -> list[float] | None:
    """The family's normalized score of each episode return; None when it scores by success."""
    fam = FAMILIES.get(family)
    if fam is None or fam.score is None:
        return None
    return [float(fam.score(r)) for r in returns]


def episode_scores(info: dict) -> tuple[str, list[float]]:
    """(metric, per-episode score 0-100) of an eval_info: the suite's normalized score where defined, else
    success x 100."""
    scores = normalized_scores(info["suite"], [e["return"] for e in info["per_episode"]])
    if scores is not None:
        return "normalized_score", scores
    return "success", [100.0 * bool(e["success"]) for e in info["per_episode"]]
