"""Closed-loop evaluation: N lock-step simulator workers, one batched encoder call per step.

Per step: the workers simulate and render in parallel (sim + render), the parent encodes all N frames
in one call (encode), fuses history and runs the head (policy). With `groups=2` the N workers form two
groups stepped alternately: the parent encodes one group's frames while the other group's workers
simulate and render, so the render time hides behind the encode time (one batched call per group).
Episodes and seeds are the same for any `groups`; only the encoder's batch size changes.

`evaluate_policy` returns the eval_info dict written as eval_info.json: per episode {seed, success,
return, length, first_success_step} and aggregates (success rate with a Wilson 95% interval, mean
return, the suite's normalized score where it defines one, episodes/s, time split per step).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from theia_eval.encoders.base import FrozenEncoder
from theia_eval.envs.family import normalized_scores
from theia_eval.envs.renderer import RenderSpec, check_render_match
from theia_eval.envs.tasks import episode_seeds, get_task
from theia_eval.provenance import portable
from theia_eval.envs.vector import VectorEnv
from theia_eval.errors import InputError
from theia_eval.policies.bc import BCPolicy
from theia_eval.policies.cache import match_cache_precision
from theia_eval.policies.history import HistoryBuffer
from theia_eval.policies.stats import wilson_interval
from theia_eval.settings import TrainEvalSection

_EVAL = TrainEvalSection()  # the `train` verb's eval: defaults (theia_eval.settings)


@dataclass
class EvalConfig:
    """How a policy is evaluated; render settings default to the demos' (see eval_render_spec)."""

    episodes: int = _EVAL.episodes
    base_seed: int = _EVAL.base_seed  # episode i uses base_seed + i; demos use other seeds (54321 + j)
    num_envs: int = _EVAL.num_envs
    groups: int = _EVAL.groups  # 2: pipeline, encode one half of the envs while the other half renders
    preset: str | None = _EVAL.preset  # None: the demos' preset
    resolution: int | None = _EVAL.resolution  # None: the demos' resolution
    crop: int | str | None = _EVAL.crop  # "demos": the demos' crop; an int or None (no crop) overrides
    camera: str | None = None
    horizon: int | None = _EVAL.horizon  # None: the task's protocol horizon
    video: bool = _EVAL.video
    video_episodes: int = _EVAL.video_episodes
    progress: bool = _EVAL.progress
    extra: dict = field(default_factory=dict)


@dataclass
class StepTimes:
    """Seconds the parent spends per phase, summed over lock-steps of all envs (sim + render happen inside
    the workers: `env` is the time the parent waits for them, so render time hidden by pipelining is not in it)."""

    env: float = 0.0
    encode: float = 0.0
    policy: float = 0.0
    reset: float = 0.0  # environment resets, not per step (a fresh worker's first reset warms its renderer up)
    steps: int = 0

    def per_step_ms(self) -> dict[str, float]:
        n = max(self.steps, 1)
        return {"env_ms": 1000 * self.env / n, "encode_ms": 1000 * self.encode / n,
                "policy_ms": 1000 * self.policy / n, "reset_s": self.reset}


def eval_render_spec(cfg: EvalConfig, demo_render: RenderSpec, force: bool = False) -> RenderSpec:
    """The render settings to evaluate with: the demos' unless overridden; a mismatch is refused unless forced."""
    wanted = RenderSpec(cfg.preset or demo_render.preset, int(cfg.resolution or demo_render.resolution),
                        demo_render.crop if cfg.crop == "demos" else cfg.crop)
    check_render_match(demo_render, wanted, "the demos this policy was trained on", force=force)
    return wanted


def policy_inputs(encoder: FrozenEncoder, rgb: np.ndarray, kind: str) -> torch.Tensor:
    """Encode a batch of frames into what the head reads (tokens or summary), at cache precision."""
    out = encoder(rgb)
    feats = out.tokens if kind == "tokens" else out.summary
    return match_cache_precision(feats.float().cpu())


class _Group:
    """One VectorEnv's share of a batch of episodes: its seeds, history and running returns."""

    def __init__(self, venv: VectorEnv, seeds: list[int], history: int, fusion: str):
        self.venv, self.seeds = venv, seeds
        self.obs = venv.reset(seeds)
        self.buf = HistoryBuffer(len(seeds), history, fusion)
        self.returns, self.infos = np.zeros(len(seeds)), [None] * len(seeds)
        self.done = False

    def collect(self, times: StepTimes) -> None:
        """Wait for the step in flight, if any, and record its rewards and finished episodes."""
        if not self.venv.stepping:
            return
        t0 = time.perf_counter()
        self.obs, rewards, dones, step_infos = self.venv.step_wait()
        times.env += time.perf_counter() - t0
        self.returns += rewards
        for i in np.flatnonzero(dones):
            self.infos[i] = step_infos[i]
        self.done = bool(dones.all())


def split_seeds(seeds: list[int], sizes: list[int]) -> list[list[int]]:
    """Deal a batch of seeds to groups of workers in order (a short last batch leaves later groups empty)."""
    out, i = [], 0
    for n in sizes:
        out.append(seeds[i:i + n])
        i += n
    return out


def policy_device(policy) -> torch.device:
    """Where a policy's weights live (the CPU for policies without parameters)."""
    first = next(iter(policy.parameters()), None) if hasattr(policy, "parameters") else None
    return first.device if first is not None else torch.device("cpu")


