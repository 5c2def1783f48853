"""Embedding cache: every demo frame encoded once, stored as a float16 memory-mapped .npy on disk.

A cache is one folder `<root>/<encoder name>/<key hash[:20]>/` holding
- embeddings.npy  float16 (N, h, w, C) for kind "tokens" or (N, C') for kind "summary"; N = all
                  frames of all demos, demo after demo (rows offsets[i] .. offsets[i] + lengths[i] - 1);
- actions.npy     float32 (N, A);  proprio.npy float32 (N, P) (P may be 0);
- manifest.json   key fields and their sha256 (`key_hash`), shapes, dtype, demo keys/offsets/lengths,
                  encoder name, weights id, byte size and sha256 of each file, the crc32 of every 8 MiB
                  chunk of each file (`chunks`), creation time.
The key is (cache format, kind, encoder identity: name + weights id (+ size/mtime when it is a
local path) + grid/dims/input size/preprocessing/dtype, demo-source fingerprint). Heads and
training seeds are not part of it, so every head and seed reuses one cache. A changed key gives a
new folder; a folder that fails its checks (missing/truncated files, sizes or shapes that
disagree with the manifest, a chunk whose checksum differs: corruption of the same size) is
rebuilt by `get_or_build_cache` and rejected by `EmbeddingCache.open`. The checksums are verified
on every open by default (crc32 per chunk, about 1 GB/s, once per process; caches written before
the chunk checksums by their sha256). Folders are written under a temporary name and renamed into
place, under a lock file, so parallel jobs (3 seeds) encode once; a temporary folder left by a
killed build is removed by the next build under that lock (or by any build in the same encoder
folder once its lock is free).

Demo sources follow the small `DemoSource` protocol: `HDF5DemoSource` reads robomimic-layout files
(data/demo_i/{obs/rgb, obs/proprio, actions}, mask/<split>), `ArrayDemoSource` wraps arrays.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from theia_eval.errors import InputError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
KINDS = ("tokens", "summary")
FLOAT16_MAX = float(np.finfo(np.float16).max)
_HASH_CHUNK = 8 << 20
CHECK_CHUNK = 8 << 20  # bytes per crc32 chunk in the manifest


# --- demo sources ----------------------------------------------------------------------------------
@runtime_checkable
class DemoSource(Protocol):
    """What the cache and BC need from a set of demonstrations."""

    def demo_keys(self) -> list[str]:
        """Demo names in a fixed order (the cache rows follow it)."""

    def num_frames(self, key: str) -> int: ...

    def frames(self, key: str, start: int, stop: int) -> np.ndarray:
        """uint8 RGB frames start..stop-1 of a demo, (n, H, W, 3)."""

    def actions(self, key: str) -> np.ndarray:
        """(T, A) actions of a demo."""

    def proprio(self, key: str) -> np.ndarray:
        """(T, P) proprioception of a demo (P = 0 when the task has none)."""

    def fingerprint(self) -> str:
        """A string that changes whenever the content or the demo selection changes."""


def _sha256_arrays(*items: Any) -> str:
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, np.ndarray):
            h.update(f"{item.dtype.str}{item.shape}".encode())
            h.update(np.ascontiguousarray(item).tobytes())
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()


class ArrayDemoSource:
    """Demos held in memory: {name: {"rgb": uint8 (T,H,W,3), "actions": (T,A), "proprio": (T,P) optional}}."""

    def __init__(self, demos: Mapping[str, Mapping[str, np.ndarray]]):
        self._demos = {str(k): dict(v) for k, v in demos.items()}
        for key, demo in self._demos.items():
            missing = {"rgb", "actions"} - set(demo)
            if missing:
                raise InputError(f"demo '{key}' lacks {sorted(missing)}; give rgb (T,H,W,3) uint8 and actions (T,A).")
            demo.setdefault("proprio", np.zeros((len(demo["rgb"]), 0), np.float32))
        self._fingerprint: str | None = None

    def demo_keys(self) -> list[str]:
        return list(self._demos)

    def num_frames(self, key: str) -> int:
        return len(self._demos[key]["rgb"])

    def frames(self, key: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._demos[key]["rgb"][start:stop])

    def actions(self, key: str) -> np.ndarray:
        return np.asarray(self._demos[key]["actions"])

    def proprio(self, key: str) -> np.ndarray:
        return np.asarray(self._demos[key]["proprio"])

    def fingerprint(self) -> str:
        """sha256 of every array's dtype, shape and bytes, in demo order."""
        if self._fingerprint is None:
            parts = [x for k, d in self._demos.items() for x in (k, d["rgb"], d["actions"], d["proprio"])]
            self._fingerprint = "arrays:" + _sha256_arrays(*parts)
        return self._fingerprint


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed; memoized per process by (real path, size, mtime_ns)."""
    st = os.stat(path)
    memo_key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if memo_key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(_HASH_CHUNK), b""):
                h.update(block)
        _FILE_HASHES[memo_key] = h.hexdigest()
    return _FILE_HASHES[memo_key]


def chunk_crc32(path: str | Path, chunk: int = CHECK_CHUNK) -> list[int]:
    """crc32 of every `chunk` bytes of a file, in order."""
    out = []
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            out.append(zlib.crc32(block))
    return out


_VERIFIED: set[tuple] = set()


def _stat_key(path: Path) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def verify_file(path: Path, info: Mapping[str, Any], chunks: Mapping[str, Any] | None) -> None:
    """Compare a cache file with its manifest checksums (crc32 per chunk, else sha256); once per process."""
    key = _stat_key(path)
    if key in _VERIFIED:
        return
    if chunks:
        size = int(chunks["bytes_per_chunk"])
        found = chunk_crc32(path, size)
        bad = [i for i, (a, b) in enumerate(zip(found, chunks["crc32"])) if a != b]
        if bad or len(found) != len(chunks["crc32"]):
            where = f"bytes {bad[0] * size}-{(bad[0] + 1) * size - 1}" if bad else "its chunk count"
            raise ValueError(f"{path.name} does not match its checksums in the manifest at {where} "
                             f"({len(bad)} chunk(s) differ: corrupted)")
    elif file_sha256(path) != info["sha256"]:
        raise ValueError(f"{path.name} does not match its sha256 in the manifest (corrupted)")
    _VERIFIED.add(key)


def _demo_order(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


class HDF5DemoSource:
    """Demos in a robomimic-layout HDF5 file.

    Layout: data/<demo>/obs/<rgb_key> uint8 (T,H,W,3), data/<demo>/obs/<proprio_key> (T,P),
    data/<demo>/actions (T,A); optional mask/<split> = list of demo names (bytes or str).
    split=None takes every data/demo_* in numeric order. Proprio absent from every demo means P = 0.
    The fingerprint is the sha256 of the file bytes plus the selection (split, keys, demo names).
    """

    def __init__(self, path: str | Path, split: str | None = None, rgb_key: str = "rgb",
                 proprio_key: str = "proprio"):
        import h5py

        self.path, self.split, self.rgb_key, self.proprio_key = Path(path), split, rgb_key, proprio_key
        if not self.path.is_file():
            raise InputError(f"demo file {self.path} does not exist; record demos first or fix the path.")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"{self.path} is not a readable HDF5 file ({exc}); it is truncated, corrupt or not a "
                             "demo file: pass the demo file (robomimic layout) or collect it again.") from exc
        if "data" not in self._file:
            raise InputError(f"{self.path} has no 'data' group: not a robomimic-layout demo file.")
        self._keys = self._select_keys()
        self._has_proprio = self._check_demos()

    def _select_keys(self) -> list[str]:
        data = self._file["data"]
        if self.split is None:
            return sorted(data.keys(), key=_demo_order)
        masks = self._file.get("mask")
        if masks is None or self.split not in masks:
            have = sorted(masks.keys()) if masks is not None else []
            raise InputError(f"{self.path} has no mask/{self.split}; available splits: {have or 'none'} "
                             "(split=null, the default, uses all demos).")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in masks[self.split][()]]
        absent = [n for n in names if n not in data]
        if absent:
            raise InputError(f"mask/{self.split} of {self.path} names demos missing from data/: {absent[:5]}.")
        return names

    def _check_demos(self) -> bool:
        """Validate dtypes and shapes from metadata (no frame is read); return whether proprio exists."""
        with_proprio = []
        for key in self._keys:
            demo = self._file["data"][key]
            obs = demo.get("obs")
            if obs is None or self.rgb_key not in obs or "actions" not in demo:
                raise InputError(f"demo '{key}' in {self.path} needs obs/{self.rgb_key} and actions.")
            rgb, act = obs[self.rgb_key], demo["actions"]
            if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
                raise InputError(f"demo '{key}': obs/{self.rgb_key} must be uint8 (T,H,W,3), "
                                 f"got {rgb.dtype} {rgb.shape}.")
            if act.ndim != 2 or act.shape[0] != rgb.shape[0]:
                raise InputError(f"demo '{key}': actions {act.shape} must be (T={rgb.shape[0]}, A).")
            with_proprio.append(self.proprio_key in obs)
        if any(with_proprio) and not all(with_proprio):
            raise InputError(f"obs/{self.proprio_key} exists in some demos of {self.path} but not all.")
        return bool(with_proprio) and all(with_proprio)

    def demo_keys(self) -> list[str]:
        return list(self._keys)

    def num_frames(self, key: str) -> int:
        return int(self._file["data"][key]["obs"][self.rgb_key].shape[0])

    def frames(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._file["data"][key]["obs"][self.rgb_key][start:stop]

    def actions(self, key: str) -> np.ndarray:
        return np.asarray(self._file["data"][key]["actions"][()], dtype=np.float32)

    def proprio(self, key: str) -> np.ndarray:
        if not self._has_proprio:
            return np.zeros((self.num_frames(key), 0), np.float32)
        return np.asarray(self._file["data"][key]["obs"][self.proprio_key][()], dtype=np.float32)

    def fingerprint(self) -> str:
        selection = [self.split, self.rgb_key, self.proprio_key, self._keys]
        return f"hdf5:{file_sha256(self.path)}:" + _sha256_arrays(selection)[:16]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> HDF5DemoSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- the cache key ---------------------------------------------------------------------------------
def _jsonable(x: Any) -> Any:
    return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x


# files of a weights folder that can change what an encoder computes (weights, configs, statistics); its card,
# plots and training checkpoints do not enter cache keys, so editing a model card keeps the caches
KEYED_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".json", ".npy", ".py")


def _weights_stat(weights_id: str) -> list[Any] | None:
    """(name, size, mtime_ns) of every file behind a local weights path that can change the encoder's output
    (KEYED_SUFFIXES, outside checkpoints/), so replaced weights invalidate."""
    if not weights_id or not os.path.exists(weights_id):
        return None
    p = Path(weights_id)
    files = [p] if p.is_file() else sorted(
        q for q in p.rglob("*") if q.is_file() and q.suffix in KEYED_SUFFIXES
        and "checkpoints" not in q.relative_to(p).parts)
    return [[str(q.relative_to(p.parent)), q.stat().st_size, q.stat().st_mtime_ns] for q in files]


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """The encoder facts that change embeddings: name, weights id, dims, input size, preprocessing, dtype."""
    cfg = encoder.config
    fields = ("name", "architecture", "input_size", "grid", "token_dim", "summary_dim", "summary", "preprocess")
    ident = {f: _jsonable(getattr(cfg, f, None)) for f in fields}
    weights_id = str(getattr(encoder, "weights_id", "") or "")
    ident.update(weights_id=weights_id, weights_files=_weights_stat(weights_id),
                 dtype=str(getattr(encoder, "dtype", "")))
    return ident


def cache_key(encoder: Any, source: DemoSource, kind: str) -> dict[str, Any]:
    """All fields that decide a cache's content."""
    if kind not in KINDS:
        raise InputError(f"cache kind must be one of {KINDS}, got '{kind}'.")
    return {"format": CACHE_FORMAT, "kind": kind, "encoder": encoder_identity(encoder), "dataset": source.fingerprint()}


