"""Video datasets to webdataset frame shards: every N-th frame of each video, squashed to a square size.

    theia-eval frames video=FILE|DIR every=N shard_size=M out=DIR
    theia-eval distill data=tar:DIR ...

Layout of DIR (read by the `tar` data source, sources.TarSource):
    <video key>-000000.tar ...   members <video key>_f<frame index:06d>.jpg, at most shard_size per shard
    <video key>.done.json        written last: the video's settings, source size/mtime, frames and shards
    videoframes.json             the run's settings and per-video summary
A video key is the video's path relative to the input folder with '/' and '.' turned into '_' (so keys hold no
dot, as webdataset wants). Each video is converted into a temp folder and its shards are moved into place
only when the whole video decoded, then its done.json is written: a rerun skips videos whose done.json matches
(same settings, same file), redoes the rest, and a crash or an unreadable video leaves no partial shard behind.
Frames are read with imageio's ffmpeg plugin (`pip install theia-eval[video]`), squash-resized as the reference
subsampling script does (torchvision Resize((224, 224)) on the whole frame) and stored as JPEG.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, remove_stale_temp_files, temp_sibling
from theia_eval.settings import FramesConfig

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv")
DONE_SUFFIX = ".done.json"
SUMMARY_FILE = "videoframes.json"


@dataclass(frozen=True)
class VideoFrameSettings:
    """What a frame-shard run does (the parts that decide its output)."""

    every: int = 30
    shard_size: int = FramesConfig.shard_size  # `frames`' defaults (theia_eval.settings)
    resolution: int = FramesConfig.resolution
    jpeg_quality: int = 95

    def check(self) -> None:
        for name in ("every", "shard_size", "resolution"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be a positive integer.")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise InputError(f"jpeg_quality={self.jpeg_quality} must lie in [1, 100].")


# --- reading videos ----------------------------------------------------------------------------------
def require_reader():
    """imageio's v2 API with its ffmpeg plugin, or a clear error naming the extra to install."""
    try:
        import imageio.v2 as iio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary the plugin runs)
    except ImportError as exc:
        raise InputError("reading videos needs imageio with its ffmpeg plugin: pip install 'theia-eval[video]' "
                         "(imageio[ffmpeg]).") from exc
    return iio


def iter_video_frames(path: str | Path, every: int = 1, max_frames: int | None = None
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, (H, W, 3) uint8 RGB) for frames 0, every, 2*every, ...; an unreadable file raises InputError."""
    iio = require_reader()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist.")
    try:
        reader = iio.get_reader(str(path), "ffmpeg")
    except Exception as exc:  # imageio raises OSError / RuntimeError / ValueError for broken or foreign files
        raise InputError(f"cannot read video {path}: {first_line(exc)}. The file is corrupt, empty or not a video "
                         "ffmpeg can decode; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it.") from exc
    kept = 0
    try:
        for index, frame in enumerate(reader):
            if index % every:
                continue
            yield index, np.ascontiguousarray(np.asarray(frame)[..., :3], dtype=np.uint8)
            kept += 1
            if max_frames is not None and kept >= max_frames:
                break
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"video {path} broke off while decoding ({first_line(exc)}); re-encode it or remove it."
                         ) from exc
    finally:
        reader.close()
    if kept == 0:
        raise InputError(f"video {path} has no decodable frames; re-encode it or remove it.")


def video_fps(path: str | Path) -> float | None:
    """The frame rate ffmpeg reports, or None."""
    iio = require_reader()
    try:
        with iio.get_reader(str(path), "ffmpeg") as reader:
            fps = reader.get_meta_data().get("fps")
    except Exception:  # a missing rate is not an error; reading the frames reports broken files
        return None
    return float(fps) if fps else None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def find_videos(root: Path) -> list[Path]:
    """A video file, or every video under a folder (recursive, sorted)."""
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{root} is not a video ({', '.join(VIDEO_SUFFIXES)}).")
        return [root]
    if not root.is_dir():
        raise InputError(f"video={root} does not exist; pass a video file or a folder of videos.")
    videos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise InputError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {root}.")
    return videos


def video_key(video: Path, root: Path) -> str:
    """The sample-key prefix of a video: its relative path with '/' and '.' as '_'."""
    rel = video.name if root.is_file() else video.relative_to(root).as_posix()
    return rel.replace("/", "_").replace(".", "_")


# --- writing shards ----------------------------------------------------------------------------------
def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A plain tar of (name, bytes) members with fixed metadata (same input, same bytes)."""
    import tarfile

    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def source_id(video: Path) -> dict:
    st = video.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_done(out: Path, key: str, video: Path, settings: VideoFrameSettings) -> bool:
    """Whether a previous run finished this video with the same settings from the same file."""
    done = out / f"{key}{DONE_SUFFIX}"
    if not done.is_file():
        return False
    try:
        record = json.loads(done.read_text())
    except json.JSONDecodeError:
        return False
    return (record.get("settings") == asdict(settings) and record.get("source") == source_id(video)
            and all((out / s).is_file() for s in record.get("shards", [])))