def _run_batch(venvs: list[VectorEnv], seeds: list[int], policy: BCPolicy, encoder: FrozenEncoder, kind: str,
               history: int, fusion: str, horizon: int, times: StepTimes, frames: list | None) -> list[dict]:
    """Run len(seeds) episodes to the horizon on one or more groups of lock-step workers.

    Each group is stepped asynchronously: while group g's workers simulate and render step t, the parent
    encodes group g+1's frames of step t and runs its head. With one group this is the plain lock-step loop.
    """
    device = policy_device(policy)  # the head may live on a GPU; frames and actions stay on the host
    t0 = time.perf_counter()
    groups = [_Group(v, s, history, fusion) for v, s in zip(venvs, split_seeds(seeds, [v.num_envs for v in venvs]))
              if s]
    times.reset += time.perf_counter() - t0
    for _ in range(horizon):
        for g in groups:
            g.collect(times)
            if g.done:
                continue
            if frames is not None and g is groups[0]:
                frames.append(g.obs["rgb"][0])
            t0 = time.perf_counter()
            feats = policy_inputs(encoder, g.obs["rgb"], kind)
            t1 = time.perf_counter()
            proprio = torch.as_tensor(g.obs["proprio"], dtype=torch.float32).to(device)
            window = g.buf.push(feats).to(device)
            actions = policy.act(window, proprio if policy.shapes.proprio_dim else None).cpu().numpy()
            t2 = time.perf_counter()
            g.venv.step_async(actions)
            times.encode, times.policy = times.encode + t1 - t0, times.policy + t2 - t1
        times.steps += 1
        if all(g.done for g in groups):
            break
    for g in groups:
        g.collect(times)
    return [{"seed": s, "success": bool(info["episode_success"]), "return": float(r), "length": int(info["t"]),
             "first_success_step": int(info["first_success_step"])}
            for g in groups for s, r, info in zip(g.seeds, g.returns, g.infos)]


def aggregate(episodes: list[dict], suite: str, elapsed: float) -> dict:
    """Success rate with its Wilson 95% interval, mean return, normalized score, episodes/s."""
    k, n = sum(e["success"] for e in episodes), len(episodes)
    lo, hi = wilson_interval(k, n)
    mean_ret = float(np.mean([e["return"] for e in episodes]))
    out = {"episodes": n, "successes": k, "success_rate": k / n, "success_ci95": [lo, hi], "mean_return": mean_ret,
           "episodes_per_s": n / elapsed if elapsed > 0 else float("nan"), "wall_s": elapsed}
    scores = normalized_scores(suite, [e["return"] for e in episodes])  # None: the suite scores by success
    if scores is not None:
        out["normalized_score"] = float(np.mean(scores))
    return out


def evaluate_policy(policy: BCPolicy, encoder: FrozenEncoder, task: str, cfg: EvalConfig, render: RenderSpec,
                    kind: str, history: int = 3, fusion: str = "flare") -> dict:
    """Evaluate `policy` on `cfg.episodes` seeded episodes of `task` rendered as `render`; returns eval_info."""
    spec = get_task(task)
    if cfg.episodes <= 0 or cfg.num_envs <= 0:
        raise InputError(f"episodes and num_envs must be >= 1, got {cfg.episodes} and {cfg.num_envs}.")
    if not 1 <= cfg.groups <= cfg.num_envs:
        raise InputError(f"eval.groups must be between 1 and eval.num_envs={cfg.num_envs} (each group needs at "
                         f"least one env), got {cfg.groups}; use groups=2 with num_envs>=2 to pipeline.")
    if policy.shapes.action_dim != spec.action_dim:
        raise InputError(f"policy outputs {policy.shapes.action_dim}-d actions but {spec.name} takes "
                         f"{spec.action_dim}-d actions: it was trained on another task.")
    horizon = int(cfg.horizon or spec.horizon)
    seeds = episode_seeds(cfg.base_seed, cfg.episodes)
    num_envs = min(cfg.num_envs, cfg.episodes)
    sizes = [len(part) for part in np.array_split(np.arange(num_envs), min(cfg.groups, num_envs))]
    times, records, videos = StepTimes(), [], []
    start = time.perf_counter()
    from tqdm.auto import tqdm

    with contextlib.ExitStack() as stack:
        venvs = [stack.enter_context(VectorEnv(spec.name, n, preset=render.preset, resolution=render.resolution,
                                               crop=render.crop, camera=cfg.camera, horizon=horizon))
                 for n in sizes]
        bar = stack.enter_context(tqdm(total=cfg.episodes, desc=f"eval {spec.name}", disable=not cfg.progress,
                                       leave=False))
        for i in range(0, len(seeds), num_envs):
            frames = [] if cfg.video and len(videos) < cfg.video_episodes else None
            records += _run_batch(venvs, seeds[i:i + num_envs], policy, encoder, kind, history, fusion, horizon,
                                  times, frames)
            if frames is not None:
                videos.append((seeds[i], np.stack(frames)))
            bar.update(len(seeds[i:i + num_envs]))
            bar.set_postfix(success=f"{sum(r['success'] for r in records)}/{len(records)}")
    info = {"task": spec.name, "suite": spec.suite, "encoder": encoder.name, "weights": portable(str(encoder.weights_id)),
            "config": asdict(cfg), "render": render.as_dict(), "per_episode": records,
            "aggregate": aggregate(records, spec.suite, time.perf_counter() - start),
            "time_per_step": times.per_step_ms()}
    info["videos"] = videos
    return info
