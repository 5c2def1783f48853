"""Expert demonstration collection: successful episodes only, parallel, resumable, atomic.

Seeds: candidate j of a task uses seed `base_seed + j` (default 54321, the seed eai-vc used for
its training paths; evaluation uses other seeds). Demos are the first `num_demos` candidates, in
seed order, whose expert episode succeeds under the task's rule (Meta-World: success flag at the
final kept step); failed seeds are skipped and recorded. The result depends only on the config,
never on the number of workers or on interruptions.

Episode length: by default an episode runs to the horizon (post_success_steps=None, the protocol), or
stops `post_success_steps` steps after the first success when that is set. Frames after the first success are kept so policies see the
"hold it" phase; the CortexBench pickles came from mjrl-style full-horizon rollouts as far as the
eai-vc code shows (its dataset code assumes equal-length paths), which the importer reads as-is.

Each episode runs twice in its worker: once without rendering (the expert acts; cheap), and, if it
succeeded, replayed with rendering of exactly the kept frames. The replay checks that every state
matches the first run, so nondeterminism is caught, not written.

Experts: each task's default one, or another kind the task has (`DemoConfig.expert`, e.g. DMC's `distilled`, with
`expert_weights`; `tasks.task_expert`). Files record the expert in `DatasetMeta.source`, so demos of one expert
(or one weights file) never join a file of another: the recipe check below refuses it.

Resume/atomicity: every accepted demo is written at once as its own small file in
`<file>.parts/` (temporary name, then renamed), failed seeds in `<file>.parts/failed_seeds.json`.
When the task has enough demos the parts (and any demos of an existing final file) are merged into
a temporary file renamed onto `<file>`. A killed run leaves only complete parts; a rerun collects
only the missing demos.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from theia_eval.envs.dataset import (DatasetMeta, DemoFile, DemoRef, Episode, Storage, atomic_h5,
                                     merge_demos, write_episode)
from theia_eval.envs.env import TaskEnv
from theia_eval.envs.renderer import RenderSpec
from theia_eval.envs.tasks import (DEFAULT_EXPERT, ExpertChoice, TaskSpec, get_task, task_expert,
                                   task_expert_source)
from theia_eval.errors import InputError, TheiaEvalError
from theia_eval.io import read_json, remove_stale_temp_files
from theia_eval.settings import DemosConfig

_DEMOS = DemosConfig()  # the `demos` verb's defaults (theia_eval.settings): DemoConfig's defaults
DEFAULT_BASE_SEED = _DEMOS.seed


class DeterminismError(TheiaEvalError, RuntimeError):
    """A replayed episode diverged from its first run."""


@dataclass(frozen=True)
class DemoConfig:
    """How to collect demos for one task (see configs/demos.yaml for the CLI keys)."""

    num_demos: int = _DEMOS.num_demos
    base_seed: int = DEFAULT_BASE_SEED
    post_success_steps: int | None = _DEMOS.post_success_steps
    horizon: int | None = _DEMOS.horizon  # None: the task's horizon
    max_failures: int | None = _DEMOS.max_failures  # None: 2 * num_demos + 10
    workers: int = _DEMOS.workers  # 0: collect in this process
    render: RenderSpec = field(default_factory=lambda: RenderSpec(_DEMOS.preset, _DEMOS.resolution, _DEMOS.crop))
    camera: str | None = _DEMOS.camera  # None: the task's camera
    storage: Storage = field(default_factory=lambda: Storage(_DEMOS.compression, _DEMOS.compression_level))
    valid_fraction: float = _DEMOS.valid_fraction
    progress: bool = _DEMOS.progress
    expert: str | Mapping[str, str] | None = _DEMOS.expert  # None: each task's default; KIND; {task: KIND}
    expert_weights: str | None = _DEMOS.expert_weights  # learned experts: a file or a folder of <task>.safetensors

    def __post_init__(self) -> None:
        if int(self.num_demos) <= 0:
            raise InputError(f"num_demos must be >= 1, got {self.num_demos}")
        if self.post_success_steps is not None and int(self.post_success_steps) < 0:
            raise InputError(f"post_success_steps must be >= 0 or null, got {self.post_success_steps}")
        if int(self.workers) < 0:
            raise InputError(f"workers must be >= 0 (0 = this process), got {self.workers}")
        if isinstance(self.expert, Mapping):
            for name, kind in self.expert.items():
                get_task(name)  # unknown task names suggest close ones
                if kind is not None and not isinstance(kind, str):
                    raise InputError(f"expert.{name} must be an expert kind (text) or null, got {kind!r}")
        elif self.expert is not None and not isinstance(self.expert, str):
            raise InputError(f"expert must be null, an expert kind or a mapping {{task: kind}}, got {self.expert!r}")

    def expert_choice(self, task: TaskSpec) -> ExpertChoice:
        """The expert that makes this task's demos."""
        kind = self.expert.get(task.name) if isinstance(self.expert, Mapping) else self.expert
        return ExpertChoice(kind, None if self.expert_weights is None else str(self.expert_weights))

    @property
    def failure_budget(self) -> int:
        return self.max_failures if self.max_failures is not None else 2 * self.num_demos + 10