def key_hash(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def match_cache_precision(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Round online embeddings through float16 (as stored in the cache), so evaluation sees what training saw."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float16).astype(np.float32)
    return x.to(torch.float16).to(torch.float32)


def frame_shape(encoder: Any, kind: str) -> tuple[int, ...]:
    """Per-frame embedding shape from the encoder config (no forward pass)."""
    cfg = encoder.config
    return (*tuple(cfg.grid), int(cfg.token_dim)) if kind == "tokens" else (int(cfg.summary_dim),)


# --- reading ---------------------------------------------------------------------------------------
class EmbeddingShapes:
    """Shape facts of anything holding `embeddings` (N, ...), `actions` (N, A) and `proprio` (N, P)."""

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.embeddings.shape[1:])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def proprio_dim(self) -> int:
        return int(self.proprio.shape[1])


@dataclass
class EmbeddingCache(EmbeddingShapes):
    """An opened cache: memory-mapped float16 embeddings plus in-memory actions and proprio."""

    path: Path
    manifest: dict[str, Any]
    embeddings: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def demo_keys(self) -> list[str]:
        return [d["key"] for d in self.manifest["demos"]]

    @property
    def offsets(self) -> np.ndarray:
        return np.array([d["offset"] for d in self.manifest["demos"]], np.int64)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([d["length"] for d in self.manifest["demos"]], np.int64)

    @property
    def num_frames(self) -> int:
        return int(self.embeddings.shape[0])


    def demo_rows(self, key: str) -> slice:
        """Rows of one demo in the flat arrays."""
        for d in self.manifest["demos"]:
            if d["key"] == key:
                return slice(d["offset"], d["offset"] + d["length"])
        raise InputError(f"demo '{key}' is not in the cache at {self.path}; it holds {self.demo_keys[:5]}...")

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> EmbeddingCache:
        """Open and check a cache folder: sizes and shapes against the manifest, and (verify=True, the default)
        every file's checksums (crc32 per chunk; sha256 for caches written without chunk checksums)."""
        path = Path(path)
        try:
            return cls._open_checked(path, verify)
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"embedding cache at {path} is unreadable, incomplete or corrupted ({type(exc).__name__}: "
                             f"{exc}); delete that folder, or rebuild it (`theia-eval embed ... rebuild=true`, "
                             "get_or_build_cache(..., rebuild=True)).") from exc

    @classmethod
    def _open_checked(cls, path: Path, verify: bool) -> EmbeddingCache:
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format") != CACHE_FORMAT:
            raise ValueError(f"cache format {manifest.get('format')} != {CACHE_FORMAT}")
        for name, info in manifest["files"].items():
            size = (path / name).stat().st_size
            if size != info["bytes"]:
                raise ValueError(f"{name} has {size} bytes, the manifest says {info['bytes']} (truncated?)")
            if verify:
                verify_file(path / name, info, (manifest.get("chunks") or {}).get(name))
        emb = np.load(path / "embeddings.npy", mmap_mode="r")
        actions, proprio = np.load(path / "actions.npy"), np.load(path / "proprio.npy")
        n = sum(d["length"] for d in manifest["demos"])
        expected = [tuple(manifest["shape"]), (n, manifest["action_dim"]), (n, manifest["proprio_dim"])]
        if [emb.shape, actions.shape, proprio.shape] != expected or emb.dtype != np.float16:
            raise ValueError(f"arrays {emb.shape} {emb.dtype}, {actions.shape}, {proprio.shape} disagree "
                             f"with the manifest {expected} float16")
        return cls(path, manifest, emb, actions, proprio)


