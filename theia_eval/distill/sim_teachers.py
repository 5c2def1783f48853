"""Simulator teachers: exact geometric targets read from channels stored with each rendered frame.

They stand in for Depth-Anything and SAM when no foundation-model weights are available offline:
privileged, noise-free targets (MuJoCo renders them exactly) that push the student towards the same
geometry and object layout those teachers encode. They are not image-to-feature networks: they read the
`depth` and `segmentation` arrays a frame set stores with every frame (see framesets.py), so they work
only on sources that carry them.

sim-depth         metric depth (metres, clipped to max_depth) average-pooled to (grid*sub)^2 cells and
                  folded so that each of the grid x grid patches holds its sub x sub cell depths as
                  channels: targets (B, grid, grid, sub*sub). Defaults grid=16, sub=4 (a 64 x 64 depth map).
sim-segmentation  per-patch class frequencies of the segmentation classes (framesets.SEGMENTATION_CLASSES):
                  targets (B, grid, grid, num_classes), each patch's channels summing to 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from theia_eval.distill.framesets import SEGMENTATION_CLASSES
from theia_eval.distill.samples import Batch
from theia_eval.distill.teacher_base import Teacher, TeacherSpec, register_teacher
from theia_eval.errors import InputError


class SimDepthTeacher(Teacher):
    """Pooled exact depth, sub x sub cells per patch as channels."""

    def __init__(self, spec: TeacherSpec, grid: int = 16, sub: int = 4, max_depth: float = 5.0):
        super().__init__(spec, spec.id or spec.name, (grid, grid), sub * sub, requires=("depth",))
        self.sub, self.max_depth = int(sub), float(max_depth)

    def compute(self, batch: Batch) -> torch.Tensor:
        depth = batch.extras["depth"].float().clamp(0.0, self.max_depth).nan_to_num(self.max_depth)
        cells = F.adaptive_avg_pool2d(depth[:, None], (self.grid[0] * self.sub, self.grid[1] * self.sub))
        return F.pixel_unshuffle(cells, self.sub).permute(0, 2, 3, 1)


class SimSegmentationTeacher(Teacher):
    """Per-patch frequencies of each segmentation class."""

    def __init__(self, spec: TeacherSpec, grid: int = 16, num_classes: int = len(SEGMENTATION_CLASSES)):
        super().__init__(spec, spec.id or spec.name, (grid, grid), num_classes, requires=("segmentation",))

    def compute(self, batch: Batch) -> torch.Tensor:
        seg = batch.extras["segmentation"].long()
        if seg.numel() and (seg.min() < 0 or seg.max() >= self.dim):
            raise InputError(f"segmentation class ids must lie in [0, {self.dim}), got [{int(seg.min())}, "
                             f"{int(seg.max())}]; the frame set uses another class list than {SEGMENTATION_CLASSES}.")
        onehot = F.one_hot(seg, self.dim).permute(0, 3, 1, 2).float()
        return F.adaptive_avg_pool2d(onehot, self.grid).permute(0, 2, 3, 1)


@register_teacher("sim-depth")
def build_sim_depth(spec: TeacherSpec, device: torch.device, dtype: str) -> Teacher:
    return SimDepthTeacher(spec, **spec.kwargs)


@register_teacher("sim-segmentation")
def build_sim_segmentation(spec: TeacherSpec, device: torch.device, dtype: str) -> Teacher:
    return SimSegmentationTeacher(spec, **spec.kwargs)