def convert_video(video: Path, key: str, out: Path, settings: VideoFrameSettings) -> dict:
    """Decode one video into its shards (in a temp folder, moved into place when complete); returns its record."""
    from theia_eval.distill.sources import squash_image

    for stale in [out / f"{key}{DONE_SUFFIX}", *out.glob(f"{key}-[0-9][0-9][0-9][0-9][0-9][0-9].tar")]:
        stale.unlink(missing_ok=True)
    tmp = temp_sibling(out / key)
    tmp.mkdir(parents=True)
    shards, members, frames = [], [], 0
    try:
        for index, frame in iter_video_frames(video, settings.every):
            image = squash_image(frame, settings.resolution)
            members.append((f"{key}_f{index:06d}.jpg", encode_jpeg(image, settings.jpeg_quality)))
            frames += 1
            if len(members) == settings.shard_size:
                shards.append(flush(tmp, key, len(shards), members))
        if members:
            shards.append(flush(tmp, key, len(shards), members))
        for name in shards:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {"video": str(video), "key": key, "settings": asdict(settings), "source": source_id(video),
              "frames": frames, "shards": shards}
    atomic_write_json(out / f"{key}{DONE_SUFFIX}", record)
    return record


def flush(tmp: Path, key: str, number: int, members: list[tuple[str, bytes]]) -> str:
    """Write the buffered members as shard `number` and empty the buffer; returns the shard's name."""
    name = f"{key}-{number:06d}.tar"
    write_tar(tmp / name, members)
    members.clear()
    return name


def video_frames(video: str | Path, out: str | Path, settings: VideoFrameSettings, progress: bool = True) -> dict:
    """Every video of `video` to frame shards in `out`, resumably per video; returns the run's summary."""
    settings.check()
    root, out = Path(video).expanduser(), Path(out).expanduser()
    videos = find_videos(root)
    keys = [video_key(v, root) for v in videos]
    seen: dict[str, Path] = {}
    for k, v in zip(keys, videos):
        if k in seen:
            raise InputError(f"videos {seen[k]} and {v} map to the same sample key '{k}'; rename one of them.")
        seen[k] = v
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)  # a video a killed run was converting
    t0, records, skipped = time.perf_counter(), [], 0
    for i, (v, k) in enumerate(zip(videos, keys)):
        if is_done(out, k, v, settings):
            records.append(json.loads((out / f"{k}{DONE_SUFFIX}").read_text()))
            skipped += 1
            continue
        records.append(convert_video(v, k, out, settings))
        if progress:
            print(f"[{i + 1}/{len(videos)}] {v.name}: {records[-1]['frames']} frames", file=sys.stderr)
    summary = {"video": str(root), "out": str(out), "settings": asdict(settings), "videos": len(videos),
               "skipped": skipped, "frames": sum(r["frames"] for r in records),
               "shards": sum(len(r["shards"]) for r in records), "wall_s": round(time.perf_counter() - t0, 2),
               "per_video": [{"key": r["key"], "frames": r["frames"], "shards": r["shards"]} for r in records]}
    atomic_write_json(out / SUMMARY_FILE, summary)
    return summary