# --- writing ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _collect_labels(source: DemoSource, keys: list[str], lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate actions and proprio of all demos, checking lengths and dims agree."""
    actions, proprio = [], []
    for key, n in zip(keys, lengths):
        a, p = np.asarray(source.actions(key), np.float32), np.asarray(source.proprio(key), np.float32)
        if a.ndim != 2 or len(a) != n or p.ndim != 2 or len(p) != n:
            raise InputError(f"demo '{key}' has {n} frames but actions {a.shape} and proprio {p.shape}; "
                             "both must be (T, dim) with T = the number of frames.")
        actions.append(a)
        proprio.append(p)
    dims = {(a.shape[1], p.shape[1]) for a, p in zip(actions, proprio)}
    if len(dims) != 1:
        raise InputError(f"demos disagree on (action_dim, proprio_dim): {sorted(dims)}; one task per cache.")
    return np.concatenate(actions), np.concatenate(proprio)


def _encode_into(out: np.ndarray, encoder: Any, source: DemoSource, keys: list[str], lengths: list[int],
                 kind: str, chunk_size: int, progress: bool) -> None:
    """Stream frames chunk by chunk through the encoder into the float16 array `out`."""
    row = 0
    with tqdm(total=out.shape[0], unit="frame", desc=f"encode {encoder.config.name}", disable=not progress) as bar:
        for key, n in zip(keys, lengths):
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                emb = getattr(encoder(source.frames(key, start, stop)), kind)
                emb = emb.float().cpu().numpy() if hasattr(emb, "cpu") else np.asarray(emb, np.float32)
                if emb.shape != (stop - start, *out.shape[1:]):
                    raise InputError(f"encoder '{encoder.config.name}' returned {kind} of shape {emb.shape} for "
                                     f"{stop - start} frames; its config promises {out.shape[1:]} per frame.")
                if not np.isfinite(emb).all() or np.abs(emb).max() > FLOAT16_MAX:
                    raise InputError(f"encoder '{encoder.config.name}' gave non-finite or > {FLOAT16_MAX:g} values "
                                     f"on demo '{key}' frames {start}-{stop - 1}; they cannot be stored as float16.")
                stored = emb.astype(np.float16)
                check_float16_fit(emb, stored, f"encoder '{encoder.config.name}' on demo '{key}' frames "
                                               f"{start}-{stop - 1}")
                out[row:row + len(emb)] = stored
                row += len(emb)
                bar.update(len(emb))


