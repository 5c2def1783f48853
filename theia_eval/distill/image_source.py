"""The base of every distillation image source: an indexed list of keyed images squash-resized to one square
size (extras follow with nearest-neighbour resampling), and where frame sets and target caches go by default."""
from __future__ import annotations

import abc
import hashlib
import os
from pathlib import Path

import numpy as np

from theia_eval.distill.samples import Sample
from theia_eval.errors import InputError


def data_root() -> Path:
    """Where frame sets and target caches go by default: $THEIA_EVAL_DATA or ~/.cache/theia_eval."""
    return Path(os.environ.get("THEIA_EVAL_DATA", Path.home() / ".cache" / "theia_eval")).expanduser()


# --- resizing -------------------------------------------------------------------------------------
def squash_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 to exactly (size, size) with antialiased bilinear filtering."""
    if image.shape[:2] == (size, size):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, reducing_gap=None))


def nearest_resize(array: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a (H, W) array to (size, size) (pixel centres, no new values)."""
    h, w = array.shape[:2]
    if (h, w) == (size, size):
        return array
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(np.int64)
    return array[rows][:, cols]


def as_rgb(image: np.ndarray, where: str) -> np.ndarray:
    """(H, W) grey or (H, W, 3|4) -> (H, W, 3) uint8."""
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise InputError(f"{where}: expected an RGB image, got an array of shape {image.shape}.")
    if image.dtype != np.uint8:
        raise InputError(f"{where}: expected 8-bit pixels, got dtype {image.dtype}; convert the image to 8-bit RGB.")
    return np.ascontiguousarray(image[..., :3])


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded jpg/png/webp bytes -> (H, W, 3) uint8 (16-bit images scaled to 8 bits, not clipped)."""
    from theia_eval.io import decode_image as decode

    return decode(data, where)


# --- sources --------------------------------------------------------------------------------------
class ImageSource(abc.ABC):
    """A deterministic, indexed list of keyed images at one square size."""

    kind = "?"

    def __init__(self, root: Path, image_size: int, allow_upsample: bool = False):
        self.root = Path(root)
        self.image_size = int(image_size)
        self.allow_upsample = bool(allow_upsample)
        self.keys: list[str] = []
        self.extras: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)

    @abc.abstractmethod
    def read(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The image (H, W, 3) uint8 and extras at their stored size."""

    @abc.abstractmethod
    def content_id(self) -> str:
        """A string that changes when the stored content changes (files, sizes, times, render ids)."""

    def describe(self) -> str:
        return f"{self.kind}:{self.root} ({len(self)} images)"

    def load(self, index: int) -> Sample:
        """Sample `index` resized to image_size x image_size."""
        image, extras = self.read(index)
        key = self.keys[index]
        self.check_size(image.shape[:2], key)
        return Sample(key, squash_image(image, self.image_size),
                      {k: nearest_resize(v, self.image_size) for k, v in extras.items()})

    def check_size(self, hw: tuple[int, int], key: str) -> None:
        if min(hw) < self.image_size and not self.allow_upsample:
            raise InputError(
                f"image '{key}' in {self.describe()} is {hw[0]}x{hw[1]} px, smaller than the student input "
                f"{self.image_size}x{self.image_size}: the student is too large for these images. Use a smaller "
                f"student input (image_size=...), render/collect larger images, or pass allow_upsample=true.")

    def fingerprint(self) -> str:
        """sha256 over the keys in order, the image size and the content id: names a target cache (memoised)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = self.compute_fingerprint()
        return self._fingerprint

    def compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.kind}|{self.image_size}|{self.content_id()}|".encode())
        for key in self.keys:
            h.update(key.encode() + b"\0")
        return h.hexdigest()

    def require_nonempty(self, looked_for: str) -> None:
        if not self.keys:
            raise InputError(f"empty data source {self.root}: no {looked_for} found. Point data= at a folder of "
                             "images, webdataset .tar shards, or a frame set from `theia-eval frames`.")
