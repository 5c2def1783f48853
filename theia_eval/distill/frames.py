"""`theia-eval frames`: render simulator frame sets (RGB + exact depth + segmentation) for distillation.

Suites are simulator families (metaworld, dmc, adroit: every task of the simulator, see frame_tasks.py)
or registered suites (cortexbench-dmc, ...); `tasks` picks tasks by pattern, `exclude_tasks` drops some
(e.g. the tasks a student must never see). Each task is rendered from its family's cameras (its protocol
camera first) unless `cameras` names them. Episodes cycle over the tasks, `task_block` consecutive
episodes per task (episode e renders tasks[(e // task_block) % len(tasks)]); at most `max_open_envs`
environments stay open (least recently used closed first: a Meta-World env with its two renderers holds
about 300 MB, so 50 open ones would need 15 GB). Each episode is driven either by the task's scripted expert
(plus Gaussian action noise) or by smoothed uniform random actions (a_t = 0.8 a_{t-1} + 0.2 u_t),
chosen per episode with probability expert_fraction; every frame_stride steps the state is rendered
from every camera, with the RGB renderer of the envs package (same preset, upright cameras) and a
second MuJoCo renderer in depth and segmentation modes. Keys: <task>/ep<NNNNN>/t<TTT>/<camera>.
Everything is seeded: the same settings render the same frames.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from theia_eval.distill.frame_tasks import frame_tasks, task_cameras
from theia_eval.distill.framesets import SEGMENTATION_CLASSES, FrameSetWriter
from theia_eval.distill.sources import frameset_dir
from theia_eval.errors import InputError
from theia_eval.settings import FramesConfig

BACKGROUND, STATIC, ROBOT, OBJECT = range(len(SEGMENTATION_CLASSES))


@dataclass
class FrameSettings(FramesConfig):
    """The frames config (configs/frames.yaml; its fields and defaults: theia_eval.settings.FramesConfig)."""

    def out_dir(self) -> Path:
        return Path(self.out).expanduser() if self.out else frameset_dir(self.suite)


# --- segmentation classes from the model's kinematic tree -----------------------------------------
def actuated_bodies(model) -> np.ndarray:
    """Bodies an actuator moves: joint transmissions (also through tendons: the joints a tendon wraps),
    site and body transmissions."""
    import mujoco

    trn, target = model.actuator_trntype, model.actuator_trnid[:, 0]
    kinds = mujoco.mjtTrn
    joints = list(target[(trn == kinds.mjTRN_JOINT) | (trn == kinds.mjTRN_JOINTINPARENT)])
    for tendon in target[trn == kinds.mjTRN_TENDON]:
        first, count = model.tendon_adr[tendon], model.tendon_num[tendon]
        wraps = range(first, first + count)
        joints += [model.wrap_objid[w] for w in wraps if model.wrap_type[w] == mujoco.mjtWrap.mjWRAP_JOINT]
    bodies = [model.jnt_bodyid[np.asarray(joints, dtype=np.int64)],
              model.site_bodyid[target[trn == kinds.mjTRN_SITE]], target[trn == kinds.mjTRN_BODY]]
    return np.concatenate(bodies).astype(np.int64)


def body_classes(model) -> np.ndarray:
    """Class of every body: robot (tree holding an actuated body), static (welded to world), object."""
    robot_roots = set(model.body_rootid[actuated_bodies(model)].tolist()) - {0}
    classes = np.full(model.nbody, OBJECT, dtype=np.uint8)
    classes[model.body_weldid == 0] = STATIC
    classes[np.isin(model.body_rootid, list(robot_roots))] = ROBOT
    return classes


def segmentation_lookup(model) -> dict[int, np.ndarray]:
    """MuJoCo object type -> (object id -> class) for the types a segmentation render returns (geoms, sites, skins)."""
    import mujoco

    bodies = body_classes(model)
    return {int(mujoco.mjtObj.mjOBJ_GEOM): bodies[model.geom_bodyid],
            int(mujoco.mjtObj.mjOBJ_SITE): bodies[model.site_bodyid],
            # a skin (dm_control's dog) takes the class of the body of its first bone
            int(mujoco.mjtObj.mjOBJ_SKIN): bodies[model.skin_bonebodyid[model.skin_boneadr]]}


def classify(seg: np.ndarray, lookup: dict[int, np.ndarray]) -> np.ndarray:
    """(H, W, 2) [object id, object type] from MuJoCo -> (H, W) uint8 class ids (id -1 -> background)."""
    ids, types = seg[..., 0], seg[..., 1]
    out = np.full(ids.shape, BACKGROUND, dtype=np.uint8)
    for objtype, table in lookup.items():
        mask = (types == objtype) & (ids >= 0)
        out[mask] = table[ids[mask]]
    return out


class ExtrasRenderer:
    """Depth and segmentation renders of the same camera, resolution, orientation and crop as the RGB."""

    def __init__(self, env):
        from theia_eval.envs.renderer import make_mujoco_renderer

        self.env = env
        self.renderer = make_mujoco_renderer(env.sim.model, env.render_spec)
        self.lookup = segmentation_lookup(env.sim.model)

    def _render(self, camera: str, mode: str) -> np.ndarray:
        from theia_eval.envs.renderer import center_crop

        r, frames = self.renderer, self.env.renderer
        getattr(r, f"enable_{mode}_rendering")()
        r.update_scene(self.env.sim.data, camera=frames.camera_id(camera))
        image = r.render()
        getattr(r, f"disable_{mode}_rendering")()
        if frames.needs_flip(camera):
            image = image[::-1, ::-1]
        spec = self.env.render_spec
        if spec.crop is not None and spec.crop != spec.resolution:
            image = center_crop(image, spec.crop)
        return np.ascontiguousarray(image)

    def render(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """(depth (H, W) float32 metres, segmentation (H, W) uint8 classes)."""
        return self._render(camera, "depth"), classify(self._render(camera, "segmentation"), self.lookup)

    def close(self) -> None:
        self.renderer.close()


# --- episodes -------------------------------------------------------------------------------------
class RandomActions:
    """Smoothed uniform random actions in [-1, 1]."""

    def __init__(self, dim: int, rng: np.random.Generator):
        self.rng, self.a = rng, np.zeros(dim)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        self.a = 0.8 * self.a + 0.2 * self.rng.uniform(-1.0, 1.0, self.a.shape)
        return self.a


class NoisyExpert:
    """The task's scripted expert with Gaussian action noise, clipped to [-1, 1]."""

    def __init__(self, expert, noise: float, rng: np.random.Generator):
        self.expert, self.noise, self.rng = expert, noise, rng

    def __call__(self, state: np.ndarray) -> np.ndarray:
        a = np.asarray(self.expert.get_action(state), dtype=np.float64)
        return np.clip(a + self.rng.normal(0.0, self.noise, a.shape), -1.0, 1.0)