FLOAT16_TOLERANCE = 1e-2  # relative L2 change float16 storage may make (O(1) features: about 3e-4)


def check_float16_fit(x: np.ndarray, stored: np.ndarray, what: str) -> None:
    """Refuse embeddings that float16 storage would change beyond FLOAT16_TOLERANCE (relative L2): values near or
    below float16's smallest normal number (6.1e-5) are rounded to a few levels or to zero, and a policy trained on
    the cache would learn from rounding, not from the encoder."""
    norm = float(np.linalg.norm(x))
    if norm == 0.0:
        return
    change = float(np.linalg.norm(x - stored.astype(np.float32))) / norm
    if change > FLOAT16_TOLERANCE:
        raise InputError(f"{what}: storing the embeddings as float16 would change them by {change:.0%} (relative "
                         f"L2; largest |value| {float(np.abs(x).max()):.2g}, float16's smallest normal number is "
                         "6.1e-05): the encoder's outputs are out of scale (e.g. a random init that shrinks the "
                         "activations layer by layer). Fix the encoder's weights or initialization; nothing was "
                         "cached.")


def _mean_tokens_into(out: np.ndarray, tokens: EmbeddingCache, chunk_size: int, progress: bool, name: str) -> None:
    """Fill the summary array `out` (N, C) with the spatial mean of the cached tokens (N, h, w, C), in float32."""
    n = tokens.num_frames
    with tqdm(total=n, unit="frame", desc=f"summary of {name} from its tokens", disable=not progress) as bar:
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            out[start:stop] = tokens.embeddings[start:stop].astype(np.float32).mean(axis=(1, 2)).astype(np.float16)
            bar.update(stop - start)


