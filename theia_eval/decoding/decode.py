"""Decode a student's teacher predictions for images, videos, folders and frame sets into panels.

    theia-eval decode model=theia-offline media=frame.png out=decoded/

For each input: a PNG row (the input as the student sees it, squashed to its input size, then one panel per
teacher; for frame sets also the simulator's exact depth / segmentation), and for a video an mp4 of such rows
(plus its first row as PNG). Frame sets (frames:SUITE|PATH, or any data= source with depth/segmentation
extras) also get fidelity.json: how close decoded depth and segmentation are to the simulator (fidelity.py).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from theia_eval.decoding.decoders import Decoder, DecodeSettings, Panel, TeacherInfo, decoder_for
from theia_eval.decoding.fidelity import Fidelity
from theia_eval.decoding.panels import Mp4Writer, caption_lines, compose_row, save_png
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json
from theia_eval.settings import DecodeConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def teacher_infos(model) -> list[TeacherInfo]:
    """What the decoders know of each teacher the student predicts."""
    heads, names = model.config.translator_heads, model.config.teacher_names
    return [TeacherInfo(t, names.get(t, t), tuple(heads[t]["target"][1:]), int(heads[t]["target"][0]))
            for t in model.teacher_ids]


def pick_teachers(infos: list[TeacherInfo], wanted: list[str] | str | None) -> list[TeacherInfo]:
    """The chosen teachers (ids or names; one name alone is one teacher), all of them for None / []."""
    if not wanted:
        return infos
    if isinstance(wanted, str):
        wanted = [wanted]
    known = {i.id: i for i in infos} | {i.name: i for i in infos}
    missing = [w for w in wanted if w not in known]
    if missing:
        raise InputError(f"teachers={missing} are not predicted by this student; it predicts "
                         f"{[i.id for i in infos]} (names {[i.name for i in infos]}).")
    return [known[w] for w in wanted]


class Decoding:
    """A student plus one decoder per chosen teacher: uint8 images -> composed panel rows."""

    def __init__(self, model, settings: DecodeSettings | None = None, teachers: list[str] | str | None = None,
                 on_missing_weights: str = "error"):
        self.model = model.eval()
        self.settings = settings or DecodeSettings(size=model.config.image_size)
        self.teachers = pick_teachers(teacher_infos(model), teachers)
        self.decoders: list[Decoder] = [decoder_for(t, self.settings, on_missing_weights) for t in self.teachers]

    def reset(self) -> None:
        for d in self.decoders:
            d.reset()

    def shown(self, images: torch.Tensor) -> torch.Tensor:
        """The images as the student sees them: squash-resized to the panel size, uint8 (B, 3, S, S)."""
        from theia_eval.encoders.images import as_uint8_batch

        x = as_uint8_batch(images)
        size = (self.settings.size,) * 2
        if tuple(x.shape[-2:]) == size:
            return x
        y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        return y.round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{teacher id: predicted features in the teacher's scale (B, h, w, C)} for the chosen teachers."""
        return self.model.teacher_features(images, [t.id for t in self.teachers])

    def panels(self, images: torch.Tensor, features: dict[str, torch.Tensor], truth: dict | None = None
               ) -> list[list[Panel]]:
        """Per image: the input, then each teacher's panel(s)."""
        shown = self.shown(images)
        rows = [[Panel("input", im.permute(1, 2, 0).cpu().numpy())] for im in shown]
        for t, d in zip(self.teachers, self.decoders):
            for row, extra in zip(rows, d.panels(features[t.id], shown, truth)):
                row.extend(extra)
        return rows

    def rows(self, images: torch.Tensor, truth: dict | None = None) -> list[np.ndarray]:
        """Composed panel rows (H, W, 3) uint8, one per image."""
        panels = self.panels(images, self.features(images), truth)
        lines = max(caption_lines(p) for p in panels)
        return [compose_row(p, lines) for p in panels]


# --- media ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MediaItem:
    kind: str  # image | video | samples
    path: Path | None
    name: str


def is_data_spec(media: str) -> bool:
    from theia_eval.distill.framesets import MANIFEST
    from theia_eval.distill.sources import SOURCE_KINDS

    scheme, sep, _ = media.partition(":")
    return bool(sep and scheme in SOURCE_KINDS) or (Path(media).expanduser() / MANIFEST).is_file()


def media_items(media: str) -> list[MediaItem]:
    """An image, a video, a folder of them, or a data source (frames:..., tar:..., a frame-set folder)."""
    from theia_eval.distill.video import VIDEO_SUFFIXES

    if is_data_spec(media):
        return [MediaItem("samples", None, media)]
    path = Path(media).expanduser()
    if not path.exists():
        raise InputError(f"media={media} does not exist; pass an image, a video ({', '.join(VIDEO_SUFFIXES)}), a "
                         "folder of them, or a frame set (frames:SUITE|PATH).")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    items = [MediaItem("image" if p.suffix.lower() in IMAGE_SUFFIXES else "video", p, safe_name(p, path))
             for p in files if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
    if not items:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)}) at {path}.")
    return items