def episode_policy(task, episode: int, s: FrameSettings):
    """(kind, policy) of one episode, drawn from (seed, episode)."""
    rng = np.random.default_rng([s.seed, episode])
    if task.make_expert is not None and rng.random() < s.expert_fraction:
        return "expert", NoisyExpert(task.make_expert(task), s.action_noise, rng)
    return "random", RandomActions(task.action_dim, rng)


def episode_frames(env, extras: ExtrasRenderer, cameras: list[str], episode: int, s: FrameSettings):
    """Yield (key, rgb, depth, segmentation) for one episode."""
    kind, policy = episode_policy(env.task, episode, s)
    env.reset(seed=s.seed * 100_003 + episode, render=False)
    for i in range(s.frames_per_episode):
        t = env.t
        for camera in cameras:
            depth, seg = extras.render(camera)
            yield f"{env.task.name}/ep{episode:05d}/t{t:03d}/{camera}", env.render(camera), depth, seg
        if i + 1 < s.frames_per_episode:
            for _ in range(s.frame_stride):
                if env.t >= env.horizon:
                    return
                env.step(policy(env.raw_state), render=False)


def open_task(task, s: FrameSettings) -> tuple:
    """(env, extras renderer, cameras) of one task, every camera checked against the model."""
    from theia_eval.envs import make_env

    env = make_env(task, preset=s.preset, resolution=s.resolution, crop=None, seed=s.seed)
    cameras = task_cameras(task, env.renderer.cameras, s.cameras)
    for c in cameras:
        env.renderer.camera_id(c)  # unknown camera -> error listing the model's cameras
    return env, ExtrasRenderer(env), cameras


class OpenEnvs:
    """The open (env, extras renderer, cameras) of the most recently used tasks, at most s.max_open_envs."""

    def __init__(self, s: FrameSettings):
        from collections import OrderedDict

        self.s, self.open, self.cameras = s, OrderedDict(), {}

    def get(self, task) -> tuple:
        if task.name in self.open:
            self.open.move_to_end(task.name)
        else:
            while len(self.open) >= self.s.max_open_envs:
                close_task(*self.open.popitem(last=False)[1])
            self.open[task.name] = open_task(task, self.s)
            self.cameras[task.name] = self.open[task.name][2]
        return self.open[task.name]

    def close(self) -> None:
        while self.open:
            close_task(*self.open.popitem()[1])


def close_task(env, extras: ExtrasRenderer, cameras: list[str]) -> None:
    extras.close()
    env.close()


def render_frameset(s: FrameSettings, progress: bool = True) -> dict:
    """Render a frame set to s.out_dir() (replacing any there); returns its manifest summary."""
    from tqdm import tqdm

    tasks = frame_tasks(s.suite, s.tasks, s.exclude_tasks)
    if min(s.num_frames, s.frames_per_episode, s.task_block, s.max_open_envs) <= 0 or (s.cameras is not None
                                                                                        and not s.cameras):
        raise InputError("num_frames, frames_per_episode, task_block and max_open_envs must be positive and cameras "
                         "non-empty (or null for each family's cameras).")
    writer = FrameSetWriter(s.out_dir(), s.shard_size)
    envs = OpenEnvs(s)
    t0, count, episode = time.perf_counter(), 0, 0
    bar = tqdm(total=s.num_frames, desc="rendering frames", disable=not progress, leave=False)
    try:
        while count < s.num_frames:
            task = tasks[(episode // s.task_block) % len(tasks)]
            for key, rgb, depth, seg in episode_frames(*envs.get(task), episode, s):
                if count >= s.num_frames:
                    break
                writer.add(key, rgb, depth, seg)
                count += 1
                bar.update(1)
            episode += 1
        meta = {"suite": s.suite, "tasks": [t.name for t in tasks], "settings": asdict(s), "episodes": episode,
                "cameras": envs.cameras,
                "wall_s": round(time.perf_counter() - t0, 1)}
        path = writer.close(meta)
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
        envs.close()
    return {"path": str(path), "frames": count, "episodes": episode, "wall_s": meta["wall_s"],
            "ms_per_frame": round(1000 * meta["wall_s"] / max(count, 1), 1)}
