"""What flows through distillation: keyed images that may carry privileged extra channels.

A `Sample` is one image (H, W, 3) uint8 with its key and optional extras stored with it (a frame set
stores `depth` (H, W) float metres and `segmentation` (H, W) small class ids). A `Batch` is the
collated, tensor form that teachers and the student consume.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

EXTRA_DTYPES: dict[str, torch.dtype] = {"depth": torch.float32, "segmentation": torch.int64}


@dataclass
class Sample:
    """One keyed image (H, W, 3) uint8 and its extras (arrays of shape (H, W))."""

    key: str
    image: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Batch:
    """Keys, images (B, 3, H, W) uint8 and extras {name: (B, H, W)} as tensors."""

    keys: list[str]
    images: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        return Batch(self.keys, self.images.to(device, non_blocking=non_blocking),
                     {k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()})

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True) so host-to-GPU copies can overlap compute."""
        return Batch(self.keys, self.images.pin_memory(), {k: v.pin_memory() for k, v in self.extras.items()})

    def select(self, index: slice) -> Batch:
        return Batch(self.keys[index], self.images[index], {k: v[index] for k, v in self.extras.items()})


def extra_tensor(name: str, arrays: list[np.ndarray]) -> torch.Tensor:
    """Stack one extra channel of several samples into a tensor of its canonical dtype."""
    dtype = EXTRA_DTYPES.get(name, torch.float32)
    return torch.from_numpy(np.stack(arrays)).to(dtype)


def collate_samples(samples: list[Sample]) -> Batch:
    """Stack samples into a Batch; extras present in every sample are kept."""
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()
    common = set(samples[0].extras).intersection(*(s.extras for s in samples[1:]))
    extras = {name: extra_tensor(name, [s.extras[name] for s in samples]) for name in sorted(common)}
    return Batch([s.key for s in samples], images, extras)