def safe_name(path: Path, root: Path) -> str:
    rel = path.name if root.is_file() else path.relative_to(root).as_posix()
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rel.rsplit(".", 1)[0])


def read_image(path: Path) -> torch.Tensor:
    from theia_eval.distill.sources import as_rgb, decode_image

    image = np.array(as_rgb(decode_image(path.read_bytes(), str(path)), str(path)))
    return torch.from_numpy(image).permute(2, 0, 1)[None]


# --- the run -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeRun:
    """Where outputs go and how much of each input is decoded (configs/decode.yaml)."""

    out: Path
    batch_size: int = DecodeConfig.batch_size  # defaults: the `decode` verb's (theia_eval.settings)
    every: int = DecodeConfig.every
    max_frames: int | None = DecodeConfig.max_frames
    fps: float | None = DecodeConfig.fps
    max_images: int = DecodeConfig.max_images
    score_images: int | None = DecodeConfig.score_images


def decode_image(decoding: Decoding, item: MediaItem, run: DecodeRun) -> dict:
    decoding.reset()
    row = decoding.rows(read_image(item.path))[0]
    return {"media": str(item.path), "png": str(save_png(row, run.out / f"{item.name}.png"))}


def batched(frames: Iterator, size: int) -> Iterator[list]:
    batch = []
    for f in frames:
        batch.append(f)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def fit_shape(row: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A row cropped / white-padded to the video's frame shape (caption heights may differ between batches)."""
    row = row[: shape[0], : shape[1]]
    return np.pad(row, ((0, shape[0] - row.shape[0]), (0, shape[1] - row.shape[1]), (0, 0)), constant_values=255)


def decode_video(decoding: Decoding, item: MediaItem, run: DecodeRun) -> dict:
    """Every `every`-th frame decoded; rows to an mp4 (and the first row to PNG); one PCA basis per video."""
    from theia_eval.distill.video import iter_video_frames, video_fps

    decoding.reset()
    fps = run.fps or max((video_fps(item.path) or 25.0) / run.every, 1.0)
    writer, first, frames = None, None, 0
    try:
        for batch in batched(iter_video_frames(item.path, run.every, run.max_frames), run.batch_size):
            images = torch.from_numpy(np.stack([f for _, f in batch])).permute(0, 3, 1, 2)
            for row in decoding.rows(images):
                if writer is None:
                    writer, first = Mp4Writer(run.out / f"{item.name}.mp4", fps), row
                writer.add(fit_shape(row, first.shape))
                frames += 1
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    mp4 = writer.close()
    return {"media": str(item.path), "mp4": str(mp4), "png": str(save_png(first, run.out / f"{item.name}.png")),
            "frames": frames, "fps": fps}


def decode_samples(decoding: Decoding, item: MediaItem, run: DecodeRun) -> dict:
    """A data source: rows for the first max_images samples; fidelity over score_images (default all) samples."""
    from theia_eval.distill.samples import collate_samples
    from theia_eval.distill.sources import open_source

    decoding.reset()
    source = open_source(item.name, decoding.settings.size, allow_upsample=True)
    count = len(source) if run.score_images is None else min(len(source), int(run.score_images))
    count = max(count, min(len(source), run.max_images))
    fidelity = Fidelity({t.id: t.name for t in decoding.teachers}, decoding.settings.size)
    pngs = []
    for start in range(0, count, run.batch_size):
        batch = collate_samples([source.load(i) for i in range(start, min(start + run.batch_size, count))])
        feats = decoding.features(batch.images)
        if fidelity.active and batch.extras:
            fidelity.add(feats, batch.extras)
        todo = max(0, min(len(batch), run.max_images - start))
        if todo:
            panels = decoding.panels(batch.images[:todo], {k: v[:todo] for k, v in feats.items()},
                                     {k: v[:todo] for k, v in batch.extras.items()})
            lines = max(caption_lines(p) for p in panels)
            for key, p in zip(batch.keys[:todo], panels):
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
                pngs.append(str(save_png(compose_row(p, lines), run.out / f"{name}.png")))
    out = {"media": item.name, "samples": count, "png": pngs}
    if fidelity.active and fidelity.images:
        out["fidelity"] = fidelity.summary()
        atomic_write_json(run.out / "fidelity.json", out["fidelity"])
    return out


DECODE_MEDIA = {"image": decode_image, "video": decode_video, "samples": decode_samples}


def decode_media(decoding: Decoding, media: str, run: DecodeRun) -> list[dict]:
    """Decode every item of `media` into run.out; returns one record per item."""
    run.out.mkdir(parents=True, exist_ok=True)
    return [DECODE_MEDIA[item.kind](decoding, item, run) for item in media_items(media)]