@dataclass(frozen=True)
class Job:
    """One candidate episode, sent to a worker."""

    task: str
    seed: int
    render: RenderSpec
    camera: str | None
    horizon: int
    post_success_steps: int | None
    expert: ExpertChoice = DEFAULT_EXPERT


@dataclass
class ExpertRun:
    """The expert's actions and states of one episode (no frames)."""

    seed: int
    actions: list[np.ndarray]
    states: list[np.ndarray]  # states[t] is the state before actions[t]; one more than actions
    rewards: list[float]
    flags: list[bool]


def run_expert(env: TaskEnv, expert, seed: int, post_success_steps: int | None) -> ExpertRun:
    """Roll the expert out without rendering until the stop rule (see module doc)."""
    env.reset(seed, render=False)
    run = ExpertRun(seed, [], [env.raw_state.copy()], [], [])
    first = None
    for t in range(env.horizon):
        action = expert.get_action(env.raw_state)
        _, reward, _, info = env.step(action, render=False)
        run.actions.append(info["action"])  # the executed (clipped) action, not the expert's raw output
        run.states.append(env.raw_state.copy())
        run.rewards.append(reward)
        run.flags.append(info["success"])
        first = t if first is None and info["success"] else first
        if first is not None and post_success_steps is not None and t - first >= post_success_steps:
            break
    return run


def record(env: TaskEnv, run: ExpertRun) -> Episode:
    """Replay a successful run with rendering of the kept frames, checking every state."""
    n = len(run.actions)
    obs = env.reset(run.seed)
    rgb = np.empty((n,) + obs["rgb"].shape, dtype=np.uint8)
    proprio = np.empty((n,) + obs["proprio"].shape, dtype=np.float32)
    state = np.empty((n,) + obs["state"].shape, dtype=np.float32)
    for t, action in enumerate(run.actions):
        _check_same(env, run, t)
        rgb[t], proprio[t], state[t] = obs["rgb"], obs["proprio"], obs["state"]
        obs, _, _, _ = env.step(action, render=t + 1 < n)
    _check_same(env, run, n)
    return Episode(rgb=rgb, proprio=proprio, state=state,
                   actions=np.asarray(run.actions, dtype=np.float32),
                   rewards=np.asarray(run.rewards, dtype=np.float32),
                   success=np.asarray(run.flags, dtype=bool), seed=run.seed)


def _check_same(env: TaskEnv, run: ExpertRun, t: int) -> None:
    if not np.array_equal(env.raw_state, run.states[t]):
        raise DeterminismError(f"{env.task.name} seed {run.seed}: the replay diverged at step {t} "
                               "(simulation is not deterministic for this task/seed)")


_WORKER_ENVS: dict[tuple, TaskEnv] = {}


def _worker_env(job: Job) -> TaskEnv:
    """This process's env for the job's settings (one at a time; built on first use)."""
    key = (job.task, job.render, job.camera, job.horizon)
    if key not in _WORKER_ENVS:
        for old in _WORKER_ENVS.values():
            old.close()
        _WORKER_ENVS.clear()
        _WORKER_ENVS[key] = TaskEnv(job.task, job.render, camera=job.camera, horizon=job.horizon)
    return _WORKER_ENVS[key]


def close_worker_envs() -> None:
    for env in _WORKER_ENVS.values():
        env.close()
    _WORKER_ENVS.clear()


def _worker_init() -> None:
    from multiprocessing import util

    util.Finalize(None, close_worker_envs, exitpriority=10)


