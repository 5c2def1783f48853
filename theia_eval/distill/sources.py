"""Image sources for distillation: image folders, webdataset tar shards and simulator frame sets.

Every source is an indexed, deterministic list of keyed samples. Images are squash-resized to one
square size (the student's input, as the reference pre-squashes ImageNet to 224 x 224); images smaller
than that size are refused unless upsampling is allowed. Extras (depth, segmentation) follow with
nearest-neighbour resampling.

`data=` forms: a path (kind detected: a frame set has frameset.json, a .tar file or a folder of .tar
files is webdataset shards, else a folder of images), `folder:PATH`, `tar:PATH`, `frames:PATH`, or
`frames:SUITE` (the frame set rendered by `theia-eval frames suite=SUITE`, under the data root).
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from theia_eval.distill.framesets import MANIFEST, FrameSetSource
from theia_eval.distill.image_source import (ImageSource, as_rgb, data_root, decode_image,  # noqa: F401
                                             nearest_resize, squash_image)
from theia_eval.errors import InputError, unknown_name

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TAR_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TAR_EXTRA_EXTS = {"depth.npy": "depth", "segmentation.npy": "segmentation", "seg.npy": "segmentation"}


class FolderSource(ImageSource):
    """Every jpg/jpeg/png under a folder (recursive), keyed by relative path without the suffix."""

    kind = "folder"

    def __init__(self, root: Path, image_size: int, allow_upsample: bool = False):
        super().__init__(root, image_size, allow_upsample)
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = files
        self.keys = [p.relative_to(self.root).with_suffix("").as_posix() for p in files]
        check_unique(self.keys, lambda i: str(self.files[i]))
        self.require_nonempty(f"images ({', '.join(IMAGE_SUFFIXES)}, searched recursively)")

    def read(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        path = self.files[index]
        return as_rgb(decode_image(path.read_bytes(), str(path)), str(path)), {}

    def content_id(self) -> str:
        h = hashlib.sha256()
        for p in self.files:
            st = p.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()


class TarSource(ImageSource):
    """webdataset shards: members `<key>.<ext>` grouped by key; images jpg/png/webp, extras .depth.npy etc."""

    kind = "tar"

    def __init__(self, root: Path, image_size: int, allow_upsample: bool = False):
        super().__init__(root, image_size, allow_upsample)
        self.shards = [self.root] if self.root.is_file() else sorted(self.root.glob("*.tar"))
        self.entries: dict[str, dict[str, tuple[Path, int, int]]] = {}
        for shard in self.shards:
            self.index_shard(shard)
        self.keys = sorted(k for k, e in self.entries.items() if any(x in e for x in TAR_IMAGE_EXTS))
        self.extras = tuple(sorted({TAR_EXTRA_EXTS[x] for k in self.keys for x in self.entries[k]
                                    if x in TAR_EXTRA_EXTS}))
        self.require_nonempty(f"image members ({', '.join(TAR_IMAGE_EXTS)}) in .tar shards")

    def index_shard(self, shard: Path) -> None:
        """Record (shard, data offset, size) of every member, refusing a key seen in another shard."""
        try:
            with tarfile.open(shard) as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    parent, _, base = m.name.rpartition("/")
                    stem, dot, ext = base.partition(".")
                    key = f"{parent}/{stem}" if parent else stem
                    entry = self.entries.setdefault(key, {})
                    if ext in entry and entry[ext][0] != shard:
                        raise InputError(f"sample key '{key}' appears in two shards ({entry[ext][0].name} and "
                                         f"{shard.name}); webdataset keys must be unique.")
                    entry[ext] = (shard, m.offset_data, m.size)
                check_tar_end(shard, tar.offset, max((m.offset_data + m.size for m in tar.getmembers()), default=0))
        except tarfile.TarError as exc:
            raise InputError(f"cannot read tar shard {shard} ({exc}); the file is truncated, corrupt or not a tar: copy "
                             "or download it again.") from exc

    def member_bytes(self, key: str, ext: str) -> bytes:
        shard, offset, size = self.entries[key][ext]
        with open(shard, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def read(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        key = self.keys[index]
        entry = self.entries[key]
        ext = next(x for x in TAR_IMAGE_EXTS if x in entry)
        where = f"'{key}.{ext}' in {entry[ext][0].name}"
        image = as_rgb(decode_image(self.member_bytes(key, ext), where), where)
        extras = {name: np.load(io.BytesIO(self.member_bytes(key, x))) for x, name in TAR_EXTRA_EXTS.items()
                  if x in entry}
        return image, extras

    def content_id(self) -> str:
        return ";".join(f"{s.name}:{s.stat().st_size}:{s.stat().st_mtime_ns}" for s in self.shards)


def check_tar_end(shard: Path, end: int, data_end: int) -> None:
    """A tar ends with an end-of-archive block of zeros after its last member; a shard cut short (a partial
    copy or download) lacks it, or lacks part of its last member: refused, never read as fewer images."""
    size = shard.stat().st_size
    with open(shard, "rb") as f:
        f.seek(end)
        tail = f.read(512)
    if data_end > size or len(tail) < 512 or tail.strip(b"\0"):
        raise InputError(f"tar shard {shard} is truncated ({size} bytes; its members run to byte {data_end}, and "
                         "the end-of-archive block is missing): copy or download it again.")


class ConcatSource(ImageSource):
    """Several sources one after another; keys must be unique across them."""

    kind = "concat"

    def __init__(self, parts: list[ImageSource]):
        super().__init__(Path("."), parts[0].image_size, parts[0].allow_upsample)
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.keys = [k for p in parts for k in p.keys]
        check_unique(self.keys, lambda i: self.part_of(i)[0].describe())
        self.extras = tuple(sorted(set(parts[0].extras).intersection(*(p.extras for p in parts[1:]))))

    def part_of(self, index: int) -> tuple[ImageSource, int]:
        j = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.parts[j], index - int(self.offsets[j])

    def read(self, index: int):
        part, i = self.part_of(index)
        return part.read(i)

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts)

    def content_id(self) -> str:
        return "|".join(p.fingerprint() for p in self.parts)


def check_unique(keys: list[str], where: Callable[[int], str]) -> None:
    seen: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k in seen:
            raise InputError(f"duplicate sample key '{k}' ({where(seen[k])} and {where(i)}); keys must be unique "
                             "(rename one of the files).")
        seen[k] = i


# --- opening a data= spec -------------------------------------------------------------------------
def frameset_source(root: Path, image_size: int, allow_upsample: bool) -> ImageSource:
    return FrameSetSource(root, image_size, allow_upsample)


SOURCE_KINDS: dict[str, Callable[[Path, int, bool], ImageSource]] = {
    "folder": FolderSource, "tar": TarSource, "frames": frameset_source}


def detect_kind(path: Path) -> str:
    """Which source kind a path holds."""
    if not path.exists():
        raise InputError(f"data path {path} does not exist. Pass a folder of images, .tar shards, a frame set "
                         "directory, or frames:SUITE (render one with `theia-eval frames suite=SUITE`).")
    if (path / MANIFEST).is_file():
        return "frames"
    if path.suffix == ".tar" or (path.is_dir() and any(path.glob("*.tar"))):
        return "tar"
    return "folder"


def frameset_dir(suite: str) -> Path:
    """Default location of the frame set of a suite (`theia-eval frames suite=SUITE` writes it)."""
    return data_root() / "frames" / suite


def resolve_spec(spec: str) -> tuple[str, Path]:
    """'frames:metaworld' / 'tar:PATH' / PATH -> (kind, path)."""
    scheme, sep, rest = spec.partition(":")
    if sep and scheme in SOURCE_KINDS:
        path = Path(rest).expanduser()
        if scheme == "frames" and "/" not in rest and not path.exists():
            path = frameset_dir(rest)
            if not path.exists():
                raise InputError(f"no frame set for suite '{rest}' at {path}. Render it with `theia-eval frames "
                                 f"suite={rest}` (or pass frames:PATH to an existing frame set).")
        return scheme, path
    if sep and len(scheme) > 1 and not Path(spec).exists():
        raise unknown_name("data source kind", scheme, SOURCE_KINDS)
    path = Path(spec).expanduser()
    return detect_kind(path), path


def open_source(spec: str | list[str], image_size: int, allow_upsample: bool = False) -> ImageSource:
    """Open one data spec or a list of them (concatenated)."""
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not specs:
        raise InputError("data= is empty; pass a folder of images, .tar shards, a frame set or frames:SUITE.")
    parts = []
    for s in specs:
        kind, path = resolve_spec(str(s))
        parts.append(SOURCE_KINDS[kind](path, image_size, allow_upsample))
    return parts[0] if len(parts) == 1 else ConcatSource(parts)
