"""Headless MuJoCo frame renderer shared by every suite: presets, resolution/crop, upright cameras.

A `FrameRenderer` owns one `mujoco.Renderer` (and so one EGL/OSMesa context). The context is created
lazily on the first `render()` call, so a renderer built in a parent process is never used across a
fork: vector workers build their own environments, and with them their own contexts.

Presets are data (`RenderPreset`, registered by name):
- `full`: the model's own lighting, shadows, reflections and multisampling (upstream look).
- `fast`: shadows, reflections and anti-aliasing off (5-8x faster on llvmpipe, see
  shared/spec/environment.md). Images differ from `full`, so a preset belongs to one experiment:
  demos and evaluation must use the same one (`check_render_match`).

Orientation: every image comes out upright. A camera whose image "up" axis points below the
horizon in the model's reference pose (Meta-World's corner cameras) is rotated 180 degrees
(img[::-1, ::-1]); the decision is made once per camera from the reference pose, never per frame.
"""
from __future__ import annotations

import sys

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from theia_eval.errors import InputError, unknown_name
from theia_eval.registry import Registry


@dataclass(frozen=True)
class RenderPreset:
    """Scene settings of one named render preset."""

    name: str
    shadows: bool
    reflections: bool
    multisamples: int | None  # None keeps the model's own vis.quality.offsamples
    description: str = ""
    renderable: bool = True  # False: a label for imported frames from another renderer


PRESETS: Registry[RenderPreset] = Registry("render preset")


def register_preset(preset: RenderPreset) -> RenderPreset:
    """Add a preset to the registry (name must be new)."""
    return PRESETS.add(preset.name, preset)


def get_preset(name: str) -> RenderPreset:
    """Look up a preset by name, suggesting close names when unknown."""
    return PRESETS.get_entry(name)


register_preset(RenderPreset("full", shadows=True, reflections=True, multisamples=None,
                             description="upstream lighting: shadows, reflections, anti-aliasing"))
register_preset(RenderPreset("fast", shadows=False, reflections=False, multisamples=0,
                             description="no shadows, reflections or anti-aliasing (5-8x faster)"))
register_preset(RenderPreset("cortexbench-mujoco-py", shadows=True, reflections=True,
                             multisamples=None, renderable=False,
                             description="frames imported from the original CortexBench pickles "
                                         "(mujoco-py, MuJoCo 2.0); cannot be rendered here"))


@dataclass(frozen=True)
class RenderSpec:
    """What a frame looks like: preset, square render resolution, optional center crop."""

    preset: str = "fast"
    resolution: int = 256
    crop: int | None = 224

    def __post_init__(self) -> None:
        get_preset(self.preset)
        if int(self.resolution) <= 0:
            raise InputError(f"resolution must be a positive pixel count, got {self.resolution}")
        if self.crop is not None and not 0 < int(self.crop) <= int(self.resolution):
            raise InputError(f"crop={self.crop} must be in 1..resolution ({self.resolution}), "
                             "or null for no crop")

    @property
    def size(self) -> int:
        """Side of the returned (square) image."""
        return int(self.crop if self.crop is not None else self.resolution)

    def as_dict(self) -> dict:
        return asdict(self)


def check_render_match(found: RenderSpec, wanted: RenderSpec, what: str, force: bool = False) -> None:
    """Refuse to mix render settings (preset/resolution/crop) unless forced."""
    if force or found == wanted:
        return
    raise InputError(
        f"{what} was rendered with preset={found.preset} resolution={found.resolution} "
        f"crop={found.crop}, but preset={wanted.preset} resolution={wanted.resolution} "
        f"crop={wanted.crop} was requested. Images from different render settings are not "
        "comparable: re-collect the demos with the requested settings, request the demos' "
        "settings, or pass force=true to mix them anyway.")


@dataclass(frozen=True)
class CameraSpec:
    """A camera added to a model before compiling (e.g. CortexBench's top_cap2)."""

    name: str
    pos: tuple[float, float, float]
    target_body: str | None = None  # mode targetbody: looks at this body's origin
    quat: tuple[float, float, float, float] | None = None  # fixed mode orientation (w, x, y, z)
    fovy: float = 45.0


