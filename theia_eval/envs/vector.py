"""N environments in subprocesses, stepped in lock-step so a caller can encode all N frames at once.

    venv = VectorEnv("metaworld/assembly", num_envs=2, preset="fast")
    obs = venv.reset([100, 101])                       # {"rgb": (2,H,W,3), "proprio": (2,P), ...}
    obs, rewards, dones, infos = venv.step(actions)    # actions (2, A); infos: list of dicts
    venv.close()

Workers are started with the `forkserver` (default) or `spawn` context and build their environment,
and so their renderer and EGL context, inside the worker: no GL state crosses a fork. `reset` may be
given fewer seeds than workers (the last batch of an evaluation); then only the first k workers
take part until the next reset, and `step` expects k actions.

`step` is `step_async` (send the actions, return at once) followed by `step_wait` (collect the
results): a caller with two VectorEnvs can encode one's frames while the other's workers simulate
and render (the pipelined evaluation in policies/evaluate.py).
"""
from __future__ import annotations

import multiprocessing as mp
import traceback
from dataclasses import dataclass

import numpy as np

from theia_eval.errors import InputError, TheiaEvalError


class EnvWorkerError(TheiaEvalError, RuntimeError):
    """An environment worker process failed; the message carries its traceback."""


@dataclass(frozen=True)
class EnvArgs:
    """Everything a worker needs to build its `TaskEnv` (picklable)."""

    task: str
    preset: str = "fast"
    resolution: int = 256
    crop: int | None = 224
    camera: str | None = None
    horizon: int | None = None

    def build(self):
        from theia_eval.envs.env import make_env

        return make_env(self.task, preset=self.preset, resolution=self.resolution, crop=self.crop,
                        camera=self.camera, horizon=self.horizon)


def _worker(conn, args: EnvArgs) -> None:
    """Worker loop: build the env here, then serve (command, payload) messages until 'close'."""
    env = None
    try:
        env = args.build()
        conn.send(("ok", None))
        while True:
            cmd, payload = conn.recv()
            if cmd == "close":
                break
            try:
                result = env.reset(payload) if cmd == "reset" else env.step(payload)
                conn.send(("ok", result))
            except Exception:  # sent to the parent, which raises it
                conn.send(("error", traceback.format_exc()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        if env is not None:
            env.close()
        conn.close()


def stack_obs(obs_list: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batch a list of observation dicts key by key."""
    return {k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]}


class VectorEnv:
    """Lock-step subprocess environments of one task."""

    def __init__(self, task: str, num_envs: int, preset: str = "fast", resolution: int = 256,
                 crop: int | None = 224, camera: str | None = None, horizon: int | None = None,
                 context: str = "forkserver") -> None:
        if int(num_envs) <= 0:
            raise InputError(f"num_envs must be >= 1, got {num_envs}")
        if context not in ("forkserver", "spawn"):
            raise InputError(f"context must be 'forkserver' or 'spawn' (never fork with EGL), got {context}")
        from theia_eval.envs.tasks import get_task

        self.task = get_task(task)
        self.args = EnvArgs(self.task.name, preset, int(resolution), crop, camera, horizon)
        self.num_envs = int(num_envs)
        self._active = self.num_envs
        self._waiting = False
        self._conns, self._procs = [], []
        ctx = mp.get_context(context)
        if context == "forkserver":
            ctx.set_forkserver_preload(["theia_eval.envs"])  # import once, fork workers from it
        self._start(ctx)

    def _start(self, ctx) -> None:
        for _ in range(self.num_envs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, self.args), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            self._gather(range(self.num_envs))
        except EnvWorkerError:
            self.close()
            raise

    def _gather(self, indices) -> list:
        """Receive one reply per worker (all of them, so pipes stay in step), then raise any error."""
        results, errors = [], []
        for i in indices:
            try:
                status, payload = self._conns[i].recv()
            except EOFError:
                self._procs[i].join(timeout=5)
                status, payload = "error", f"process died (exit code {self._procs[i].exitcode})"
            if status == "error":
                errors.append(f"env worker {i} of {self.task.name} failed:\n{payload}")
            results.append(payload)
        if errors:
            raise EnvWorkerError("\n".join(errors))
        return results

    def reset(self, seeds) -> dict[str, np.ndarray]:
        """Reset the first len(seeds) workers with these seeds; returns batched observations."""
        seeds = [int(s) for s in seeds]
        if not 1 <= len(seeds) <= self.num_envs:
            raise InputError(f"reset takes 1..{self.num_envs} seeds, got {len(seeds)}")
        self._check_idle("reset")
        self._active = len(seeds)
        for conn, seed in zip(self._conns, seeds):
            conn.send(("reset", seed))
        return stack_obs(self._gather(range(self._active)))

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        """Step every active worker with its row of `actions` (k, A), all in lock-step."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Send each active worker its row of `actions` (k, A) and return without waiting."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] != self._active:
            raise InputError(f"step expects actions of shape ({self._active}, "
                             f"{self.task.action_dim}), got {actions.shape}")
        self._check_idle("step_async")
        for conn, action in zip(self._conns, actions):
            conn.send(("step", action))
        self._waiting = True

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        """Collect the results of the last `step_async`: (obs, rewards, dones, infos)."""
        if not self._waiting:
            raise InputError("step_wait called with no step in flight: call step_async(actions) first.")
        self._waiting = False
        results = self._gather(range(self._active))
        obs = stack_obs([r[0] for r in results])
        rewards = np.array([r[1] for r in results], dtype=np.float32)
        dones = np.array([r[2] for r in results], dtype=bool)
        return obs, rewards, dones, [r[3] for r in results]

    @property
    def stepping(self) -> bool:
        """True between `step_async` and its `step_wait`."""
        return self._waiting

    def _check_idle(self, what: str) -> None:
        if self._waiting:
            raise InputError(f"{what} called while a step is in flight: call step_wait() first.")

    def close(self) -> None:
        """Stop the workers (each closes its renderer and simulator)."""
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None):
            self.close()
