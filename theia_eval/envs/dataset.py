"""Demonstration files in the robomimic HDF5 layout: write (atomic), read (lazy), validate, summarize.

Layout (one file per task; robomimic's dataset utilities read it):

    data                          attrs: total (frames), env_args (JSON, see `DatasetMeta`)
    data/demo_<i>                 attrs: num_samples, seed, first_success_step
    data/demo_<i>/obs/rgb         (T, H, W, 3) uint8, one compressed chunk per frame
    data/demo_<i>/obs/proprio     (T, P) float32
    data/demo_<i>/obs/state       (T, S) float32
    data/demo_<i>/actions         (T, A) float32
    data/demo_<i>/rewards         (T,) float32
    data/demo_<i>/dones           (T,) uint8, 1 at the last step
    data/demo_<i>/success         (T,) uint8, the per-step success flag
    mask/train, mask/valid        demo names (bytes), a disjoint split

obs[t] is the observation before actions[t]; rewards[t], dones[t] and success[t] follow actions[t].
`next_obs` is not stored (it is obs shifted by one): robomimic readers use load_next_obs=False.

Every file is written to a temporary name in the same folder and renamed into place, so a killed
run never leaves a half-written file under the final name.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from theia_eval.envs.renderer import RenderSpec, check_render_match
from theia_eval.errors import InputError

FORMAT = "theia-eval-demos/2"  # /2: actions are the executed (clipped) ones; /1 stored the expert's raw output
GYM_ENV_TYPE = 2  # robomimic EnvType.GYM_TYPE
VERSIONED_PACKAGES = ("theia-eval", "mujoco", "metaworld", "gymnasium", "numpy", "h5py")
DEMO_NAME = re.compile(r"^demo_(\d+)$")
ARRAY_KEYS = ("actions", "rewards", "dones", "success")
OBS_KEYS = ("rgb", "proprio", "state")


def package_versions(names: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape the data."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass(frozen=True)
class DatasetMeta:
    """Provenance of a demo file; stored as JSON in data.attrs['env_args'] (robomimic's key)."""

    task: str
    suite: str
    camera: str
    render: RenderSpec
    horizon: int
    post_success_steps: int | None = None  # steps kept after the first success (None: to horizon)
    base_seed: int = 0
    seeds: tuple[int, ...] = ()  # seed of demo_i, in order
    failed_seeds: tuple[int, ...] = ()  # expert attempts that failed and were skipped
    source: str = "scripted-expert"
    versions: dict = field(default_factory=package_versions)

    def env_args(self) -> dict:
        """The robomimic env_args dict (env_name, type, env_kwargs) with our facts inside."""
        facts = asdict(self)
        facts["render"] = self.render.as_dict()
        facts["seeds"], facts["failed_seeds"] = list(self.seeds), list(self.failed_seeds)
        facts["format"] = FORMAT
        return {"env_name": self.task, "type": GYM_ENV_TYPE, "env_kwargs": facts}

    @classmethod
    def from_env_args(cls, env_args: dict) -> DatasetMeta:
        kw = dict(env_args["env_kwargs"])
        kw.pop("format", None)
        kw["render"] = RenderSpec(**kw["render"])
        kw["seeds"], kw["failed_seeds"] = tuple(kw["seeds"]), tuple(kw["failed_seeds"])
        return cls(**kw)

    def same_recipe(self, other: DatasetMeta) -> bool:
        """True when two files were made the same way (demos may be pooled)."""
        keys = ("task", "camera", "render", "horizon", "post_success_steps", "base_seed", "source")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclass
class Episode:
    """One demonstration's arrays (T steps)."""

    rgb: np.ndarray  # (T, H, W, 3) uint8
    proprio: np.ndarray  # (T, P)
    state: np.ndarray  # (T, S)
    actions: np.ndarray  # (T, A)
    rewards: np.ndarray  # (T,)
    success: np.ndarray  # (T,) bool
    seed: int = -1
    dones: np.ndarray | None = None  # default: 1 at the last step

    def __post_init__(self) -> None:
        if self.dones is None:
            self.dones = np.zeros(len(self.actions), dtype=np.uint8)
            if len(self.dones):
                self.dones[-1] = 1
        lengths = {k: len(getattr(self, k)) for k in OBS_KEYS + ARRAY_KEYS}
        if len(set(lengths.values())) != 1:
            raise InputError(f"episode arrays have different lengths: {lengths}")
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 4 or self.rgb.shape[-1] != 3:
            raise InputError(f"rgb must be uint8 (T, H, W, 3), got {self.rgb.dtype} {self.rgb.shape}")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def first_success_step(self) -> int:
        hits = np.flatnonzero(self.success)
        return int(hits[0]) if hits.size else -1


@dataclass(frozen=True)
class Storage:
    """How image frames are compressed: gzip with a level (portable), lzf (h5py only), or none."""

    compression: str | None = "gzip"
    level: int | None = 1

    def __post_init__(self) -> None:
        if self.compression not in ("lzf", "gzip", None):
            raise InputError(f"compression must be lzf, gzip or null, got {self.compression!r}")

    def kwargs(self) -> dict:
        if self.compression is None:
            return {}
        opts = {"compression_opts": self.level} if self.compression == "gzip" and self.level else {}
        return {"compression": self.compression, **opts}


# ----------------------------------------------------------------------------------------- writing
@contextmanager
def atomic_h5(path: str | Path) -> Iterator:
    """Open a temporary HDF5 next to `path`; rename it to `path` only if the block succeeds."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_episode(group, ep: Episode, storage: Storage) -> None:
    """Write one episode into an (empty) demo group."""
    obs = group.create_group("obs")
    frame = (1,) + ep.rgb.shape[1:]
    obs.create_dataset("rgb", data=ep.rgb, chunks=frame, **storage.kwargs())
    obs.create_dataset("proprio", data=np.asarray(ep.proprio, dtype=np.float32))
    obs.create_dataset("state", data=np.asarray(ep.state, dtype=np.float32))
    group.create_dataset("actions", data=np.asarray(ep.actions, dtype=np.float32))
    group.create_dataset("rewards", data=np.asarray(ep.rewards, dtype=np.float32))
    group.create_dataset("dones", data=np.asarray(ep.dones, dtype=np.uint8))
    group.create_dataset("success", data=np.asarray(ep.success, dtype=np.uint8))
    group.attrs["num_samples"] = len(ep)
    group.attrs["seed"] = int(ep.seed)
    group.attrs["first_success_step"] = ep.first_success_step


def _write_header(f, meta: DatasetMeta, total: int) -> None:
    f["data"].attrs["env_args"] = json.dumps(meta.env_args())
    f["data"].attrs["total"] = int(total)


def split_names(names: list[str], valid_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic train/valid split: the last round(n * fraction) demos are validation."""
    if not 0.0 <= valid_fraction < 1.0:
        raise InputError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    n_valid = int(round(len(names) * valid_fraction))
    n_valid = min(n_valid, max(len(names) - 1, 0))
    return names[:len(names) - n_valid], names[len(names) - n_valid:]


def _write_masks(f, names: list[str], valid_fraction: float) -> None:
    train, valid = split_names(names, valid_fraction)
    for key, subset in (("train", train), ("valid", valid)):
        f.create_dataset(f"mask/{key}", data=np.array([n.encode() for n in subset], dtype="S16"))


def write_demos(path: str | Path, episodes: list[Episode], meta: DatasetMeta,
                storage: Storage = Storage(), valid_fraction: float = 0.1) -> Path:
    """Write a whole demo file atomically (meta.seeds is taken from the episodes)."""
    meta = replace(meta, seeds=tuple(int(ep.seed) for ep in episodes))
    with atomic_h5(path) as f:
        data = f.create_group("data")
        for i, ep in enumerate(episodes):
            write_episode(data.create_group(f"demo_{i}"), ep, storage)
        _write_header(f, meta, sum(len(ep) for ep in episodes))
        _write_masks(f, [f"demo_{i}" for i in range(len(episodes))], valid_fraction)
    return Path(path)


@dataclass(frozen=True)
class DemoRef:
    """A demo stored in some file (used to merge parts and existing files)."""

    path: Path
    name: str
    seed: int


def merge_demos(path: str | Path, refs: list[DemoRef], meta: DatasetMeta,
                valid_fraction: float = 0.1) -> Path:
    """Copy demos (compressed chunks as they are) from several files into one new file, atomically."""
    meta = replace(meta, seeds=tuple(r.seed for r in refs))
    total = 0
    with atomic_h5(path) as f:
        data = f.create_group("data")
        for i, ref in enumerate(refs):
            with _open_h5(ref.path) as src:
                src.copy(src[f"data/{ref.name}"], data, name=f"demo_{i}")
            total += int(data[f"demo_{i}"].attrs["num_samples"])
        _write_header(f, meta, total)
        _write_masks(f, [f"demo_{i}" for i in range(len(refs))], valid_fraction)
    return Path(path)


# ----------------------------------------------------------------------------------------- reading
def _open_h5(path: str | Path):
    """h5py.File(path, 'r') with errors that name the file and say what to do."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"demo file {path} does not exist; collect it with `theia-eval demos`")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a readable HDF5 file ({exc}); it is truncated or corrupt. "
                         "Delete it and run `theia-eval demos` again.") from exc


def demo_sort_key(name: str) -> int:
    match = DEMO_NAME.match(name)
    if not match:
        raise InputError(f"unexpected group data/{name}: demo groups are named demo_<int>")
    return int(match.group(1))


def read_meta(f, path: Path) -> DatasetMeta:
    """Parse data.attrs['env_args'] of an open file."""
    if "data" not in f:
        raise InputError(f"{path} has no 'data' group: not a demo file in the robomimic layout")
    raw = f["data"].attrs.get("env_args")
    if raw is None:
        raise InputError(f"{path}: data.attrs['env_args'] is missing (was the file written by "
                         "theia-eval? re-collect or re-import it)")
    try:
        env_args = json.loads(raw)
        meta = DatasetMeta.from_env_args(env_args)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: data.attrs['env_args'] is not valid theia-eval metadata ({exc})") from exc
    if env_args["env_kwargs"].get("format") == "theia-eval-demos/1" and meta.source == "scripted-expert":
        raise InputError(f"{path} was collected by an older theia-eval that stored the expert's raw actions (up to "
                         "a fifth outside [-1, 1]) instead of the clipped actions the simulator executed: delete it "
                         "and collect it again (`theia-eval demos ...`).")
    return meta


def check_demo_group(group, path: Path) -> int:
    """Structural checks of one demo group; returns its length."""
    where = f"{path}:{group.name}"
    missing = [k for k in ARRAY_KEYS if k not in group] + [f"obs/{k}" for k in OBS_KEYS
                                                          if f"obs/{k}" not in group]
    if missing:
        raise InputError(f"{where} is missing {', '.join(missing)}; the file is incomplete. "
                         "Delete it and re-collect.")
    n = int(group.attrs.get("num_samples", -1))
    lengths = {k: group[k].shape[0] for k in ARRAY_KEYS}
    lengths.update({f"obs/{k}": group[f"obs/{k}"].shape[0] for k in OBS_KEYS})
    bad = {k: v for k, v in lengths.items() if v != n}
    if bad:
        raise InputError(f"{where}: num_samples={n} but {bad}; the file is inconsistent. "
                         "Delete it and re-collect.")
    rgb = group["obs/rgb"]
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise InputError(f"{where}/obs/rgb must be uint8 (T, H, W, 3), got {rgb.dtype} {rgb.shape}")
    return n


class Demo:
    """Lazy view of one demo: arrays are read on access; frames can be streamed."""

    def __init__(self, group, path: Path) -> None:
        self._group, self.path = group, path
        self.name = group.name.rsplit("/", 1)[-1]
        self.num_samples = int(group.attrs["num_samples"])
        self.seed = int(group.attrs.get("seed", -1))
        self.first_success_step = int(group.attrs.get("first_success_step", -1))

    def __len__(self) -> int:
        return self.num_samples

    def _read(self, key: str, index=slice(None)) -> np.ndarray:
        try:
            return self._group[key][index]
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}:{self._group.name}/{key} cannot be read ({exc}); "
                             "the file is corrupt. Delete it and re-collect.") from exc

    @property
    def rgb_dataset(self):
        """The h5py dataset of frames (slice it to read only what you need)."""
        return self._group["obs/rgb"]

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._read("obs/rgb", slice(start, stop))

    def iter_frames(self, batch: int = 64) -> Iterator[np.ndarray]:
        """Yield (b, H, W, 3) uint8 blocks of frames in order, reading `batch` frames at a time."""
        for start in range(0, self.num_samples, batch):
            yield self.frames(start, min(start + batch, self.num_samples))

    def __getattr__(self, key: str) -> np.ndarray:
        """proprio, state, actions, rewards, dones, success as numpy arrays."""
        if key in ARRAY_KEYS:
            return self._read(key)
        if key in ("proprio", "state"):
            return self._read(f"obs/{key}")
        raise AttributeError(key)

    def load(self) -> Episode:
        """All arrays of this demo in memory."""
        return Episode(rgb=self.frames(), proprio=self.proprio, state=self.state,
                       actions=self.actions, rewards=self.rewards, dones=self.dones,
                       success=self.success.astype(bool), seed=self.seed)


class DemoFile:
    """An open demo file: `meta`, `names`, demos by index or name, masks. Use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = _open_h5(self.path)
        try:
            self.meta = read_meta(self._f, self.path)
            self.names = sorted(self._f["data"].keys(), key=demo_sort_key)
            self.lengths = [check_demo_group(self._f[f"data/{n}"], self.path) for n in self.names]
        except BaseException:
            self._f.close()
            raise

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | str) -> Demo:
        name = self.names[key] if isinstance(key, int) else key
        if name not in self.names:
            raise InputError(f"{self.path} has no demo '{name}' (it has {len(self.names)} demos)")
        return Demo(self._f[f"data/{name}"], self.path)

    def __iter__(self) -> Iterator[Demo]:
        return (self[n] for n in self.names)

    def mask(self, split: str) -> list[str]:
        """Demo names of a split (e.g. 'train', 'valid')."""
        if f"mask/{split}" not in self._f:
            raise InputError(f"{self.path} has no mask/{split}")
        return [n.decode() for n in self._f[f"mask/{split}"][:]]

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> DemoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_demos(path: str | Path, expect_preset: str | None = None,
               expect_resolution: int | None = None, expect_crop: int | None | str = "any",
               force: bool = False) -> DemoFile:
    """Open a demo file, refusing one rendered with another preset/resolution/crop unless forced.

    None (preset/resolution) or "any" (crop) skips that check. The caller closes the file
    (or uses it as a context manager).
    """
    demos = DemoFile(path)
    found = demos.meta.render
    wanted = RenderSpec(expect_preset or found.preset, int(expect_resolution or found.resolution),
                        found.crop if expect_crop == "any" else expect_crop)
    try:
        check_render_match(found, wanted, f"demo file {demos.path}", force=force)
    except InputError:
        demos.close()
        raise
    return demos


