"""The single-environment interface every suite shares: `make_env(task, ...)` -> `TaskEnv`.

    env = make_env("metaworld/assembly", preset="fast", resolution=256, crop=224, seed=0)
    obs = env.reset(seed)                        # {"rgb": uint8 (H,W,3), "proprio": f32, "state": f32}
    obs, reward, done, info = env.step(action)   # info["success"]: this step's flag
    env.close()

`done` is True exactly at the task horizon (no early termination: the protocol scores the success
flag at the final step). At `done`, info also holds "episode_success" (the task's rule applied to
all per-step flags) and "first_success_step" (0-based step index of the first success, -1 if none).
"""
from __future__ import annotations

import numpy as np

from theia_eval.envs.renderer import FrameRenderer, RenderSpec
from theia_eval.envs.tasks import Simulator, TaskSpec, get_task
from theia_eval.errors import InputError


class TaskEnv:
    """One task's simulator + renderer, returning observation dicts."""

    def __init__(self, task: str | TaskSpec, render: RenderSpec | None = None,
                 camera: str | None = None, seed: int = 0, horizon: int | None = None) -> None:
        self.task = get_task(task)
        self.render_spec = render or RenderSpec()
        self.horizon = int(horizon or self.task.horizon)
        if self.horizon <= 0:
            raise InputError(f"horizon must be positive, got {self.horizon}")
        self.sim: Simulator = self.task.make_sim(self.task, horizon=self.horizon)
        self.renderer = FrameRenderer(self.sim.model, self.render_spec)
        self.camera = camera or self.task.camera
        self.renderer.camera_id(self.camera)  # unknown camera -> error listing the cameras
        self._next_seed = int(seed)
        self._state: np.ndarray | None = None
        self._flags: list[bool] = []
        self.seed: int | None = None

    @property
    def t(self) -> int:
        """Steps taken in the current episode."""
        return len(self._flags)

    @property
    def raw_state(self) -> np.ndarray:
        """The simulator's state vector at full precision (what experts read)."""
        if self._state is None:
            raise InputError("call env.reset(seed) first")
        return self._state

    def reset(self, seed: int | None = None, render: bool = True) -> dict[str, np.ndarray]:
        """Start the episode drawn by `seed` (None: the constructor seed, then +1 per reset)."""
        self.seed = self._next_seed if seed is None else int(seed)
        self._next_seed = self.seed + 1
        self._state = np.asarray(self.sim.reset(self.seed))
        self._flags = []
        return self.observe(render)

    def observe(self, render: bool = True) -> dict[str, np.ndarray]:
        """The current observation dict (rgb only when `render`)."""
        if self._state is None:
            raise InputError("call env.reset(seed) before env.step/observe")
        obs = {"proprio": np.asarray(self.task.proprio(self._state), dtype=np.float32),
               "state": self._state.astype(np.float32)}
        if render:
            obs["rgb"] = self.render()
        return obs

    def render(self, camera: str | None = None) -> np.ndarray:
        """An upright uint8 frame of the current state."""
        return self.renderer.render(self.sim.data, camera or self.camera)

    def step(self, action: np.ndarray, render: bool = True
             ) -> tuple[dict[str, np.ndarray], float, bool, dict]:
        """Apply one action, clipped to the task's bounds; returns (obs, reward, done, info), info['action'] being
        the action executed."""
        if self._state is None or self.t >= self.horizon:
            raise InputError(f"episode is over ({self.t}/{self.horizon} steps) or not started: "
                             "call env.reset(seed)")
        action = self._check_action(action)
        state, reward, sim_info = self.sim.step(action)
        self._state = np.asarray(state)
        self._flags.append(bool(sim_info["success"]))
        done = self.t >= self.horizon
        info = {"success": self._flags[-1], "t": self.t, "action": action}
        if done:
            info.update(self.episode_summary())
        return self.observe(render), float(reward), done, info

    def episode_summary(self) -> dict:
        """Episode success under the task's rule and the first-success step so far."""
        flags = np.asarray(self._flags, dtype=bool)
        hits = np.flatnonzero(flags)
        return {"episode_success": self.task.episode_success(flags),
                "first_success_step": int(hits[0]) if hits.size else -1}

    def _check_action(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.task.action_dim,):
            raise InputError(f"{self.task.name} takes actions of shape ({self.task.action_dim},), "
                             f"got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise InputError(f"action has non-finite values: {action}")
        return self.task.executed_actions(action)  # what the simulators execute (they clip too)

    def close(self) -> None:
        """Free the renderer's GL context and the simulator."""
        self.renderer.close()
        self.sim.close()

    def __enter__(self) -> TaskEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_env(task: str | TaskSpec, preset: str = "fast", resolution: int = 256,
             crop: int | None = 224, camera: str | None = None, seed: int = 0,
             horizon: int | None = None) -> TaskEnv:
    """Build one environment of a registered task (camera None: the task's protocol camera)."""
    return TaskEnv(task, RenderSpec(preset, int(resolution), None if crop is None else int(crop)),
                   camera=camera, seed=seed, horizon=horizon)
