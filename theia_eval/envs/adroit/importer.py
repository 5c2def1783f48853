"""Import the public Adroit datasets (Minari `D4RL/pen/*`, `D4RL/relocate/*`) as rendered demos.

The Minari Adroit datasets (made from D4RL's hand_dapg data by replaying it in gymnasium-robotics
AdroitHand*-v1) store no images, but they store the simulator state of every step. We set our
simulator to each recorded state and render it with our renderer, camera and preset, so imported
demos look exactly like collected ones and can be evaluated without `force`.

Layout read (Minari HDF5 storage; see Minari's "Dataset Standards"):

    <dataset>/metadata.json            {"env_spec": "<gymnasium EnvSpec JSON>", "dataset_id": ...}
    <dataset>/data/main_data.hdf5      (older Minari: the same keys as attributes of the file root)
      episode_<i>                       attrs: id, total_steps, seed (optional)
        observations (T+1, obs_dim), actions (T, A), rewards (T,), terminations, truncations (T,)
        state/ or infos/state/          per-step env.get_env_state(), T+1 entries (reset first):
                                        pen: qpos, qvel, desired_orien; relocate: qpos, qvel,
                                        obj_pos (the ball's world position), target_pos, ...
        infos/success (optional)        the env's per-step goal flag (T or T+1 entries)

Checks, each with a message saying what is wrong: the dataset's env id must be the task's
(AdroitHandPen-v1 / AdroitHandRelocate-v1: another env or another version is refused); every
recorded observation must match the observation our env computes from the replayed state (joint
angles exactly, positions to 1 cm: see `check_observation`), which catches wrong tasks, versions
and misaligned states; the goal flags we compute must agree with the dataset's `success` flags
where it has them.

Episodes are cut to the protocol horizon (100 / 200 steps); with `successful_only` (default)
episodes failing the success rule (goal on > 20 / 25 steps) are skipped and counted.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from theia_eval.envs.adroit.sim import FAMILY, AdroitSim, AdroitTask, facts
from theia_eval.envs.dataset import (DatasetMeta, Episode, Storage, atomic_h5, split_names,
                                     write_episode)
from theia_eval.envs.renderer import FrameRenderer, RenderSpec
from theia_eval.envs.tasks import get_task
from theia_eval.errors import InputError

MAIN_FILE = "data/main_data.hdf5"
OBS_TOLERANCE = 1e-5
OBS_POSITION_LAG = 1e-2  # m: positions in a post-step observation lag one physics step
MAX_FLAG_MISMATCH = 0.01  # fraction of steps whose goal flag may differ (borderline float cases)


@dataclass(frozen=True)
class ImportReport:
    """What one import did."""

    path: Path
    demos: int
    skipped_failed: int
    dataset_id: str


# ------------------------------------------------------------------------------------ reading
def locate(path: str | Path) -> tuple[Path, Path | None]:
    """(main_data.hdf5, metadata.json or None) of a Minari dataset directory or HDF5 file."""
    path = Path(path)
    if path.is_dir():
        main = path / MAIN_FILE
        if not main.exists():
            raise InputError(f"{path} is not a Minari dataset: {MAIN_FILE} is missing")
        meta = path / "metadata.json"
        return main, meta if meta.exists() else None
    if not path.exists():
        raise InputError(f"Minari dataset {path} does not exist")
    meta = path.parent.parent / "metadata.json"
    return path, meta if path.parent.name == "data" and meta.exists() else None


def read_metadata(f, meta_path: Path | None, where: Path) -> dict:
    """Dataset metadata from metadata.json, else from the HDF5 root attributes (older Minari)."""
    meta = json.loads(meta_path.read_text()) if meta_path is not None else {}
    for key in ("env_spec", "dataset_id"):
        if key not in meta and key in f.attrs:
            value = f.attrs[key]
            meta[key] = value.decode() if isinstance(value, bytes) else str(value)
    if "env_spec" not in meta:
        if "observations" in f and "infos" in f:
            raise InputError(f"{where} looks like an original D4RL file (flat arrays, no episodes); "
                             "import the Minari version of the dataset (D4RL/<task>/<kind>-v2)")
        raise InputError(f"{where} has no env_spec (neither metadata.json nor root attributes): "
                         "cannot tell which environment recorded it")
    return meta


def env_id(meta: dict) -> str:
    """The gymnasium env id recorded in the dataset's env_spec."""
    spec = meta["env_spec"]
    spec = json.loads(spec) if isinstance(spec, str) else spec
    return str(spec["id"])


def check_env(found: str, task: AdroitTask, where: Path) -> None:
    """Refuse a dataset recorded on another env or another version of it."""
    if found == task.upstream_id:
        return
    base, _, version = found.rpartition("-")
    wanted_base, _, wanted_version = task.upstream_id.rpartition("-")
    if base == wanted_base:
        raise InputError(f"{where} was recorded on {found}, but adroit/{task.name} replays states in "
                         f"{task.upstream_id} ({version} != {wanted_version}); other versions have "
                         "other models or rules. Use a dataset of the same version.")
    raise InputError(f"{where} was recorded on {found}, not {task.upstream_id}: it is not an "
                     f"adroit/{task.name} dataset (pass the matching task or another file)")