def check_finite(demo: Demo, key: str, values: np.ndarray) -> None:
    """Refuse NaN or infinite numbers in a demo array (a policy trained on them learns garbage)."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))
        raise InputError(f"{demo.path}:{demo._group.name}/{key} has {len(bad)} non-finite value(s) (NaN/inf), the "
                         f"first at index {tuple(int(i) for i in bad[0])}: the file is damaged or was written by a "
                         "faulty expert. Collect or import it again.")


def verify_frames(path: str | Path) -> int:
    """Read every stored array once (finds corrupt chunks and non-finite numbers); returns the frames read."""
    frames = 0
    with DemoFile(path) as demos:
        for demo in demos:
            for block in demo.iter_frames():
                frames += len(block)
            for key in ARRAY_KEYS + ("proprio", "state"):
                check_finite(demo, key, getattr(demo, key))
    return frames


# -------------------------------------------------------------------------------------------- info
def dataset_info(path: str | Path) -> dict:
    """Summary of a demo file: task, demos, lengths, success, render settings, size."""
    with DemoFile(path) as demos:
        meta, lengths = demos.meta, np.array(demos.lengths)
        final = [bool(d.success[-1]) if len(d) else False for d in demos]
        first = [d.first_success_step for d in demos]
        returns = np.array([float(np.sum(d.rewards, dtype=np.float64)) for d in demos])
        shape = tuple(demos[0].rgb_dataset.shape[1:]) if len(demos) else ()
        masks = {k: len(demos.mask(k)) for k in ("train", "valid")}
    return {"path": str(path), "task": meta.task, "suite": meta.suite, "camera": meta.camera,
            "source": meta.source, "render": meta.render.as_dict(), "image_shape": shape,
            "demos": len(lengths), "frames": int(lengths.sum()),
            "length": _stats(lengths), "first_success_step": _stats(np.array(first)),
            "return": _float_stats(returns),  # the sum of each demo's rewards (DMC: the episode return)
            "final_success_rate": float(np.mean(final)) if final else 0.0,
            "horizon": meta.horizon, "post_success_steps": meta.post_success_steps,
            "seeds": list(meta.seeds), "failed_seeds": list(meta.failed_seeds), "masks": masks,
            "size_mb": round(os.path.getsize(path) / 2**20, 2), "versions": meta.versions}


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": int(values.min()), "mean": round(float(values.mean()), 1), "max": int(values.max())}


def _float_stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"min": 0.0, "mean": 0.0, "max": 0.0}
    return {k: round(float(f(values)), 1) for k, f in (("min", np.min), ("mean", np.mean), ("max", np.max))}


def format_info(info: dict) -> str:
    """Human-readable lines of `dataset_info`."""
    r, ln, fs, rt = info["render"], info["length"], info["first_success_step"], info["return"]
    return "\n".join([
        f"{info['path']}: {info['task']} ({info['suite']}), {info['source']}",
        f"  demos {info['demos']}, frames {info['frames']}, length min/mean/max "
        f"{ln['min']}/{ln['mean']}/{ln['max']}, first success step {fs['min']}/{fs['mean']}/{fs['max']}",
        f"  final-step success {info['final_success_rate'] * 100:.0f}%, "
        f"horizon {info['horizon']}, kept after success {info['post_success_steps']}",
        f"  return (sum of rewards) min/mean/max {rt['min']}/{rt['mean']}/{rt['max']}",
        f"  camera {info['camera']}, preset {r['preset']}, resolution {r['resolution']}, "
        f"crop {r['crop']}, image {info['image_shape']}",
        f"  masks train {info['masks']['train']} / valid {info['masks']['valid']}, "
        f"size {info['size_mb']} MB, failed expert seeds {len(info['failed_seeds'])}",
        "  versions " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
    ])
