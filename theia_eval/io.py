"""Small file helpers shared by every verb: atomic writes, JSON, leftovers of killed jobs, image files."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from theia_eval.errors import InputError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file via a temp file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file; a damaged one (e.g. cut short by a killed job) is an InputError that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc}): it was damaged, e.g. by a killed job or an "
                         "edit. Delete it (it is written again) or restore it, then run again.") from exc


@contextlib.contextmanager
def try_lock(path: str | Path) -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created if absent) when no other process holds it; yields whether this
    process got it. Released at exit, and by the OS when the process dies (kill -9 included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- leftovers of killed jobs ----------------------------------------------------------------------
# temporary names used by atomic writers here: .<name>.<pid>.tmp, .<name>.<pid>.<hex8>.tmp, .<name>.tmp-<pid>
# (files), and `temp_sibling`'s .<name>.tmp-<host>-<pid>-<hex8> / .<name>.old-<host>-<pid>-<hex8> (files or
# folders: frame sets, target-cache shards, video shards, exports), whose host tag keeps a run on one machine
# from removing what a live process of another machine writes into a shared folder.
_TEMP_NAME = re.compile(r"^\..+?(?:\.(?P<a>\d+)(?:\.[0-9a-f]{8})?\.tmp|\.tmp-(?P<b>\d+)"
                        r"|\.(?:tmp|old)-(?P<host>[0-9a-f]{8})-(?P<c>\d+)-[0-9a-f]{8})$")
HOST_TAG = f"{zlib.crc32(socket.gethostname().encode()):08x}"


def temp_sibling(path: str | Path, kind: str = "tmp") -> Path:
    """A temporary name beside `path` for a file or folder written then renamed into place (kind "tmp"), or for
    the previous version moved aside while it is replaced ("old"). What a killed process leaves under such a
    name is removed by the next `remove_stale_temp_files` of that folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders that killed processes of this machine left in `folder` (not
    recursive); those of live processes and of other machines stay. Returns what was removed."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        m = _TEMP_NAME.match(p.name)
        if m is None or (m.group("host") is not None and m.group("host") != HOST_TAG):
            continue
        if pid_alive(int(m.group("a") or m.group("b") or m.group("c"))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


# --- image files -----------------------------------------------------------------------------------
def image_to_rgb8(image, where: str):
    """A PIL image as (H, W, 3) uint8: 16-bit images are scaled (65535 -> 255), not wrapped or clipped;
    float or other high-bit-depth images are refused."""
    import numpy as np

    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        raw = np.asarray(image)
        if raw.dtype.kind not in "iu" or (raw.size and (raw.min() < 0 or raw.max() > 65535)):
            raise InputError(f"{where} is a {mode} image with values outside 0..65535; convert it to 8-bit RGB.")
        grey = ((raw.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    if mode in ("F",) or mode.startswith("I;") or mode.startswith("BGR"):
        raise InputError(f"{where} is a {mode} image (floating point or unusual bit depth); convert it to 8-bit "
                         "RGB (e.g. PNG or JPEG).")
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def decode_image(data: bytes, where: str):
    """Encoded image bytes (png, jpg, webp, ...) -> (H, W, 3) uint8; InputError when they are not an image."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return image_to_rgb8(im, where)
    except UnidentifiedImageError as exc:
        raise InputError(f"{where} is not an image file (no known image format): remove it from the images or "
                         "replace it with a png/jpg.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot decode image {where} ({exc}); the file is corrupt or cut short: replace it or "
                         "remove it from the images.") from exc


def read_image(path: str | Path):
    """An image file as (H, W, 3) uint8 (see `image_to_rgb8`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}. Pass an existing image file (png, jpg, ...).")
    return decode_image(path.read_bytes(), str(path))


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file with a reproducible header: the library writes `__metadata__` from a hash map,
    so with two or more keys the same tensors give different bytes (and a different weights hash) from one
    process to the next. The header is rewritten with its metadata keys sorted (same length, same tensors)."""
    import struct

    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    if not metadata or len(metadata) < 2:
        return
    with open(path, "r+b") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(size)
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:
            raise RuntimeError(f"{path}: the sorted safetensors header is longer than the written one "
                               f"({len(text)} > {size} bytes)")
        fh.seek(8)
        fh.write(text + b" " * (size - len(text)))
