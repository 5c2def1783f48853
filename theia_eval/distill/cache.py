"""Cached teacher targets: sharded half-precision files with a key and checksum per sample.

Layout (one directory per teacher, so teacher sets share caches):
  <cache root>/<teacher id>-<hash of name, weights, kwargs>/
      cache.json                 teacher, grid, width, storage dtype, shard size, data fingerprint
      shard-00000.safetensors    targets (n, h, w, C) float16|bfloat16, crc32 (n,), partial stats
                                 (stats.count, stats.mean, stats.m2 in float64); metadata: keys (JSON)
      <id>.stats.safetensors     merged per-channel mean/std (written once every shard exists)
Shard i holds samples [i*S, (i+1)*S) of the data source in its order. Extraction is resumable per shard
(a finished shard is written atomically and skipped later) and split across DDP ranks by shard.
At load time every sample is looked up by its key and its bytes are checked against the stored crc32,
so a mismatch names the shard and the key instead of silently training on misaligned targets.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from theia_eval.distill.stats import RunningStats, check_finite, load_stats, save_stats
from theia_eval.distill.teachers import Teacher
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, read_json, remove_stale_temp_files, temp_sibling

FORMAT = "theia-eval-targets/1"
MANIFEST = "cache.json"
STORAGE_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def storage_dtype(name: str) -> torch.dtype:
    if name not in STORAGE_DTYPES:
        raise InputError(f"unknown cache_dtype '{name}'; use one of {sorted(STORAGE_DTYPES)}.")
    return STORAGE_DTYPES[name]


def round_targets(targets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Targets as stored (cached and online modes both round through the storage dtype)."""
    return targets.to(dtype)


def row_crc(row: torch.Tensor) -> int:
    """crc32 of one stored sample's bytes."""
    return zlib.crc32(row.contiguous().view(torch.int16).numpy().tobytes())


def check_finite_targets(teacher: Teacher, keys: list[str], stored: torch.Tensor, dtype: torch.dtype) -> None:
    bad = ~torch.isfinite(stored.float()).flatten(1).all(1)
    if bad.any():
        key = keys[int(bad.nonzero()[0, 0])]
        raise InputError(f"teacher '{teacher.id}' produced non-finite targets for sample '{key}' (after rounding to "
                         f"{dtype}; float16 overflows beyond +-65504). Use cache_dtype=bfloat16, or check the "
                         "teacher's weights and inputs.")


def teacher_dir_name(teacher: Teacher) -> str:
    spec = teacher.spec
    digest = hashlib.sha256(json.dumps([spec.name, spec.weights, spec.kwargs], sort_keys=True,
                                       default=str).encode()).hexdigest()[:8]
    return f"{teacher.id.replace('/', '__')}-{digest}"


def shard_ranges(num_samples: int, shard_size: int) -> list[range]:
    return [range(s, min(s + shard_size, num_samples)) for s in range(0, num_samples, shard_size)]


@dataclass
class TeacherCache:
    """One teacher's cache directory."""

    root: Path
    teacher: Teacher
    dtype_name: str
    shard_size: int
    fingerprint: str
    num_samples: int

    @property
    def manifest(self) -> dict:
        t = self.teacher
        return {"format": FORMAT, "teacher": t.describe(), "grid": list(t.grid), "dim": t.dim,
                "dtype": self.dtype_name, "shard_size": self.shard_size, "num_samples": self.num_samples,
                "source_fingerprint": self.fingerprint,
                "bytes_per_image": t.grid[0] * t.grid[1] * t.dim * storage_dtype(self.dtype_name).itemsize}

    def shard_file(self, index: int) -> Path:
        return self.root / f"shard-{index:05d}.safetensors"

    def prepare(self) -> None:
        """Create the directory, or check that an existing one holds this teacher's targets for this data."""
        path = self.root / MANIFEST
        if path.is_file():
            check_manifest(read_json(path, "the target-cache manifest"), self.manifest, self.root)
            remove_stale_temp_files(self.root)  # a shard a killed extraction was writing
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.manifest)

    def shard_done(self, index: int, keys: list[str]) -> bool:
        """Whether shard `index` exists with exactly these keys (a torn or stale shard is redone)."""
        file = self.shard_file(index)
        if not file.is_file():
            return False
        try:
            return read_shard_keys(file) == keys
        except InputError:
            return False

    def write_shard(self, index: int, keys: list[str], stored: torch.Tensor) -> None:
        """Write one shard atomically: targets, per-sample crc32, partial stats, keys."""
        from theia_eval.io import save_safetensors

        stats = RunningStats.empty(self.teacher.dim)
        stats.update(stored)
        tensors = {"targets": stored.contiguous(), "crc32": torch.tensor([row_crc(r) for r in stored], dtype=torch.int64),
                   "stats.count": torch.tensor([stats.count], dtype=torch.int64), "stats.mean": stats.mean,
                   "stats.m2": stats.m2}
        file = self.shard_file(index)
        tmp = temp_sibling(file)
        save_safetensors(tensors, tmp, metadata={"format": FORMAT, "keys": json.dumps(keys), "shard": str(index),
                                               "teacher_id": self.teacher.id})
        os.replace(tmp, file)

    def merge_stats(self) -> Path:
        """Merge the shards' partial statistics (in shard order) and save mean/std."""
        total = RunningStats.empty(self.teacher.dim)
        for i in range(len(shard_ranges(self.num_samples, self.shard_size))):
            file = self.shard_file(i)
            with open_shard(file) as f:
                total.merge(RunningStats(int(f.get_tensor("stats.count")[0]), f.get_tensor("stats.mean"),
                                         f.get_tensor("stats.m2")))
        check_finite(total, str(self.root))
        return save_stats(self.root, self.teacher.id, total, {"images": self.num_samples, "grid": self.teacher.grid})