# A summary derived from cached tokens must match the encoder's own summary on the first frames to within the
# float16 rounding of the cached tokens (2**-11 relative); anything further means the summary is not the mean of
# the tokens (a resampled grid, a differently pooled layer) and the summary is encoded directly instead.
DERIVE_CHECK_FRAMES = 16
DERIVE_TOLERANCE = 2e-3


def _derivable_tokens(encoder: Any, source: DemoSource, root: str | Path | None) -> EmbeddingCache | None:
    """The valid token cache of (encoder, source) under `root` when the encoder's summary is its mean token."""
    cfg = encoder.config
    if root is None or getattr(cfg, "summary", None) != "mean" or int(cfg.summary_dim) != int(cfg.token_dim):
        return None
    key = cache_key(encoder, source, "tokens")
    path = cache_path(root, encoder, key)
    if not (path / "manifest.json").exists():
        return None
    try:
        tokens = EmbeddingCache.open(path)
    except InputError as exc:
        log.warning("%s Encoding the summary directly.", exc)
        return None
    if tokens.manifest["key_hash"] != key_hash(key):
        return None
    return tokens


def _derive_check(encoder: Any, source: DemoSource, tokens: EmbeddingCache) -> dict[str, Any] | None:
    """Encode the first frames directly and compare their summary with the mean of their cached tokens."""
    first = tokens.demo_keys[0]
    n = min(DERIVE_CHECK_FRAMES, source.num_frames(first))
    direct = encoder(source.frames(first, 0, n)).summary
    direct = direct.float().cpu().numpy() if hasattr(direct, "cpu") else np.asarray(direct, np.float32)
    derived = tokens.embeddings[:n].astype(np.float32).mean(axis=(1, 2))
    diff = float(np.abs(direct - derived).max())
    scale = float(np.abs(direct).max()) or 1.0
    if direct.shape != derived.shape or diff > DERIVE_TOLERANCE * scale:
        log.warning("encoder '%s': the mean of its cached tokens differs from its summary by %.3g (scale %.3g) on "
                    "%d frames; encoding the summary directly", encoder.config.name, diff, scale, n)
        return None
    return {"kind": "tokens", "key_hash": tokens.manifest["key_hash"], "checked_frames": n,
            "max_abs_diff": diff, "max_abs_summary": scale}


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def build_cache(encoder: Any, source: DemoSource, path: str | Path, kind: str = "tokens", *, chunk_size: int = 64,
                progress: bool = True, key: Mapping[str, Any] | None = None,
                tokens: EmbeddingCache | None = None) -> EmbeddingCache:
    """Encode every frame of `source` into a new cache folder at `path` (replacing what is there).

    With `tokens` (the valid token cache of the same encoder and source) a "summary" cache of an encoder whose
    summary is its mean token is computed from those tokens instead of running the encoder again, after a
    check on the first frames against the encoder's own summary (the manifest records it as `derived_from`)."""
    key = dict(key or cache_key(encoder, source, kind))
    path, keys = Path(path), list(source.demo_keys())
    if not keys:
        raise InputError("the demo source has no demos (empty file or empty split); record demos first.")
    lengths = [int(source.num_frames(k)) for k in keys]
    empty = [k for k, n in zip(keys, lengths) if n == 0]
    if empty:
        raise InputError(f"demos {empty[:5]} have 0 frames; drop them from the file or the split.")
    actions, proprio = _collect_labels(source, keys, lengths)
    derived = None
    if tokens is not None and kind == "summary":
        if [d["key"] for d in tokens.manifest["demos"]] != keys or tokens.lengths.tolist() != lengths:
            raise InputError(f"the token cache at {tokens.path} holds other demos than the source; it cannot give "
                             "this source's summary (rebuild it: `theia-eval embed ... rebuild=true`).")
        derived = _derive_check(encoder, source, tokens)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        shape = (sum(lengths), *frame_shape(encoder, kind))
        emb = np.lib.format.open_memmap(tmp / "embeddings.npy", mode="w+", dtype=np.float16, shape=shape)
        if derived is not None:
            _mean_tokens_into(emb, tokens, max(chunk_size, 256), progress, encoder.config.name)
        else:
            _encode_into(emb, encoder, source, keys, lengths, kind, chunk_size, progress)
        emb.flush()
        del emb
        _write_npy(tmp / "actions.npy", actions)
        _write_npy(tmp / "proprio.npy", proprio)
        manifest = _manifest(tmp, key, encoder, keys, lengths, shape, actions.shape[1], proprio.shape[1])
        if derived is not None:
            manifest["derived_from"] = derived
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _VERIFIED.update(_stat_key(path / n) for n in manifest["files"])  # checksummed just now
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return EmbeddingCache.open(path, verify=False)


