"""Teacher decoders: a student's predicted teacher features (in the teacher's own scale) back to teacher outputs.

One decoder per teacher, chosen by what the teacher is (registry below), PCA for every other teacher:
  pca                 PCA(3) colouring of the tokens (the reference's DINOv2 visualisation): fitted on the first
                      batch of each media item (a whole video shares one basis), min-max scaled, nearest upsampling
  sim-depth           the predicted depth cells unfolded to a (grid*sub)^2 depth map in metres
  sim-segmentation    per-patch class frequencies upsampled (bilinear) then argmax: a label map
  efficientnet        PCA of the 7x7 map, plus the ImageNet top-k its own classifier (_fc) gives for the
                      predicted pooled features
  sam                 SAM's prompt encoder + mask decoder (transformers SamModel) on the predicted image
                      embeddings, prompted by a grid of points; masks kept by predicted IoU and stability score,
                      then box NMS, as SAM's automatic mask generator does
  depth-anything      Depth-Anything's own last head layers (ReLU -> conv3 -> activation) on the predicted head
                      features resized to the panel (nearest, as the reference decoder), min-max normalised
Hub decoders need their teacher's weights (decoder_weights={name or id: PATH}, else the HF cache); absent
weights raise WeightsNotFoundError naming the teacher and how to supply them.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from theia_eval.errors import InputError, WeightsNotFoundError
from theia_eval.settings import DecodeConfig, DecodeSamSection


@dataclass
class Panel:
    """One decoded picture (S, S, 3) uint8 with a title and optional caption lines."""

    title: str
    image: np.ndarray
    caption: tuple[str, ...] = ()


@dataclass(frozen=True)
class TeacherInfo:
    """What a decoder knows of its teacher: checkpoint id, registry name, grid and width."""

    id: str
    name: str
    grid: tuple[int, int]
    dim: int

_DECODE = DecodeConfig()  # the `decode` verb's defaults (theia_eval.settings)


@dataclass
class DecodeSettings:
    """Decoder options (configs/decode.yaml)."""

    size: int = 224
    top_k: int = _DECODE.top_k
    device: str = _DECODE.device
    decoder_weights: dict = field(default_factory=dict)
    sam: dict = field(default_factory=dict)

    def weights_for(self, teacher: TeacherInfo, entry: str | None) -> str | None:
        for key in (teacher.name, teacher.id, entry):
            if key is not None and key in self.decoder_weights:
                return str(self.decoder_weights[key])
        return None


class Decoder(abc.ABC):
    """Turns one teacher's predicted features (B, h, w, C) into one panel per image."""

    kind = "?"

    def __init__(self, teacher: TeacherInfo, settings: DecodeSettings):
        self.teacher, self.settings = teacher, settings

    def reset(self) -> None:  # noqa: B027  (an optional hook: most decoders keep no per-media state)
        """Forget per-media state (a new image or video starts)."""

    @abc.abstractmethod
    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        """features (B, h, w, C) in the teacher's scale; images (B, 3, S, S) uint8 as the student saw them."""

    def panels(self, features: torch.Tensor, images: torch.Tensor, truth: dict | None = None) -> list[list[Panel]]:
        """Per image the decoded panel, followed by a ground-truth panel where `truth` (extras such as
        depth / segmentation (B, S, S)) holds what this teacher stands for."""
        return [[p] for p in self.decode(features, images)]