def collect_episode(job: Job) -> Episode | None:
    """The demo of one candidate seed, or None when the expert failed."""
    env = _worker_env(job)
    spec = env.task
    run = run_expert(env, task_expert(spec, job.expert), job.seed, job.post_success_steps)
    if not spec.episode_success(np.asarray(run.flags, dtype=bool)):
        return None
    return record(env, run)


# ------------------------------------------------------------------------------- files and resume
def demo_path(out_dir: str | Path, task: TaskSpec) -> Path:
    """<out_dir>/<family>/<task>.hdf5"""
    return Path(out_dir) / task.suite / f"{task.name.split('/', 1)[1]}.hdf5"


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def recipe_meta(task: TaskSpec, cfg: DemoConfig) -> DatasetMeta:
    """The metadata every demo of this collection carries (seeds filled in at merge)."""
    source = task_expert_source(task, cfg.expert_choice(task))
    source = {} if source is None else {"source": source}
    return DatasetMeta(task=task.name, suite=task.suite, camera=cfg.camera or task.camera,
                       render=cfg.render, horizon=int(cfg.horizon or task.horizon),
                       post_success_steps=cfg.post_success_steps, base_seed=int(cfg.base_seed), **source)


@dataclass
class Progress:
    """Demos already on disk for a task (final file + parts) and the seeds tried so far."""

    refs: list[DemoRef]
    failed: set[int]
    has_parts: bool

    @property
    def next_seed(self) -> int | None:
        tried = [r.seed for r in self.refs] + list(self.failed)
        return max(tried) + 1 if tried else None


def _check_recipe(found: DatasetMeta, wanted: DatasetMeta, where: Path) -> None:
    if not found.same_recipe(wanted):
        keys = ("task", "camera", "render", "horizon", "post_success_steps", "base_seed", "source")
        diff = {k: (getattr(found, k), getattr(wanted, k)) for k in keys
                if getattr(found, k) != getattr(wanted, k)}
        raise InputError(f"{where} holds demos made with other settings (found, requested): "
                         f"{diff}. Use another out_dir, request the same settings, or delete it.")


def scan_progress(path: Path, wanted: DatasetMeta) -> Progress:
    """Read what a previous (possibly killed) run left; refuse files of another recipe."""
    refs, failed = [], set()
    if path.exists():
        with DemoFile(path) as demos:
            _check_recipe(demos.meta, wanted, path)
            refs += [DemoRef(path, d.name, d.seed) for d in demos]
            failed |= set(demos.meta.failed_seeds)
    parts = parts_dir(path)
    part_files = sorted(parts.glob("seed_*.h5")) if parts.is_dir() else []
    for part in part_files:
        with DemoFile(part) as demos:
            _check_recipe(demos.meta, wanted, part)
            refs += [DemoRef(part, d.name, d.seed) for d in demos]
    failed_file = parts / "failed_seeds.json"
    if failed_file.exists():
        seeds = read_json(failed_file, "the failed-seeds record")
        if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
            raise InputError(f"{failed_file} must hold a list of seeds, got {seeds!r}: delete it and run again.")
        failed |= set(seeds)
    unique = {r.seed: r for r in refs}
    return Progress(sorted(unique.values(), key=lambda r: r.seed), failed, bool(part_files))


def write_part(path: Path, ep: Episode, meta: DatasetMeta, storage: Storage) -> DemoRef:
    """Write one accepted demo as its own complete file in the parts folder (atomic)."""
    part = parts_dir(path) / f"seed_{ep.seed}.h5"
    with atomic_h5(part) as f:
        write_episode(f.create_group("data/demo_0"), ep, storage)
        f["data"].attrs["env_args"] = json.dumps(replace(meta, seeds=(ep.seed,)).env_args())
        f["data"].attrs["total"] = len(ep)
    return DemoRef(part, "demo_0", ep.seed)


def write_failed(path: Path, failed: set[int]) -> None:
    """Record failed seeds (atomically) so a resumed run does not retry them."""
    target = parts_dir(path) / "failed_seeds.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(sorted(failed)))
    os.replace(tmp, target)


def remove_parts(path: Path) -> None:
    parts = parts_dir(path)
    if parts.is_dir():
        for child in parts.iterdir():
            child.unlink()
        parts.rmdir()


# ----------------------------------------------------------------------------------- collection
@dataclass
class TaskReport:
    """What one `collect_task` call did."""

    task: str
    path: Path
    demos: int
    new_demos: int
    failed_seeds: list[int]
    seconds: float


