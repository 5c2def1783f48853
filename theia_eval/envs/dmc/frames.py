"""DMC scenes for frame sets only: every dm_control suite task CortexBench does not use, as unregistered
TaskSpecs driven by random actions (no demos, training or evaluation use them), with the action repeat of
CortexBench's DMC tasks for their domains and 2 elsewhere; names `dmc/<domain>-<task>` in dm_control's own
spelling (dmc/ball_in_cup-catch). Frame sets render the model's cameras 0 and 1 (camera 0 is the protocol
camera of the CortexBench tasks and dm_control's default view of every domain)."""
from __future__ import annotations

from functools import partial

from theia_eval.envs.dmc.sim import DMC_TASKS, DMCSim, DMCTask, dm_control_suite, no_proprio
from theia_eval.envs.simstate import state_size
from theia_eval.envs.tasks import TaskSpec

EXTRA_ACTION_REPEAT = 2  # dm_control domains outside CortexBench
DMC_UNSUPPORTED = {  # domain -> why it is left out
    "quadruped": "dm_control 1.0.28's quadruped calls numpy.in1d (gone in numpy 2), and quadruped-escape uploads "
                 "its terrain through dm_control's own GL backend, which this project keeps off (envs/dmc/sim.py)"}
DMC_CAMERAS = 2  # cameras 0 .. DMC_CAMERAS-1 of each dm_control model


def _dmc_sim(task, spec: TaskSpec, horizon: int | None = None):
    return DMCSim(task, horizon or spec.horizon)


def dmc_extra_tasks() -> list[TaskSpec]:
    """Unregistered TaskSpecs of every dm_control suite task that CortexBench does not use."""
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
