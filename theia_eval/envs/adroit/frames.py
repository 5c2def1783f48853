"""Adroit scenes for frame sets only: AdroitHandDoor-v1 and AdroitHandHammer-v1 (gymnasium-robotics v1) as
unregistered TaskSpecs driven by random actions (no demos, training or evaluation use them)."""
from __future__ import annotations

from functools import partial

from theia_eval.envs.adroit.sim import CAMERA, AdroitSim, AdroitTask, hand_qpos
from theia_eval.envs.tasks import TaskSpec

ADROIT_EXTRA = {"door": ("AdroitHandDoor-v1", "door-v0", 28, 30), "hammer": ("AdroitHandHammer-v1", "hammer-v0", 26, 33)}


def _adroit_sim(task, spec: TaskSpec, horizon: int | None = None):
    return AdroitSim(task)


def adroit_extra_tasks() -> list[TaskSpec]:
    """Unregistered TaskSpecs of the Adroit door and hammer tasks (gymnasium-robotics v1)."""
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