def _manifest(folder: Path, key: Mapping[str, Any], encoder: Any, keys: list[str], lengths: list[int],
              shape: tuple[int, ...], action_dim: int, proprio_dim: int) -> dict[str, Any]:
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    names = ("embeddings.npy", "actions.npy", "proprio.npy")
    files = {n: {"bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names}
    chunks = {n: {"bytes_per_chunk": CHECK_CHUNK, "crc32": chunk_crc32(folder / n)} for n in names}
    return {"format": CACHE_FORMAT, "key_hash": key_hash(key), "key": key, "kind": key["kind"],
            "encoder": encoder.config.name, "weights_id": str(getattr(encoder, "weights_id", "")),
            "shape": list(shape), "dtype": "float16", "action_dim": action_dim, "proprio_dim": proprio_dim,
            "demos": [{"key": k, "offset": int(o), "length": int(n)} for k, o, n in zip(keys, offsets, lengths)],
            "files": files, "chunks": chunks, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def cache_path(root: str | Path, encoder: Any, key: Mapping[str, Any]) -> Path:
    """`<root>/<encoder name>/<key hash[:20]>`."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.config.name)
    return Path(root) / safe / key_hash(key)[:20]


TEMP_DIR = re.compile(r"^\.(?P<target>.+)\.tmp-\d+-[0-9a-f]{8}$")


def remove_stale_builds(folder: Path, holding: str | None = None) -> list[Path]:
    """Remove temporary folders of killed builds in an encoder folder: those of `holding` (whose lock this
    process holds) and those of any other cache whose lock is free; returns what was removed."""
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in sorted(folder.iterdir()):
        match = TEMP_DIR.match(tmp.name)
        if not match or not tmp.is_dir():
            continue
        target = match.group("target")
        if target == holding:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
            continue
        with open(folder / f"{target}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a build of that cache is running now
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    for tmp in removed:
        log.warning("removed %s, a temporary folder left by a killed cache build", tmp)
    return removed


def get_or_build_cache(encoder: Any, source: DemoSource, root: str | Path, kind: str = "tokens", *,
                       chunk_size: int = 64, progress: bool = True, rebuild: bool = False,
                       verify: bool = True, derive: bool = True) -> EmbeddingCache:
    """Open the cache for (encoder, source, kind) under `root`, encoding it first if absent or invalid.

    Opening verifies the checksums (see `EmbeddingCache.open`); a cache that fails is rebuilt. Temporary
    folders of killed builds are removed first (`remove_stale_builds`). A missing "summary" cache of an encoder
    whose summary is its mean token (efficientnet-lite0, mean-pooled backbones) is computed from that encoder's
    token cache under the same root when one exists (`derive=False` encodes it anyway): seconds instead of a
    second pass of the encoder, equal to the encoded summary to within float16 rounding.

    `encoder` follows the encoder contract: `encoder(uint8 (B,H,W,3))` -> `.tokens` (B,h,w,C) and
    `.summary` (B,C'); `encoder.config` has name/grid/token_dim/summary_dim; `encoder.weights_id`.
    """
    key = cache_key(encoder, source, kind)
    path = cache_path(root, encoder, key)
    with _locked(path.parent / f"{path.name}.lock"):
        remove_stale_builds(path.parent, holding=path.name)
        if path.exists() and not rebuild:
            try:
                cache = EmbeddingCache.open(path, verify=verify)
                if cache.manifest["key_hash"] == key_hash(key):
                    return cache
                log.warning("cache at %s belongs to another key; rebuilding it", path)
            except InputError as exc:
                log.warning("%s Rebuilding it.", exc)
        tokens = _derivable_tokens(encoder, source, root) if kind == "summary" and derive else None
        return build_cache(encoder, source, path, kind, chunk_size=chunk_size, progress=progress, key=key,
                           tokens=tokens)
