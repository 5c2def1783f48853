"""Video datasets to webdataset frame shards: every N-th frame at 224 px, shards the tar source reads, resumable per
video, clear errors for unreadable videos and nothing half-written. Videos are generated here (mp4, webm, avi)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from theia_eval.cli import main
from theia_eval.distill import video as video_mod
from theia_eval.distill.sources import open_source
from theia_eval.distill.video import VideoFrameSettings, iter_video_frames, video_frames
from theia_eval.errors import InputError

iio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")
CODECS = {".mp4": "libx264", ".webm": "libvpx", ".avi": "mpeg4"}


def smooth_frames(n: int, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """Frames with large colour blocks that shift per frame (codecs keep them close to the source)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)
    frames = []
    for i in range(n):
        block = np.roll(base, i % 5, axis=1)
        frames.append(np.kron(block, np.ones((h // 4, w // 5, 1), dtype=np.uint8)))
    return np.stack(frames)


def write_video(path, frames: np.ndarray, fps: int = 10):
    writer = iio.get_writer(str(path), fps=fps, codec=CODECS[path.suffix], macro_block_size=16,
                            ffmpeg_log_level="error", **({"bitrate": "2M"} if path.suffix == ".webm" else {}))
    for f in frames:
        writer.append_data(f)
    writer.close()
    return path


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    write_video(root / "a.mp4", smooth_frames(12, seed=0))
    write_video(root / "sub" / "b.webm", smooth_frames(7, seed=1))
    write_video(root / "c.avi", smooth_frames(5, seed=2))
    return root


def shard_state(out):
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("*.tar"))}


def test_every_nth_frame_to_224_shards_the_tar_source_reads(videos, tmp_path):
    out = tmp_path / "shards"
    summary = video_frames(videos, out, VideoFrameSettings(every=3, shard_size=2), progress=False)
    assert summary["videos"] == 3 and summary["frames"] == 4 + 3 + 2  # ceil(12/3), ceil(7/3), ceil(5/3)
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "a_mp4-000000.tar", "a_mp4-000001.tar", "c_avi-000000.tar", "sub_b_webm-000000.tar", "sub_b_webm-000001.tar"]
    source = open_source(f"tar:{out}", 224)
    assert len(source) == 9
    assert source.keys[:4] == ["a_mp4_f000000", "a_mp4_f000003", "a_mp4_f000006", "a_mp4_f000009"]
    image, _ = source.read(source.keys.index("a_mp4_f000006"))
    assert image.shape == (224, 224, 3) and image.dtype == np.uint8
    from PIL import Image

    expected = np.asarray(Image.fromarray(smooth_frames(12)[6]).resize((224, 224), Image.BILINEAR))
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 12  # codec + JPEG loss only
    done = json.loads((out / "a_mp4.done.json").read_text())
    assert done["frames"] == 4 and done["settings"]["every"] == 3


def test_rerun_skips_finished_videos_and_redoes_changed_ones(videos, tmp_path):
    out = tmp_path / "shards"
    settings = VideoFrameSettings(every=2, shard_size=4)
    video_frames(videos, out, settings, progress=False)
    before = shard_state(out)
    again = video_frames(videos, out, settings, progress=False)
    assert again["skipped"] == 3 and shard_state(out) == before
    write_video(videos / "c.avi", smooth_frames(9, seed=3))  # the file changed: only it is redone
    third = video_frames(videos, out, settings, progress=False)
    assert third["skipped"] == 2
    after = shard_state(out)
    assert {k: v for k, v in after.items() if not k.startswith("c_")} == \
           {k: v for k, v in before.items() if not k.startswith("c_")}
    assert json.loads((out / "c_avi.done.json").read_text())["frames"] == 5
    other = video_frames(videos, out, VideoFrameSettings(every=3, shard_size=4), progress=False)
    assert other["skipped"] == 0  # other settings: every video is redone, stale shards replaced
    assert len(open_source(f"tar:{out}", 224)) == other["frames"]


def test_unreadable_video_is_named_and_leaves_nothing_half_written(videos, tmp_path):
    (videos / "zz_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    out = tmp_path / "shards"
    with pytest.raises(InputError, match="zz_broken.mp4"):
        video_frames(videos, out, VideoFrameSettings(every=2, shard_size=4), progress=False)
    assert not list(out.glob("zz_broken*")) and not list(out.glob(".*partial*"))
    assert len(list(out.glob("*.done.json"))) == 3  # the readable ones are done and kept for the rerun


def test_crash_inside_a_video_writes_none_of_its_shards(videos, tmp_path, monkeypatch):
    out = tmp_path / "shards"
    real = video_mod.iter_video_frames

    def dies_in_b(path, every=1, max_frames=None):
        for i, item in enumerate(real(path, every, max_frames)):
            if path.name == "b.webm" and i == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(video_mod, "iter_video_frames", dies_in_b)
    with pytest.raises(KeyboardInterrupt):
        video_frames(videos, out, VideoFrameSettings(every=1, shard_size=2), progress=False)
    assert not list(out.glob("sub_b_webm*")) and not list(out.glob(".*partial*"))
    monkeypatch.setattr(video_mod, "iter_video_frames", real)
    summary = video_frames(videos, out, VideoFrameSettings(every=1, shard_size=2), progress=False)
    assert summary["skipped"] == 2 and summary["frames"] == 12 + 7 + 5  # a and c (sorted before sub/b) were done


def test_reader_and_settings_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(iter_video_frames(tmp_path / "missing.mp4"))
    with pytest.raises(InputError, match="no videos"):
        video_frames(tmp_path, tmp_path / "out", VideoFrameSettings(), progress=False)
    with pytest.raises(InputError, match="every=0"):
        VideoFrameSettings(every=0).check()


def test_frames_verb_takes_video_every_and_shard_size(videos, tmp_path, capsys):
    out = tmp_path / "verb"
    assert main(["frames", f"video={videos / 'a.mp4'}", "every=4", "shard_size=2", f"out={out}"]) == 0
    assert "3 frames of 1 video(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.tar")) == ["a_mp4-000000.tar", "a_mp4-000001.tar"]
    assert main(["frames", "every=4"]) == 2
    assert "every= applies to videos only" in capsys.readouterr().err