def add_cameras(spec, cameras: Sequence[CameraSpec]) -> None:
    """Add cameras to the worldbody of a `mujoco.MjSpec` (before `spec.compile()`)."""
    import mujoco

    for cam in cameras:
        added = spec.worldbody.add_camera()
        added.name = cam.name
        added.pos = list(cam.pos)
        added.fovy = cam.fovy
        if cam.target_body is not None:
            added.mode = mujoco.mjtCamLight.mjCAMLIGHT_TARGETBODY
            added.targetbody = cam.target_body
        elif cam.quat is not None:
            added.quat = list(cam.quat)


def camera_names(model) -> list[str]:
    """Names of a model's cameras in id order."""
    return [model.camera(i).name for i in range(model.ncam)]


def upright_flips(model) -> np.ndarray:
    """Per camera: True when its image must be rotated 180 degrees to be upright."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    up_axis = data.cam_xmat.reshape(-1, 3, 3)[:, :, 1]  # camera y axis (image up) in world frame
    return up_axis[:, 2] < 0.0


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Center crop an (H, W, C) image to (size, size, C)."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


@dataclass
class FrameRenderer:
    """Renders upright, cropped uint8 RGB frames of a MuJoCo model from named cameras."""

    model: object
    spec: RenderSpec = field(default_factory=RenderSpec)

    def __post_init__(self) -> None:
        renderable_preset(self.spec)
        self.cameras = camera_names(self.model)
        self._flips = upright_flips(self.model)
        self._renderer = None

    def camera_id(self, name: str) -> int:
        """Id of a named camera; unknown names list the model's cameras."""
        if name not in self.cameras:
            raise unknown_name("camera", name, self.cameras)
        return self.cameras.index(name)

    def needs_flip(self, name: str) -> bool:
        return bool(self._flips[self.camera_id(name)])

    def _context(self):
        """The mujoco.Renderer, created on first use (inside the process that renders)."""
        if self._renderer is None:
            self._renderer = make_mujoco_renderer(self.model, self.spec)
        return self._renderer

    def render(self, data, camera: str) -> np.ndarray:
        """One frame (size, size, 3) uint8 of `data` seen from `camera`."""
        cam_id = self.camera_id(camera)
        renderer = self._context()
        renderer.update_scene(data, camera=cam_id)
        image = renderer.render()
        if self._flips[cam_id]:
            image = image[::-1, ::-1]
        if self.spec.crop is not None and self.spec.crop != self.spec.resolution:
            image = center_crop(image, self.spec.crop)
        return np.ascontiguousarray(image)

    def close(self) -> None:
        """Free the GL context (do it explicitly: EGL complains at interpreter exit otherwise)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def renderable_preset(spec: RenderSpec) -> RenderPreset:
    """The spec's preset, refusing labels of imported frames that this renderer cannot produce."""
    preset = get_preset(spec.preset)
    if not preset.renderable:
        usable = ", ".join(n for n, p in PRESETS.items() if p.renderable)
        raise InputError(f"render preset '{preset.name}' labels imported frames and cannot be "
                         f"rendered here; use one of: {usable}")
    return preset


def preload_torchvision() -> None:
    """Import torchvision before the first GL context of the main process.

    Importing torchvision after an EGL context exists segfaults the process (torch 2.14.1 /
    torchvision 0.29.1 with Mesa EGL here). Processes that render and later encode (the CLI,
    tests, notebooks) therefore load it first; simulator worker processes never import torch.
    """
    import multiprocessing

    if multiprocessing.parent_process() is None and "torchvision" not in sys.modules:
        import torchvision  # noqa: F401


def make_mujoco_renderer(model, spec: RenderSpec):
    """A `mujoco.Renderer` with the preset applied (multisampling is fixed at context creation)."""
    import mujoco

    preload_torchvision()

    preset = renderable_preset(spec)
    if preset.multisamples is not None:
        model.vis.quality.offsamples = preset.multisamples
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, spec.resolution)
    model.vis.global_.offheight = max(model.vis.global_.offheight, spec.resolution)
    renderer = mujoco.Renderer(model, height=spec.resolution, width=spec.resolution)
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = preset.shadows
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = preset.reflections
    return renderer
