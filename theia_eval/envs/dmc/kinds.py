"""The selectable experts of the DMC tasks (`theia-eval demos expert=KIND`): the analytic reacher expert, the
sampling-MPC planner (`expert.py`), the policy distilled from it (`policy.py`) and the planner guided by that
policy (`guided.py`). This module sits above all three, so none of them imports another's users."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from theia_eval.envs.dmc.expert import RECIPES, check_known, expert_source, make_expert
from theia_eval.envs.dmc.guided import GuidedExpert, guided_source
from theia_eval.envs.dmc.policy import DistilledExpert, distilled_source
from theia_eval.envs.dmc.sim import DMCTask
from theia_eval.envs.tasks import DEFAULT_EXPERT, ExpertChoice
from theia_eval.errors import InputError


@dataclass(frozen=True)
class ExpertKind:
    """One selectable expert of the DMC tasks (`theia-eval demos expert=KIND`)."""

    build: Callable[[DMCTask, ExpertChoice], object]  # (task, choice) -> expert with get_action(state)
    source: Callable[[DMCTask, ExpertChoice], str]  # what demo files record
    tasks: tuple[str, ...]  # DMC task names it exists for


def _distilled(task: DMCTask, choice: ExpertChoice):
    return DistilledExpert(task, choice.weights)


def _distilled_source(task: DMCTask, choice: ExpertChoice) -> str:
    return distilled_source(task, choice.weights)


def _guided(task: DMCTask, choice: ExpertChoice):
    return GuidedExpert(task, choice.weights)


def _guided_source(task: DMCTask, choice: ExpertChoice) -> str:
    return guided_source(task, choice.weights)


EXPERT_KINDS: dict[str, ExpertKind] = {  # a task's default kind is the first that lists it
    "analytic": ExpertKind(lambda t, c: make_expert(t), lambda t, c: expert_source(t), ("reacher-easy",)),
    "planner": ExpertKind(lambda t, c: make_expert(t), lambda t, c: expert_source(t), tuple(RECIPES)),
    "distilled": ExpertKind(_distilled, _distilled_source, ("reacher-easy", *RECIPES)),
    "guided": ExpertKind(_guided, _guided_source, tuple(RECIPES)),
}


def expert_kinds(task: DMCTask) -> tuple[str, ...]:
    """The kinds of expert a task has, its default first."""
    return tuple(k for k, kind in EXPERT_KINDS.items() if task.name in kind.tasks)


def _kind(task: DMCTask, choice: ExpertChoice) -> ExpertKind:
    check_known(task)
    kinds = expert_kinds(task)
    name = choice.kind or kinds[0]
    if name not in kinds:
        raise InputError(f"dmc/{task.name} has no '{name}' expert; its experts: {', '.join(kinds)} "
                         f"(the first is the default)")
    return EXPERT_KINDS[name]


def make_task_expert(task: DMCTask, choice: ExpertChoice = DEFAULT_EXPERT):
    """The expert `choice` names (kind None: the task's default)."""
    return _kind(task, choice).build(task, choice)


def task_expert_source(task: DMCTask, choice: ExpertChoice = DEFAULT_EXPERT) -> str:
    """What demo files made by the expert `choice` names record (planner and distilled demos never mix)."""
    return _kind(task, choice).source(task, choice)