class EpisodeRunner:
    """Runs jobs in order, inline or in a process pool, yielding (seed, result) in seed order."""

    def __init__(self, workers: int) -> None:
        self.workers, self.pool = workers, None
        if workers > 0:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])  # import once in the server, fork workers from it
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)

    def results(self, jobs, needed: Callable[[], int]):
        """Yield (seed, episode or None) in job order; keeps at most `needed()` jobs in flight."""
        if self.pool is None:
            for job in jobs:
                yield job.seed, collect_episode(job)
            return
        window: deque = deque()
        try:
            while True:
                while len(window) < max(1, min(2 * self.workers, needed())):
                    job = next(jobs)
                    window.append((job.seed, self.pool.submit(collect_episode, job)))
                seed, fut = window.popleft()
                yield seed, fut.result()
        finally:
            for _, fut in window:
                fut.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        else:
            close_worker_envs()


def collect_task(task: str | TaskSpec, out_dir: str | Path, cfg: DemoConfig,
                 runner: EpisodeRunner | None = None,
                 on_demo: Callable[[Episode], None] | None = None) -> TaskReport:
    """Collect (or complete) the demo file of one task; returns a report."""
    spec = get_task(task)
    if spec.make_expert is None:
        raise InputError(f"{spec.name} has no expert: its demos must be imported, not collected")
    start = time.perf_counter()
    path = demo_path(out_dir, spec)
    meta = recipe_meta(spec, cfg)
    for folder in (path.parent, parts_dir(path)):  # temporary files of killed runs
        remove_stale_temp_files(folder)
    progress = scan_progress(path, meta)
    missing = cfg.num_demos - len(progress.refs)
    new = 0
    if missing > 0:
        new = _collect_missing(spec, path, meta, cfg, progress, missing, runner, on_demo)
    if progress.has_parts or new:
        merge_demos(path, progress.refs, replace(meta, failed_seeds=tuple(sorted(progress.failed))),
                    cfg.valid_fraction)
        remove_parts(path)
    return TaskReport(spec.name, path, len(progress.refs), new, sorted(progress.failed),
                      time.perf_counter() - start)


def _collect_missing(spec: TaskSpec, path: Path, meta: DatasetMeta, cfg: DemoConfig,
                     progress: Progress, missing: int, runner: EpisodeRunner | None,
                     on_demo: Callable[[Episode], None] | None) -> int:
    """Run candidates in seed order until `missing` more demos succeeded (mutates progress)."""
    from tqdm import tqdm

    own_runner = runner is None
    runner = runner or EpisodeRunner(cfg.workers)
    start = progress.next_seed if progress.next_seed is not None else int(cfg.base_seed)
    choice = cfg.expert_choice(spec)
    jobs = (Job(spec.name, s, cfg.render, cfg.camera, meta.horizon, cfg.post_success_steps, choice)
            for s in itertools.count(start))
    bar = tqdm(total=cfg.num_demos, initial=len(progress.refs), desc=spec.name, unit="demo",
               disable=not cfg.progress)
    new, failures = 0, 0
    try:
        for seed, episode in runner.results(jobs, needed=lambda: missing - new):  # noqa: B023  (the running count)
            if episode is None:
                failures += 1
                progress.failed.add(seed)
                write_failed(path, progress.failed)
                _check_failures(spec, failures, new, cfg)
                continue
            progress.refs.append(write_part(path, episode, meta, cfg.storage))
            new += 1
            bar.update(1)
            if on_demo is not None:
                on_demo(episode)
            if new >= missing:
                break
    finally:
        bar.close()
        if own_runner:
            runner.close()
    return new


def _check_failures(spec: TaskSpec, failures: int, new: int, cfg: DemoConfig) -> None:
    if failures > cfg.failure_budget:
        raise InputError(f"the {spec.name} expert failed on {failures} seeds (kept {new}); "
                         f"max_failures={cfg.failure_budget}. Raise max_failures, or check the "
                         "horizon/post_success_steps settings.")


def collect(tasks: list[str | TaskSpec], out_dir: str | Path, cfg: DemoConfig) -> list[TaskReport]:
    """Collect demos for several tasks, one file each, sharing one pool of workers."""
    runner = EpisodeRunner(cfg.workers)
    try:
        return [collect_task(t, out_dir, cfg, runner=runner) for t in tasks]
    finally:
        runner.close()
