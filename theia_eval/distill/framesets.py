"""Simulator frame sets on disk: HDF5 shards of keyed RGB frames with exact depth and segmentation.

Layout of a frame set directory:
  frameset.json          the manifest: suite, tasks, cameras, resolution, render preset, class list,
                         shard list with counts, a render id (changes on every render)
  frames-00000.h5 ...    datasets  keys (N,) str, rgb (N,H,W,3) uint8, depth (N,H,W) float16 metres,
                         segmentation (N,H,W) uint8 class ids; chunked per frame, lzf-compressed
Segmentation class ids (SEGMENTATION_CLASSES), from MuJoCo's per-pixel geom ids:
  0 background  no geometry under the pixel (MuJoCo returns id -1)
  1 static      geoms of bodies welded to the world (table, floor, walls, fixed fixtures)
  2 robot       geoms of every body in a kinematic tree (child of the world) that holds an actuated joint,
                the robot's fixed pedestal included
  3 object      every other geom: the task's movable objects and articulated parts (drawers, doors, buttons)
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from theia_eval.distill.image_source import ImageSource
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, remove_stale_temp_files, temp_sibling

MANIFEST = "frameset.json"
FORMAT = "theia-eval-frames/1"
SEGMENTATION_CLASSES: tuple[str, ...] = ("background", "static", "robot", "object")
EXTRAS = ("depth", "segmentation")


def shard_name(index: int) -> str:
    return f"frames-{index:05d}.h5"


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise InputError(f"{root} is not a frame set (no {MANIFEST}); render one with `theia-eval frames`.")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); re-render the frame set with `theia-eval frames`.") from exc
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}; re-render it.")
    return manifest


class FrameSetSource(ImageSource):
    """A frame set as an image source whose samples carry depth and segmentation."""

    kind = "frames"

    def __init__(self, root: Path, image_size: int, allow_upsample: bool = False):
        super().__init__(root, image_size, allow_upsample)
        self.manifest = read_manifest(self.root)
        self.extras = tuple(self.manifest.get("extras", EXTRAS))
        self.rows: list[tuple[int, int]] = []
        for s, shard in enumerate(self.manifest["shards"]):
            keys = self.shard_keys(s, shard)
            self.keys.extend(keys)
            self.rows.extend((s, r) for r in range(len(keys)))
        self._files: dict[int, object] = {}
        self._pid = os.getpid()
        self.require_nonempty("frames")

    def shard_keys(self, index: int, shard: dict) -> list[str]:
        import h5py

        path = self.root / shard["file"]
        try:
            with h5py.File(path, "r") as f:
                keys = [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][()]]
        except (OSError, KeyError) as exc:
            raise InputError(f"frame shard {path} is missing or unreadable ({exc}); re-render the frame set.") from exc
        if len(keys) != shard["count"]:
            raise InputError(f"frame shard {path} holds {len(keys)} frames but {MANIFEST} says {shard['count']}; "
                             "the frame set is incomplete: re-render it.")
        return keys

    def handle(self, shard: int):
        """The open HDF5 file of a shard (re-opened in each DataLoader worker process)."""
        import h5py

        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        if shard not in self._files:
            self._files[shard] = h5py.File(self.root / self.manifest["shards"][shard]["file"], "r")
        return self._files[shard]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    def read(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        shard, row = self.rows[index]
        f = self.handle(shard)
        extras = {"depth": f["depth"][row].astype(np.float32), "segmentation": f["segmentation"][row]}
        return f["rgb"][row], {k: v for k, v in extras.items() if k in self.extras}

    def content_id(self) -> str:
        return str(self.manifest.get("id", ""))

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.get("classes", SEGMENTATION_CLASSES))


class FrameSetWriter:
    """Writes a frame set into a temp dir, shard by shard, and swaps it into place on `close`."""

    def __init__(self, root: str | Path, shard_size: int = 512):
        self.root = Path(root).expanduser()
        remove_stale_temp_files(self.root.parent)  # a killed render's partial frame set
        self.tmp = temp_sibling(self.root)
        self.tmp.mkdir(parents=True)
        self.shard_size = int(shard_size)
        self.buffer: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self.shards: list[dict] = []
        self.resolution: tuple[int, int] | None = None

    def add(self, key: str, rgb: np.ndarray, depth: np.ndarray, segmentation: np.ndarray) -> None:
        """Queue one frame: rgb (H,W,3) uint8, depth (H,W) metres, segmentation (H,W) class ids."""
        hw = rgb.shape[:2]
        if self.resolution is None:
            self.resolution = hw
        if hw != self.resolution or depth.shape != hw or segmentation.shape != hw:
            raise InputError(f"frame '{key}': rgb {rgb.shape}, depth {depth.shape} and segmentation "
                             f"{segmentation.shape} must share one size {self.resolution}.")
        self.buffer.append((key, rgb.astype(np.uint8), depth.astype(np.float16), segmentation.astype(np.uint8)))
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        import h5py

        if not self.buffer:
            return
        name = shard_name(len(self.shards))
        keys, rgb, depth, seg = zip(*self.buffer)
        h, w = self.resolution
        with h5py.File(self.tmp / name, "w") as f:
            f.create_dataset("keys", data=np.array(keys, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("rgb", data=np.stack(rgb), chunks=(1, h, w, 3), compression="lzf")
            f.create_dataset("depth", data=np.stack(depth), chunks=(1, h, w), compression="lzf")
            f.create_dataset("segmentation", data=np.stack(seg), chunks=(1, h, w), compression="lzf")
        self.shards.append({"file": name, "count": len(keys)})
        self.buffer = []

    def close(self, meta: dict) -> Path:
        """Write the last shard and the manifest, then replace any frame set at `root` with this one."""
        from theia_eval.encoders.theia_format import replace_dir

        self.flush()
        if not self.shards:
            raise InputError("no frames were rendered; raise num_frames.")
        manifest = {"format": FORMAT, "id": uuid.uuid4().hex, "classes": list(SEGMENTATION_CLASSES),
                    "extras": list(EXTRAS), "resolution": list(self.resolution), "depth_units": "metres",
                    "num_frames": sum(s["count"] for s in self.shards), "shards": self.shards, **meta}
        atomic_write_json(self.tmp / MANIFEST, manifest)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(self.tmp, self.root)
        return self.root

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