# --- colours ---------------------------------------------------------------------------------------
def colormap(values: np.ndarray, name: str = "magma", lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(..., ) floats -> (..., 3) uint8 through a matplotlib colormap, scaled to [lo, hi] (default min/max)."""
    from matplotlib import colormaps

    lo = float(np.min(values)) if lo is None else lo
    hi = float(np.max(values)) if hi is None else hi
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return (colormaps[name](scaled)[..., :3] * 255).round().astype(np.uint8)


def upsample_nearest(maps: np.ndarray, size: int) -> np.ndarray:
    """(B, h, w, 3) -> (B, size, size, 3) by nearest-neighbour (each token a block of pixels)."""
    t = torch.from_numpy(np.ascontiguousarray(maps)).permute(0, 3, 1, 2).float()
    return F.interpolate(t, size=(size, size), mode="nearest").permute(0, 2, 3, 1).numpy()


# --- PCA -------------------------------------------------------------------------------------------
@dataclass
class PCABasis:
    """mean (C,), components (C, 3) and the min/max of the fitted projections (3,), for stable colours."""

    mean: torch.Tensor
    components: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor

    @classmethod
    def fit(cls, tokens: torch.Tensor) -> PCABasis:
        """PCA(3) of (N, C) tokens; each component's sign fixed so that its largest loading is positive."""
        x = tokens.double()
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        comps = vh[:3].T
        if comps.shape[1] < 3:
            comps = torch.cat([comps, torch.zeros(x.shape[1], 3 - comps.shape[1], dtype=x.dtype)], 1)
        signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
        comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
        proj = (x - mean) @ comps
        return cls(mean, comps, proj.amin(0), proj.amax(0))

    def colours(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, 3) in [0, 1]."""
        proj = (tokens.double() - self.mean) @ self.components
        return ((proj - self.lo) / (self.hi - self.lo).clamp_min(1e-12)).clamp(0, 1)


class PCADecoder(Decoder):
    """PCA(3) colouring of the predicted tokens."""

    kind = "pca"

    def __init__(self, teacher: TeacherInfo, settings: DecodeSettings):
        super().__init__(teacher, settings)
        self.basis: PCABasis | None = None

    def reset(self) -> None:
        self.basis = None

    def pca_images(self, features: torch.Tensor) -> np.ndarray:
        b, h, w, c = features.shape
        tokens = features.reshape(-1, c).float().cpu()
        if self.basis is None:
            self.basis = PCABasis.fit(tokens)
        rgb = self.basis.colours(tokens).reshape(b, h, w, 3).numpy()
        return (upsample_nearest(rgb, self.settings.size) * 255).round().astype(np.uint8)

    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        return [Panel(f"{self.teacher.name}: PCA", im) for im in self.pca_images(features)]


# --- simulator teachers ------------------------------------------------------------------------------
def sim_depth_map(features: torch.Tensor) -> torch.Tensor:
    """(B, g, g, sub*sub) depth cells in metres -> (B, g*sub, g*sub) depth map (sim_teachers' folding undone)."""
    sub = int(round(features.shape[-1] ** 0.5))
    if sub * sub != features.shape[-1]:
        raise InputError(f"sim-depth features have {features.shape[-1]} channels, not a square number of cells.")
    return F.pixel_shuffle(features.permute(0, 3, 1, 2).float(), sub)[:, 0].clamp_min(0.0)


class SimDepthDecoder(Decoder):
    """The predicted depth map, coloured on one range per media item."""

    kind = "sim-depth"

    def __init__(self, teacher: TeacherInfo, settings: DecodeSettings):
        super().__init__(teacher, settings)
        self.range: tuple[float, float] | None = None

    def reset(self) -> None:
        self.range = None

    def upsampled(self, depth: torch.Tensor) -> np.ndarray:
        return F.interpolate(depth[:, None], size=(self.settings.size,) * 2, mode="nearest")[:, 0].numpy()

    def image(self, depth: np.ndarray, title: str) -> Panel:
        lo, hi = self.range
        return Panel(title, colormap(depth, "magma_r", lo, hi), (f"{lo:.2f}-{hi:.2f} m (near = bright)",))

    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        up = self.upsampled(sim_depth_map(features.cpu()))
        if self.range is None:
            self.range = (float(np.percentile(up, 1)), float(np.percentile(up, 99)))
        return [self.image(d, f"{self.teacher.name}: depth") for d in up]

    def panels(self, features: torch.Tensor, images: torch.Tensor, truth: dict | None = None) -> list[list[Panel]]:
        decoded = self.decode(features, images)
        if not truth or "depth" not in truth:
            return [[p] for p in decoded]
        cells = sim_depth_truth(truth["depth"], features.shape[1], int(round(features.shape[-1] ** 0.5)))
        return [[p, self.image(d, "simulator depth")] for p, d in zip(decoded, self.upsampled(cells))]


SEGMENTATION_PALETTE = np.array([[0, 0, 0], [150, 150, 150], [240, 140, 40], [60, 130, 240], [200, 60, 200],
                                 [60, 200, 90], [230, 220, 60], [120, 60, 30]], dtype=np.uint8)


def sim_depth_truth(depth: torch.Tensor, grid: int, sub: int, max_depth: float = 5.0) -> torch.Tensor:
    """Exact depth (B, H, W) metres -> the (B, grid*sub, grid*sub) map the sim-depth teacher targets describe."""
    from theia_eval.distill.samples import Batch
    from theia_eval.distill.sim_teachers import SimDepthTeacher
    from theia_eval.distill.teachers import TeacherSpec

    teacher = SimDepthTeacher(TeacherSpec("sim-depth"), grid=grid, sub=sub, max_depth=max_depth)
    batch = Batch(keys=[""] * len(depth), images=torch.zeros(len(depth), 3, 1, 1, dtype=torch.uint8),
                  extras={"depth": torch.as_tensor(depth).float()})
    return sim_depth_map(teacher.compute(batch))


def sim_label_map(features: torch.Tensor, size: int) -> torch.Tensor:
    """(B, g, g, K) class frequencies -> (B, size, size) labels (bilinear upsampling of the soft map, argmax)."""
    soft = F.interpolate(features.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear",
                         align_corners=False)
    return soft.argmax(1)


def segmentation_classes(count: int) -> tuple[str, ...]:
    from theia_eval.distill.framesets import SEGMENTATION_CLASSES

    return SEGMENTATION_CLASSES if count == len(SEGMENTATION_CLASSES) else tuple(f"class {i}" for i in range(count))


def label_image(labels: np.ndarray) -> np.ndarray:
    return SEGMENTATION_PALETTE[np.asarray(labels) % len(SEGMENTATION_PALETTE)]


class SimSegmentationDecoder(Decoder):
    """The predicted segmentation as a label map (classes named in the caption)."""

    kind = "sim-segmentation"

    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        labels = sim_label_map(features.cpu(), self.settings.size).numpy()
        legend = legend_line(segmentation_classes(features.shape[-1]))
        return [Panel(f"{self.teacher.name}: labels", label_image(lab), (legend,)) for lab in labels]

    def panels(self, features: torch.Tensor, images: torch.Tensor, truth: dict | None = None) -> list[list[Panel]]:
        decoded = self.decode(features, images)
        if not truth or "segmentation" not in truth:
            return [[p] for p in decoded]
        seg = F.interpolate(torch.as_tensor(truth["segmentation"])[:, None].float(), size=(self.settings.size,) * 2,
                            mode="nearest")[:, 0].long().numpy()
        return [[p, Panel("simulator segmentation", label_image(t), p.caption)] for p, t in zip(decoded, seg)]


def legend_line(classes: tuple[str, ...]) -> str:
    names = ["black", "grey", "orange", "blue", "magenta", "green", "yellow", "brown"]
    return ", ".join(f"{c}={names[i % len(names)]}" for i, c in enumerate(classes))


# --- efficientnet-lite0: PCA + ImageNet top-k ----------------------------------------------------------
def imagenet_labels() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


class ImageNetTopKDecoder(PCADecoder):
    """PCA of the map plus the top-k ImageNet classes of the teacher's own classifier on the pooled features."""

    kind = "imagenet-top-k"

    def __init__(self, teacher: TeacherInfo, settings: DecodeSettings, entry: str):
        super().__init__(teacher, settings)
        from theia_eval.encoders import create_encoder

        encoder = create_encoder(entry, weights=settings.weights_for(teacher, entry))
        self.classifier = encoder.head.float().eval()
        self.labels = imagenet_labels()
        if self.classifier.out_features != len(self.labels):
            raise InputError(f"the classifier of {entry} has {self.classifier.out_features} classes, not ImageNet's "
                             f"{len(self.labels)}.")

    def top_k(self, features: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Per image the k best (label, probability) for the pooled features (B, h, w, C)."""
        with torch.no_grad():
            probs = self.classifier(features.float().cpu().mean(dim=(1, 2))).softmax(-1)
        p, idx = probs.topk(self.settings.top_k, dim=-1)
        return [[(self.labels[int(i)], float(q)) for q, i in zip(pr, ix)] for pr, ix in zip(p, idx)]

    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        tops = self.top_k(features)
        title = f"{self.teacher.name}: PCA + top-{self.settings.top_k}"
        return [Panel(title, im, tuple(f"{q:5.1%} {label}" for label, q in top))
                for im, top in zip(self.pca_images(features), tops)]


# --- hub teachers ----------------------------------------------------------------------------------
def hub_model(teacher: TeacherInfo, settings: DecodeSettings, entry: str, class_name: str, what: str):
    """A transformers model of a teacher's own weights (decoder_weights, else the HF cache), or a clear error."""
    import transformers

    from theia_eval.encoders import get_encoder_config
    from theia_eval.encoders.hf import quiet_transformers
    from theia_eval.encoders.weights import hf_snapshot

    config = get_encoder_config(entry)
    try:
        path = hf_snapshot(config, settings.weights_for(teacher, entry))
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(
            f"decoding teacher '{teacher.id}' needs {what} from its own weights ({entry}), which are not available: "
            f"{exc} Pass +decoder_weights.{entry}=PATH (a save_pretrained folder; DecodeSettings(decoder_weights="
            "{...}) in Python), leave the teacher out with teachers=[...], or set on_missing_weights=pca to show its "
            "PCA instead.") from exc
    with quiet_transformers():
        return getattr(transformers, class_name).from_pretrained(str(path)).eval().to(settings.device)


def sam_point_grid(per_side: int, side: float = 1024.0) -> torch.Tensor:
    """(n*n, 2) (x, y) prompt points at cell centres of SAM's side x side input frame."""
    centres = (torch.arange(per_side, dtype=torch.float32) + 0.5) / per_side * side
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) x0, y0, x1, y1 boxes (empty masks give zero boxes)."""
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[-2:]
    y0 = torch.where(rows.any(1), rows.float().argmax(1), 0)
    y1 = torch.where(rows.any(1), h - rows.flip(1).float().argmax(1), 0)
    x0 = torch.where(cols.any(1), cols.float().argmax(1), 0)
    x1 = torch.where(cols.any(1), w - cols.flip(1).float().argmax(1), 0)
    return torch.stack([x0, y0, x1, y1], 1).float()


@dataclass
class SamOptions(DecodeSamSection):
    """SAM's automatic mask generation options (configs/decode.yaml `sam:`; theia_eval.settings.DecodeSamSection)."""


class SamMaskDecoder(Decoder):
    """SAM's prompt encoder + mask decoder on predicted image embeddings, prompted by a point grid."""

    kind = "sam"

    def __init__(self, teacher: TeacherInfo, settings: DecodeSettings, entry: str):
        super().__init__(teacher, settings)
        self.options = SamOptions(**settings.sam)
        self.model = hub_model(teacher, settings, entry, "SamModel", "SAM's prompt encoder and mask decoder")
        self.model.vision_encoder = None  # not needed: the embeddings are predicted (frees most of the memory)

    @torch.no_grad()
    def masks(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's (C, 64, 64) embedding -> (N, S, S) bool masks and their predicted IoU, largest first."""
        from torchvision.ops import batched_nms

        o, size = self.options, self.settings.size
        points = sam_point_grid(o.points_per_side)
        emb = embedding[None].to(self.settings.device, torch.float32)
        kept_masks, kept_scores = [], []
        for i in range(0, len(points), o.points_per_batch):
            pts = points[i:i + o.points_per_batch].to(emb.device)
            out = self.model(image_embeddings=emb, input_points=pts[None, :, None, :],
                             input_labels=torch.ones(1, len(pts), 1, dtype=torch.long, device=emb.device),
                             multimask_output=True)
            logits = out.pred_masks[0].flatten(0, 1).float()  # (P*3, 256, 256)
            logits = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
            iou = out.iou_scores[0].flatten().float()
            stable = ((logits > o.stability_offset).sum((1, 2)).float()
                      / (logits > -o.stability_offset).sum((1, 2)).float().clamp_min(1.0))
            masks = logits > 0
            keep = (iou > o.pred_iou_thresh) & (stable > o.stability_score_thresh) & (masks.sum((1, 2)) >= o.min_area)
            kept_masks.append(masks[keep].cpu())
            kept_scores.append(iou[keep].cpu())
        masks, scores = torch.cat(kept_masks), torch.cat(kept_scores)
        if len(masks):
            keep = batched_nms(mask_boxes(masks), scores, torch.zeros(len(masks), dtype=torch.long), o.box_nms_thresh)
            masks, scores = masks[keep], scores[keep]
            order = masks.sum((1, 2)).argsort(descending=True)
            masks, scores = masks[order], scores[order]
        return masks, scores

    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        panels = []
        rng = np.random.default_rng(0)
        for feat, image in zip(features, images):
            masks, _ = self.masks(feat.permute(2, 0, 1))
            canvas = image.permute(1, 2, 0).cpu().numpy().astype(np.float32) * 0.35
            for m in masks.numpy():
                canvas[m] = 0.4 * canvas[m] + 0.6 * rng.integers(40, 256, size=3)
            panels.append(Panel(f"{self.teacher.name}: SAM masks", canvas.round().clip(0, 255).astype(np.uint8),
                                (f"{len(masks)} masks",)))
        return panels


def depth_anything_depth(features: torch.Tensor, head: torch.nn.Module, size: int) -> torch.Tensor:
    """(B, h, w, C) head features -> (B, size, size) relative depth in [0, 1] through the head's last layers."""
    x = F.interpolate(features.permute(0, 3, 1, 2).float(), size=(size, size))  # nearest, as the reference
    depth = head.activation2(head.conv3(head.activation1(x)))[:, 0] * float(getattr(head, "max_depth", 1.0) or 1.0)
    lo = depth.flatten(1).amin(1).view(-1, 1, 1)
    hi = depth.flatten(1).amax(1).view(-1, 1, 1)
    return (depth - lo) / (hi - lo).clamp_min(1e-12)


class DepthAnythingDecoder(Decoder):
    """Depth-Anything's own head (ReLU -> conv3 -> activation) on the predicted head features."""

    kind = "depth-anything"

    def __init__(self, teacher: TeacherInfo, settings: DecodeSettings, entry: str):
        super().__init__(teacher, settings)
        model = hub_model(teacher, settings, entry, "DepthAnythingForDepthEstimation", "Depth-Anything's depth head")
        self.head = model.head

    @torch.no_grad()
    def decode(self, features: torch.Tensor, images: torch.Tensor) -> list[Panel]:
        depth = depth_anything_depth(features.to(self.settings.device), self.head, self.settings.size).cpu().numpy()
        return [Panel(f"{self.teacher.name}: depth", colormap(d, "magma", 0.0, 1.0), ("relative (near = bright)",))
                for d in depth]


# --- which decoder for which teacher --------------------------------------------------------------
DecoderFactory = Callable[[TeacherInfo, DecodeSettings, str], Decoder]
TEACHER_DECODERS: dict[str, Callable[[TeacherInfo, DecodeSettings], Decoder]] = {
    "sim-depth": SimDepthDecoder, "sim-segmentation": SimSegmentationDecoder}
FAMILY_DECODERS: dict[str, DecoderFactory] = {
    "efficientnet": ImageNetTopKDecoder, "sam": SamMaskDecoder, "depth-anything": DepthAnythingDecoder}


def registry_entry(teacher: TeacherInfo) -> str | None:
    """The encoder registry entry a teacher is: by registry name, else by hub id."""
    from theia_eval.encoders import get_encoder_config, list_encoders

    names = list_encoders()
    if teacher.name in names:
        return teacher.name
    matches = [n for n in names if get_encoder_config(n).hub_id == teacher.id]
    return matches[0] if matches else None


def decoder_for(teacher: TeacherInfo, settings: DecodeSettings, on_missing_weights: str = "error") -> Decoder:
    """The decoder of a teacher (PCA when none is registered for it); see the module docstring."""
    if on_missing_weights not in ("error", "pca"):
        raise InputError(f"on_missing_weights={on_missing_weights!r}; use error or pca.")
    if teacher.name in TEACHER_DECODERS or teacher.id in TEACHER_DECODERS:
        return TEACHER_DECODERS[teacher.name if teacher.name in TEACHER_DECODERS else teacher.id](teacher, settings)
    entry = registry_entry(teacher)
    if entry is None:
        return PCADecoder(teacher, settings)
    from theia_eval.encoders import get_encoder_config

    factory = FAMILY_DECODERS.get(get_encoder_config(entry).family)
    if factory is None:
        return PCADecoder(teacher, settings)
    try:
        return factory(teacher, settings, entry)
    except WeightsNotFoundError:
        if on_missing_weights == "pca":
            return PCADecoder(teacher, settings)
        raise