def episode_names(f, where: Path) -> list[str]:
    """episode_<i> groups in numeric order."""
    names = [n for n in f if n.startswith("episode_") and n[8:].isdigit()]
    if not names:
        raise InputError(f"{where} has no episode_<i> groups: not a Minari dataset")
    return sorted(names, key=lambda n: int(n[8:]))


STATE_KEYS = {"pen": ("qpos", "qvel", "desired_orien"),
              "relocate": ("qpos", "qvel", "obj_pos", "target_pos")}


def read_states(group, task: AdroitTask, where: str) -> dict[str, np.ndarray]:
    """The episode's recorded env states (state/ or infos/state/), T+1 entries each."""
    for key in ("state", "infos/state"):
        if key in group:
            states = group[key]
            break
    else:
        raise InputError(f"{where} has no state/ or infos/state/ group: this dataset did not record "
                         "simulator states, so it cannot be rendered")
    missing = [k for k in STATE_KEYS[task.name] if k not in states]
    if missing:
        raise InputError(f"{where}: the recorded states lack {missing} (have {sorted(states)}); "
                         f"adroit/{task.name} needs {list(STATE_KEYS[task.name])}")
    return {k: np.asarray(states[k][()], dtype=np.float64) for k in STATE_KEYS[task.name]}


# --------------------------------------------------------------------------------- replaying
def episode_params(sim: AdroitSim, task: AdroitTask, states: dict) -> np.ndarray:
    """The episode's model parameters (target orientation / ball placement + target position)."""
    if task.name == "pen":
        return states["desired_orien"][0]
    model = sim.model
    slides = [model.joint(n).qposadr[0] for n in ("OBJTx", "OBJTy", "OBJTz")]
    ball_body = states["obj_pos"][0] - states["qpos"][0][slides]  # obj_pos is the world position
    return np.concatenate([ball_body, states["target_pos"][0]])


def state_vector(sim: AdroitSim, states: dict, params: np.ndarray, t: int) -> np.ndarray:
    """Our state vector (time, qpos, qvel, params) of recorded step t."""
    dt = sim.model.opt.timestep * sim.env.frame_skip
    return np.concatenate([[t * dt], states["qpos"][t], states["qvel"][t], params])


def check_observation(sim: AdroitSim, observation: np.ndarray, where: str, t: int) -> None:
    """The env's observation of the replayed state must match the recorded one.

    The joint angles (obs[:nq - 6]) must be equal. Positions (ball, pen, palm, target) must be
    equal at t = 0 and within OBS_POSITION_LAG after a step: an env's observation after mj_step
    holds positions computed before the last physics step's integration, while a replayed state
    has current ones (one physics step, 2 ms, apart).
    """
    ours = sim.env._get_obs()
    hand = sim.task.nq - 6
    if ours.shape != observation.shape:
        problem = f"shape {observation.shape}, but {sim.task.upstream_id} observes {ours.shape}"
    elif not np.allclose(ours[:hand], observation[:hand], atol=OBS_TOLERANCE):
        problem = f"joint angles differ by up to {np.abs(ours[:hand] - observation[:hand]).max():.2g}"
    elif not np.allclose(ours, observation, atol=OBS_TOLERANCE if t == 0 else OBS_POSITION_LAG):
        problem = f"positions differ by up to {np.abs(ours - observation).max():.2g}"
    else:
        return
    raise InputError(f"{where} step {t}: the recorded observation does not match the one "
                     f"{sim.task.upstream_id} computes from the recorded state ({problem}): wrong "
                     "task, env version or misaligned states")


def check_flags(ours: np.ndarray, group, where: str) -> None:
    """Our per-step goal flags must agree with the dataset's infos/success where it has them."""
    if "infos/success" not in group:
        return
    theirs = np.asarray(group["infos/success"][()], dtype=bool)
    theirs = theirs[1:] if len(theirs) == len(ours) + 1 else theirs  # drop the reset entry
    theirs = theirs[:len(ours)]
    bad = int(np.sum(theirs != ours[:len(theirs)]))
    if bad > MAX_FLAG_MISMATCH * len(theirs):
        raise InputError(f"{where}: the goal flags computed from the recorded states differ from "
                         f"infos/success on {bad} of {len(theirs)} steps: misaligned states or "
                         "another success rule")


