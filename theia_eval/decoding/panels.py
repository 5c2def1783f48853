"""Panel rows (input, then one decoded panel per teacher, titled and captioned) and their PNG / mp4 outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from theia_eval.decoding.decoders import Panel
from theia_eval.errors import InputError

TITLE_H, LINE_H, GAP = 16, 13, 4
MACRO_BLOCK = 16  # mp4 (yuv420p) frames are padded to a multiple of this


def font():
    from PIL import ImageFont

    return ImageFont.load_default()


def caption_lines(panels: list[Panel]) -> int:
    return max((len(p.caption) for p in panels), default=0)


def compose_row(panels: list[Panel], lines: int | None = None) -> np.ndarray:
    """Panels side by side on white, each with its title above and caption lines below: (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    if not panels:
        raise InputError("nothing to draw: no panels.")
    side = panels[0].image.shape[0]
    lines = caption_lines(panels) if lines is None else lines
    height = TITLE_H + side + lines * LINE_H + GAP
    width = len(panels) * side + (len(panels) - 1) * GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw, f = ImageDraw.Draw(canvas), font()
    for i, p in enumerate(panels):
        x = i * (side + GAP)
        canvas.paste(Image.fromarray(p.image), (x, TITLE_H))
        draw.text((x + 2, 2), fit_text(draw, p.title, side - 4, f), fill=(0, 0, 0), font=f)
        for j, line in enumerate(p.caption):
            draw.text((x + 2, TITLE_H + side + 1 + j * LINE_H), fit_text(draw, line, side - 4, f), fill=(0, 0, 0),
                      font=f)
    return np.asarray(canvas)


def fit_text(draw, text: str, width: int, f) -> str:
    """`text` shortened with '...' until it fits `width` pixels."""
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength(text + "...", font=f) > width:
        text = text[:-1]
    return text + "..."


def save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    tmp.replace(path)
    return path


def pad_to_block(image: np.ndarray) -> np.ndarray:
    """White padding right/bottom to multiples of MACRO_BLOCK (libx264 / yuv420p need even sizes)."""
    h, w = image.shape[:2]
    ph, pw = -h % MACRO_BLOCK, -w % MACRO_BLOCK
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=255) if ph or pw else image


class Mp4Writer:
    """Frames (same size) to an mp4 via imageio's ffmpeg plugin, written to a temp file and renamed at close."""

    def __init__(self, path: Path, fps: float):
        from theia_eval.distill.video import require_reader

        iio = require_reader()
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = iio.get_writer(str(self.tmp), fps=float(fps), codec="libx264", macro_block_size=MACRO_BLOCK,
                                     ffmpeg_log_level="error")
        self.frames = 0

    def add(self, image: np.ndarray) -> None:
        self.writer.append_data(pad_to_block(image))
        self.frames += 1

    def close(self) -> Path:
        self.writer.close()
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)
