"""Image sources: folders, webdataset tars, frame sets; keys, resizing and bad inputs."""
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from theia_eval.distill.framesets import SEGMENTATION_CLASSES, FrameSetSource, read_manifest
from theia_eval.distill.sources import FolderSource, TarSource, open_source
from theia_eval.errors import InputError


def write_png(path, size=(40, 30), value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_folder_source_recursive_keys_and_squash(tmp_path):
    write_png(tmp_path / "b" / "x.png", value=10)
    write_png(tmp_path / "a.jpg", value=200)
    (tmp_path / "notes.txt").write_text("not an image")
    src = FolderSource(tmp_path, image_size=16)
    assert src.keys == ["a", "b/x"] and src.extras == ()
    sample = src.load(1)
    assert sample.key == "b/x" and sample.image.shape == (16, 16, 3) and sample.image.dtype == np.uint8
    assert int(sample.image.mean()) == 10


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match="empty data source"):
        FolderSource(tmp_path, 16)
    write_png(tmp_path / "small.png", size=(20, 20))
    with pytest.raises(InputError, match="student is too large for these images"):
        FolderSource(tmp_path, 224).load(0)
    assert FolderSource(tmp_path, 224, allow_upsample=True).load(0).image.shape == (224, 224, 3)
    write_png(tmp_path / "small.jpg", size=(20, 20))
    with pytest.raises(InputError, match="duplicate sample key 'small'"):
        FolderSource(tmp_path, 16)


def add_member(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_tar_source_groups_members_by_key(tmp_path):
    for shard in range(2):
        with tarfile.open(tmp_path / f"shard-{shard}.tar", "w") as tar:
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(np.full((20, 20, 3), 10 * i + shard, np.uint8)).save(buf, format="PNG")
                add_member(tar, f"s{shard}/img{i}.png", buf.getvalue())
                npy = io.BytesIO()
                np.save(npy, np.full((20, 20), float(i), np.float32))
                add_member(tar, f"s{shard}/img{i}.depth.npy", npy.getvalue())
                add_member(tar, f"s{shard}/img{i}.cls", b"3")
    src = open_source(str(tmp_path), image_size=20)
    assert isinstance(src, TarSource) and len(src) == 6 and src.extras == ("depth",)
    sample = src.load(src.keys.index("s1/img2"))
    assert int(sample.image[0, 0, 0]) == 21 and float(sample.extras["depth"][0, 0]) == 2.0


def test_frame_set_source(frameset):
    src = open_source(f"frames:{frameset}", image_size=224)
    assert isinstance(src, FrameSetSource) and len(src) == 32 and src.extras == ("depth", "segmentation")
    manifest = read_manifest(frameset)
    assert manifest["classes"] == list(SEGMENTATION_CLASSES) and len(manifest["shards"]) == 3
    s = src.load(0)
    assert s.key == "metaworld/drawer-open/ep00000/t000/top_cap2"
    assert s.image.shape == (224, 224, 3) and s.extras["depth"].dtype == np.float32
    assert set(np.unique(s.extras["segmentation"])) <= set(range(len(SEGMENTATION_CLASSES)))
    assert 0.1 < float(np.median(s.extras["depth"])) < 3.0  # metres from the camera to the table
    small = open_source(str(frameset), image_size=112).load(0)  # extras follow the image (nearest)
    assert small.image.shape == (112, 112, 3) and small.extras["segmentation"].shape == (112, 112)


def test_frames_suite_spec_and_unknown_kind(tmp_path):
    with pytest.raises(InputError, match="theia-eval frames suite=nosuch"):
        open_source("frames:nosuch", 224)
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "missing"), 224)
    with pytest.raises(KeyError, match="unknown data source kind 'folderz'"):
        open_source("folderz:/x", 224)