def replay_episode(sim: AdroitSim, renderer: FrameRenderer, camera: str, group,
                   where: str) -> tuple[Episode, bool]:
    """Render one recorded episode; returns (episode, whether it meets the success rule)."""
    task = sim.task
    states = read_states(group, task, where)
    actions = np.asarray(group["actions"][()], dtype=np.float32)
    steps = min(len(actions), task.horizon)
    if len(states["qpos"]) < steps + 1:
        raise InputError(f"{where}: {len(states['qpos'])} recorded states for {len(actions)} "
                         "actions; Minari records T+1 (the reset state first)")
    observations = np.asarray(group["observations"][()], dtype=np.float64)
    params = episode_params(sim, task, states)
    vectors = np.stack([state_vector(sim, states, params, t) for t in range(steps + 1)])
    rgb, goals = [], np.zeros(steps, dtype=bool)
    for t in range(steps + 1):
        sim.set_state(vectors[t])
        check_observation(sim, observations[t], where, t)
        if t:
            goals[t - 1] = sim.goal_achieved()
        if t < steps:
            rgb.append(renderer.render(sim.data, camera))
    check_flags(goals, group, where)
    flags = np.cumsum(goals) > task.min_goal_steps  # our flag: the success rule met so far
    seed = int(group.attrs["seed"]) if "seed" in group.attrs else -1
    episode = Episode(rgb=np.stack(rgb), proprio=vectors[:steps, 1:1 + task.hand_dofs],
                      state=vectors[:steps].astype(np.float32), actions=actions[:steps],
                      rewards=np.asarray(group["rewards"][()], dtype=np.float32)[:steps],
                      success=flags, seed=seed)
    return episode, bool(flags[-1]) if steps else False


# ---------------------------------------------------------------------------------- writing
def import_minari_adroit(dataset: str | Path, task: str, out_path: str | Path,
                         render: RenderSpec = RenderSpec(), camera: str | None = None,
                         num_demos: int | None = None, successful_only: bool = True,
                         storage: Storage = Storage(), valid_fraction: float = 0.1) -> ImportReport:
    """Render a Minari Adroit dataset into one demo file (atomic); returns a report."""
    import h5py

    spec = get_task(task)
    if spec.suite != FAMILY:
        raise InputError(f"{spec.name} is not an Adroit task; Minari Adroit datasets import into "
                         "adroit/pen or adroit/relocate")
    adroit = facts(spec)
    main, meta_path = locate(dataset)
    camera = camera or spec.camera
    with h5py.File(main, "r") as f:
        meta = read_metadata(f, meta_path, main)
        check_env(env_id(meta), adroit, main)
        names = episode_names(f, main)
        sim = AdroitSim(adroit)
        renderer = FrameRenderer(sim.model, render)
        try:
            sim.reset(0)  # pen measures its pen and goal lengths at reset
            renderer.camera_id(camera)
            seeds, kept, skipped = [], [], 0
            with atomic_h5(out_path) as out:
                data = out.create_group("data")
                total = 0
                for name in names:
                    if num_demos is not None and len(kept) >= num_demos:
                        break
                    episode, success = replay_episode(sim, renderer, camera, f[name], f"{main}:{name}")
                    episode.actions = spec.executed_actions(episode.actions)  # Minari records the policy's raw ones
                    if successful_only and not success:
                        skipped += 1
                        continue
                    demo = f"demo_{len(kept)}"
                    write_episode(data.create_group(demo), episode, storage)
                    kept.append(demo)
                    seeds.append(episode.seed)
                    total += len(episode)
                if not kept:
                    raise InputError(f"{main}: no episode met the success rule of {spec.name} "
                                     f"({skipped} skipped); pass successful_only=False to keep them")
                _write_index(out, kept, total, valid_fraction, DatasetMeta(
                    task=spec.name, suite=spec.suite, camera=camera, render=render,
                    horizon=spec.horizon, post_success_steps=None, base_seed=-1,
                    seeds=tuple(seeds), source=f"minari:{meta.get('dataset_id', main.name)}"))
        finally:
            renderer.close()
            sim.close()
    return ImportReport(Path(out_path), len(kept), skipped, str(meta.get("dataset_id", "")))


def _write_index(out, names: list[str], total: int, valid_fraction: float, meta: DatasetMeta) -> None:
    """Header attributes and train/valid masks of a demo file (the dataset.py layout)."""
    out["data"].attrs["env_args"] = json.dumps(meta.env_args())
    out["data"].attrs["total"] = int(total)
    for key, subset in zip(("train", "valid"), split_names(names, valid_fraction)):
        out.create_dataset(f"mask/{key}", data=np.array([n.encode() for n in subset], dtype="S16"))


def main(argv: list[str] | None = None) -> int:
    """python -m theia_eval.envs.adroit.importer DATASET --task adroit/pen --out pen.hdf5"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dataset", help="Minari dataset directory (or its data/main_data.hdf5)")
    parser.add_argument("--task", required=True, help="adroit/pen or adroit/relocate")
    parser.add_argument("--out", required=True, help="output demo file (.hdf5)")
    parser.add_argument("--num-demos", type=int, default=None)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--keep-failed", action="store_true", help="keep episodes failing the rule")
    args = parser.parse_args(argv)
    report = import_minari_adroit(args.dataset, args.task, args.out,
                                  RenderSpec(args.preset, args.resolution, args.crop),
                                  num_demos=args.num_demos, successful_only=not args.keep_failed)
    print(f"{report.dataset_id or args.dataset} -> {report.path}: {report.demos} demos "
          f"({report.skipped_failed} failing the success rule skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