def check_manifest(found: dict, expected: dict, root: Path) -> None:
    """Refuse a cache whose teacher grid/width, dtype, shard size or data differ from this run's."""
    for key, what in (("grid", "grid"), ("dim", "width"), ("dtype", "storage dtype"), ("shard_size", "shard size")):
        if found.get(key) != expected[key]:
            raise InputError(
                f"target cache {root} holds {what} {found.get(key)} but teacher '{expected['teacher']['id']}' now "
                f"gives {expected[key]}: the teacher or cache settings changed since extraction. Delete {root} to "
                "re-extract, or pass another cache_dir=.")
    if found.get("source_fingerprint") != expected["source_fingerprint"]:
        raise InputError(f"target cache {root} was extracted from other data (fingerprint "
                         f"{str(found.get('source_fingerprint'))[:12]} vs {expected['source_fingerprint'][:12]} for "
                         "this data source): images were added, removed or changed. Pass another cache_dir= or "
                         f"delete {root}.")


class open_shard:
    """Context manager around safetensors.safe_open that names the shard when it is unreadable."""

    def __init__(self, file: Path):
        self.file = file

    def __enter__(self):
        from safetensors import SafetensorError, safe_open

        try:
            self.handle = safe_open(str(self.file), framework="pt")
            return self.handle.__enter__()
        except (SafetensorError, OSError) as exc:
            raise InputError(f"corrupt target cache shard {self.file} ({exc}); delete it and re-run the extraction "
                             "(it resumes and redoes only missing shards).") from exc

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


def read_shard_keys(file: Path) -> list[str]:
    with open_shard(file) as f:
        meta = f.metadata() or {}
    try:
        return list(json.loads(meta["keys"]))
    except (KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"corrupt target cache shard {file}: its key list is missing or unreadable; delete it and "
                         "re-run the extraction.") from exc


# --- extraction -----------------------------------------------------------------------------------
def cache_root(cache_dir: str | None, fingerprint: str) -> Path:
    """cache_dir, or <data root>/targets/<data fingerprint> by default."""
    from theia_eval.distill.sources import data_root

    return Path(cache_dir).expanduser() if cache_dir else data_root() / "targets" / fingerprint[:16]


def teacher_caches(root: Path, teachers: list[Teacher], source, dtype_name: str, shard_size: int) -> list[TeacherCache]:
    fp = source.fingerprint()
    return [TeacherCache(root / teacher_dir_name(t), t, dtype_name, int(shard_size), fp, len(source)) for t in teachers]


def extract_targets(caches: list[TeacherCache], source, device: torch.device, batch_size: int, num_workers: int = 0,
                    rank: int = 0, world: int = 1, progress: bool = True, barrier=None) -> dict:
    """Fill every missing shard of every teacher cache; returns a report (shards done, bytes, seconds)."""
    from theia_eval.distill.data import source_loader

    t0 = time.perf_counter()
    if rank == 0:
        for c in caches:
            c.prepare()
    if barrier:
        barrier()
    for c in caches:  # every rank checks the manifests (and fails the same way)
        c.prepare()
    dtype = storage_dtype(caches[0].dtype_name)
    ranges = shard_ranges(len(source), caches[0].shard_size)
    todo = [(i, r, [c for c in caches if not c.shard_done(i, source.keys[r.start:r.stop])])
            for i, r in enumerate(ranges) if i % world == rank]
    todo = [(i, r, cs) for i, r, cs in todo if cs]
    bar = progress_bar(len(todo), "extracting targets", progress and rank == 0)
    for i, r, pending in todo:
        parts: dict[str, list[torch.Tensor]] = {c.teacher.id: [] for c in pending}
        for batch in source_loader(source, list(r), batch_size, num_workers):
            batch = batch.to(device)
            for c in pending:
                stored = round_targets(c.teacher(batch), dtype).cpu()
                check_finite_targets(c.teacher, batch.keys, stored, dtype)
                parts[c.teacher.id].append(stored)
        for c in pending:
            c.write_shard(i, source.keys[r.start:r.stop], torch.cat(parts[c.teacher.id]))
        bar.update(1)
    bar.close()
    if barrier:
        barrier()
    if rank == 0:  # cheap (a few small tensors per shard), so always redone: any rank may have added shards
        for c in caches:
            c.merge_stats()
    if barrier:
        barrier()
    return {"shards_total": len(ranges), "shards_extracted_here": len(todo), "seconds": time.perf_counter() - t0,
            "teachers": {c.teacher.id: {"dir": str(c.root), "bytes_per_image": c.manifest["bytes_per_image"],
                                        "bytes_total": disk_bytes(c.root)} for c in caches}}


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("shard-*.safetensors"))


def progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


# --- reading for training -------------------------------------------------------------------------
class CachedTargets:
    """Per-key access to every teacher's cached targets, with checksum checks on each sample read."""

    def __init__(self, caches: list[TeacherCache], keys: list[str]):
        self.caches = caches
        self.index: list[dict[str, tuple[int, int]]] = []
        for c in caches:
            check_cache_complete(c)
            self.index.append(index_keys(c, keys))
        self._handles: dict[tuple[int, int], object] = {}
        self._pid = os.getpid()

    def stats(self) -> list[RunningStats]:
        return [load_stats(c.root, c.teacher.id, c.teacher.dim) for c in self.caches]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def handle(self, t: int, shard: int):
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if (t, shard) not in self._handles:
            file = self.caches[t].shard_file(shard)
            ctx = open_shard(file)
            self._handles[(t, shard)] = (ctx.__enter__(), file)
        return self._handles[(t, shard)]

    def get(self, key: str) -> list[torch.Tensor]:
        """Stored targets (h, w, C) of every teacher for one sample key, checksum-verified."""
        return [self.read(t, key) for t in range(len(self.caches))]

    def read(self, t: int, key: str) -> torch.Tensor:
        if key not in self.index[t]:
            raise InputError(f"sample key '{key}' is not in the target cache {self.caches[t].root}; it was extracted "
                             "from other data. Re-run the extraction or pass another cache_dir=.")
        shard, row = self.index[t][key]
        f, file = self.handle(t, shard)
        try:
            value = f.get_slice("targets")[row:row + 1][0]
            crc = int(f.get_slice("crc32")[row:row + 1][0])
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise InputError(f"corrupt target cache shard {file}: cannot read sample '{key}' (row {row}): {exc}. "
                             "Delete the shard and re-run the extraction.") from exc
        if row_crc(value) != crc:
            raise InputError(f"corrupt target cache shard {file}: sample '{key}' (row {row}) fails its crc32 "
                             "checksum. Delete the shard and re-run the extraction (it resumes).")
        return value


def check_cache_complete(c: TeacherCache) -> None:
    path = c.root / MANIFEST
    if not path.is_file():
        raise InputError(f"no target cache at {c.root}; run the extraction first (targets=cached extracts).")
    check_manifest(read_json(path, "the target-cache manifest"), c.manifest, c.root)
    missing = [c.shard_file(i).name for i in range(len(shard_ranges(c.num_samples, c.shard_size)))
               if not c.shard_file(i).is_file()]
    if missing:
        raise InputError(f"target cache {c.root} is incomplete: {len(missing)} shard(s) missing (first "
                         f"{missing[0]}). Re-run the extraction; it resumes.")


def index_keys(c: TeacherCache, keys: list[str]) -> dict[str, tuple[int, int]]:
    """key -> (shard, row) from the keys stored in the shards; every data key must be present in order."""
    index: dict[str, tuple[int, int]] = {}
    for i, r in enumerate(shard_ranges(c.num_samples, c.shard_size)):
        stored = read_shard_keys(c.shard_file(i))
        expected = keys[r.start:r.stop]
        if stored != expected:
            j = next((k for k, (a, b) in enumerate(zip(stored, expected)) if a != b), min(len(stored), len(expected)))
            got = stored[j] if j < len(stored) else "<end>"
            want = expected[j] if j < len(expected) else "<end>"
            raise InputError(f"corrupt target cache shard {c.shard_file(i)}: row {j} holds key '{got}' where the "
                             f"data source has '{want}'. Delete the shard and re-run the extraction.")
        index.update({k: (i, row) for row, k in enumerate(stored)})
    return index
