"""Task and suite registry: every simulated task is a `TaskSpec` registered by name.

Names are `<family>/<task>` (e.g. `metaworld/assembly`). A suite (`SuiteSpec`) is a named list of
task names plus its protocol numbers (demos per task, evaluation episodes); the same task may belong
to several suites (`metaworld` holds all 50 Meta-World tasks, `cortexbench-metaworld` the 5 of the
CortexBench protocol). Family packages (envs/metaworld/, envs/dmc/, envs/adroit/) register their
specs at import through one `Family` each (family.py); nothing outside them knows a family's details.

A `TaskSpec` builds its simulator lazily (`make_sim`), so specs are cheap, picklable facts that
can be sent to worker processes by name.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from theia_eval.errors import InputError
from theia_eval.registry import Registry


class Simulator(Protocol):
    """What a family adapter gives the generic env: MuJoCo model/data plus reset/step on a state."""

    model: object  # mujoco.MjModel (rendered by envs.renderer)
    data: object  # mujoco.MjData

    def reset(self, seed: int) -> np.ndarray:
        """Reset to the episode drawn by `seed`; return the state vector."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, dict]:
        """Apply one action; return (state, reward, info with a bool 'success')."""

    def close(self) -> None:
        """Free simulator resources."""


class Expert(Protocol):
    """A scripted or learned expert: maps a simulator state to an action."""

    def get_action(self, state: np.ndarray) -> np.ndarray:
        """Action for this state."""


@dataclass(frozen=True)
class ExpertChoice:
    """Which of a task's experts acts: `kind` None = the task's default (`TaskSpec.expert_kinds`' first);
    `weights` = where a learned expert's weights are (a file, or a folder of `<task>.safetensors`; None = the
    weights shipped with the package)."""

    kind: str | None = None
    weights: str | None = None


DEFAULT_EXPERT = ExpertChoice()


def final_step_success(flags: np.ndarray) -> bool:
    """Episode success = the per-step success flag at the final step (Meta-World protocol)."""
    return bool(len(flags) and flags[-1])


@dataclass(frozen=True)
class TaskSpec:
    """Facts of one task and how to build its simulator, proprio and expert."""

    name: str  # "<family>/<task>", e.g. "metaworld/assembly"
    suite: str  # family, e.g. "metaworld"
    camera: str  # default camera of the protocol
    horizon: int  # steps per evaluation episode
    action_dim: int
    proprio_dim: int
    state_dim: int
    make_sim: Callable[..., Simulator]  # make_sim(spec, horizon=..., cameras=...) -> Simulator
    proprio: Callable[[np.ndarray], np.ndarray]  # state vector -> proprio vector
    episode_success: Callable[[np.ndarray], bool] = final_step_success  # per-step flags -> bool
    make_expert: Callable[..., Expert] | None = None  # make_expert(spec, choice=DEFAULT_EXPERT)
    upstream_id: str = ""  # the family's own id (e.g. "assembly-v3")
    description: str = ""
    action_bound: float = 1.0  # every simulator here executes actions clipped to [-bound, bound]
    # what made the demos (stored in each demo file; a file of another expert setting is refused): None =
    # "scripted-expert" (code-only experts); tunable experts (the DMC and Adroit planners) name their settings
    expert_source: Callable[..., str] | None = None  # expert_source(spec, choice=DEFAULT_EXPERT)
    expert_kinds: tuple[str, ...] = ()  # selectable experts, the default first; () = one expert, not selectable
    # raises InputError when something the simulator loads is missing here (a package, a model file): the verbs
    # call it (check_ready) before they create any output; None = nothing to check
    check_ready: Callable[[TaskSpec], None] | None = None

    def executed_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions as the simulator executes them (clipped to [-action_bound, action_bound]): what demo files
        store, whatever a policy or an imported file asked for."""
        return np.clip(actions, -self.action_bound, self.action_bound)


@dataclass(frozen=True)
class SuiteSpec:
    """A named list of tasks with its protocol numbers."""

    name: str
    tasks: tuple[str, ...]
    demos_per_task: int = 25
    eval_episodes: int = 25
    description: str = ""


TASKS: Registry[TaskSpec] = Registry("task")
SUITES: Registry[SuiteSpec] = Registry("suite")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task (name must be new)."""
    return TASKS.add(spec.name, spec)


def register_suite(suite: SuiteSpec) -> SuiteSpec:
    """Add a suite whose tasks are all registered already."""
    if suite.name in SUITES:
        SUITES.add(suite.name, suite)  # raises the registry's duplicate-name error
    for name in suite.tasks:
        get_task(name)
    return SUITES.add(suite.name, suite)


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Look up a task by name (a TaskSpec passes through); unknown names suggest close ones."""
    if isinstance(name, TaskSpec):
        return name
    return TASKS.get_entry(name)


def get_suite(name: str) -> SuiteSpec:
    """Look up a suite by name; unknown names suggest close ones."""
    return SUITES.get_entry(name)


def list_tasks(pattern: str = "*") -> list[str]:
    """Registered task names matching a shell pattern, sorted."""
    return sorted(n for n in TASKS if fnmatch.fnmatch(n, pattern))


def list_suites() -> list[str]:
    return sorted(SUITES)


def resolve_tasks(suite: str | None = None, task: str | None = None) -> list[TaskSpec]:
    """The tasks named by exactly one of `suite` or `task`."""
    if (suite is None) == (task is None):
        raise InputError("name exactly one of suite=NAME or task=NAME "
                         f"(suites: {', '.join(list_suites())}; `theia-eval tasks` lists tasks)")
    if task is not None:
        return [get_task(task)]
    return [get_task(n) for n in get_suite(suite).tasks]


def check_ready(specs: Iterable[TaskSpec]) -> None:
    """Refuse tasks whose simulator cannot be built here (TaskSpec.check_ready), before a verb writes anything."""
    for spec in specs:
        if spec.check_ready is not None:
            spec.check_ready(spec)


def check_expert_choice(spec: TaskSpec, choice: ExpertChoice) -> None:
    """Refuse an expert kind the task does not have (kind None is always the default)."""
    if spec.make_expert is None:
        raise InputError(f"{spec.name} has no expert: its demos must be imported, not collected")
    if choice.kind is not None and choice.kind not in spec.expert_kinds:
        have = (f"its experts: {', '.join(spec.expert_kinds)} (the first is the default)" if spec.expert_kinds
                else "it has one expert, not selectable (expert=null)")
        raise InputError(f"{spec.name} has no '{choice.kind}' expert; {have}")


def task_expert(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT) -> Expert:
    """The task's expert named by `choice` (the default one when choice.kind is None)."""
    check_expert_choice(spec, choice)
    return spec.make_expert(spec, choice)


def task_expert_source(spec: TaskSpec, choice: ExpertChoice = DEFAULT_EXPERT) -> str | None:
    """What demo files of that expert record as their source (None: a code-only scripted expert)."""
    check_expert_choice(spec, choice)
    return None if spec.expert_source is None else spec.expert_source(spec, choice)


def episode_seeds(base_seed: int, count: int) -> list[int]:
    """Seeds of `count` episodes: episode i uses base_seed + i (the CortexBench convention)."""
    return [int(base_seed) + i for i in range(int(count))]
