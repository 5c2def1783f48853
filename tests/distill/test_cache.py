"""Cached targets: sharded fp16 files with keys and checksums, resumable extraction, integrity checks."""
import json
import struct

import pytest
import torch

from theia_eval.distill.cache import CachedTargets, extract_targets, teacher_caches
from theia_eval.distill.sources import open_source
from theia_eval.distill.stats import load_stats
from theia_eval.distill.teachers import TEACHERS, Teacher, TeacherSpec, build_teachers
from theia_eval.errors import InputError


def setup(frameset, root, specs=("sim-depth", "sim-segmentation"), shard_size=12):
    source = open_source(str(frameset), 224)
    teachers = build_teachers([TeacherSpec(s) if isinstance(s, str) else s for s in specs])
    caches = teacher_caches(root, teachers, source, "float16", shard_size)
    return source, teachers, caches


def test_extract_then_read_back(frameset, tmp_path):
    source, teachers, caches = setup(frameset, tmp_path / "cache")
    report = extract_targets(caches, source, torch.device("cpu"), batch_size=8, progress=False)
    assert report["shards_total"] == 3 and report["shards_extracted_here"] == 3
    depth = report["teachers"]["sim-depth"]
    assert depth["bytes_per_image"] == 16 * 16 * 16 * 2
    targets = CachedTargets(caches, source.keys)
    from theia_eval.distill.data import collate_batch

    key_index = 17
    batch = collate_batch([(source.load(key_index), None)])
    for t, stored in zip(teachers, targets.get(source.keys[key_index])):
        assert stored.dtype == torch.float16
        torch.testing.assert_close(stored, t(batch)[0].half())
    stats = load_stats(caches[1].root, "sim-segmentation", 4)
    assert stats.count == 32 * 16 * 16  # every token of every image, one pass


def test_extraction_resumes_per_shard(frameset, tmp_path):
    source, _, caches = setup(frameset, tmp_path / "cache")
    extract_targets(caches, source, torch.device("cpu"), 8, progress=False)
    files = sorted(caches[0].root.glob("shard-*.safetensors"))
    before = {f.name: f.stat().st_mtime_ns for f in files}
    stats_before = load_stats(caches[0].root, "sim-depth", 16)
    files[1].unlink()
    report = extract_targets(caches, source, torch.device("cpu"), 8, progress=False)
    assert report["shards_extracted_here"] == 1
    after = {f.name: f.stat().st_mtime_ns for f in sorted(caches[0].root.glob("shard-*.safetensors"))}
    assert after[files[0].name] == before[files[0].name] and after[files[2].name] == before[files[2].name]
    torch.testing.assert_close(load_stats(caches[0].root, "sim-depth", 16).std, stats_before.std)
    assert extract_targets(caches, source, torch.device("cpu"), 8, progress=False)["shards_extracted_here"] == 0


def data_offset(path, row_bytes, row):
    """Byte offset of one row of the 'targets' tensor inside a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return 8 + n + header["targets"]["data_offsets"][0] + row * row_bytes


def test_tampered_shard_names_shard_and_key(frameset, tmp_path):
    source, teachers, caches = setup(frameset, tmp_path / "cache")
    extract_targets(caches, source, torch.device("cpu"), 8, progress=False)
    shard = caches[0].shard_file(1)
    offset = data_offset(shard, 16 * 16 * 16 * 2, row=3)
    with open(shard, "r+b") as f:
        f.seek(offset + 100)
        byte = f.read(1)
        f.seek(offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    targets = CachedTargets(caches, source.keys)
    targets.get(source.keys[12])  # row 0 of the same shard is intact
    with pytest.raises(InputError, match=rf"shard-00001.safetensors: sample '{source.keys[15]}' \(row 3\) fails its crc32"):
        targets.get(source.keys[15])


def test_swapped_keys_and_truncated_shard_are_caught(frameset, tmp_path):
    from safetensors.torch import load_file, save_file

    source, _, caches = setup(frameset, tmp_path / "cache", specs=("sim-segmentation",))
    extract_targets(caches, source, torch.device("cpu"), 8, progress=False)
    shard = caches[0].shard_file(0)
    keys = source.keys[:12]
    swapped = [keys[1], keys[0], *keys[2:]]
    save_file(load_file(shard), str(shard), metadata={"keys": json.dumps(swapped)})
    with pytest.raises(InputError, match=rf"shard-00000.safetensors: row 0 holds key '{keys[1]}' where the data source has '{keys[0]}'"):
        CachedTargets(caches, source.keys)
    with open(shard, "r+b") as f:
        f.truncate(100)
    with pytest.raises(InputError, match="corrupt target cache shard .*shard-00000.safetensors"):
        CachedTargets(caches, source.keys)


def test_teacher_width_change_and_other_data_are_refused(frameset, tiny_teachers, tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    weights = tmp_path / "dino"
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2)).save_pretrained(weights)
    spec = TeacherSpec("dinov2-vit-s14", str(weights), "tiny/dino")
    source, _, caches = setup(frameset, tmp_path / "cache", specs=(spec,))
    extract_targets(caches, source, torch.device("cpu"), 16, progress=False)
    Dinov2Model(Dinov2Config(hidden_size=48, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2)).save_pretrained(weights)
    _, _, caches = setup(frameset, tmp_path / "cache", specs=(spec,))
    with pytest.raises(InputError, match="holds width 32 but teacher 'tiny/dino' now gives 48"):
        extract_targets(caches, source, torch.device("cpu"), 16, progress=False)
    other = open_source(str(frameset), 112)  # same frames, other size: other data for the teacher
    caches = teacher_caches(tmp_path / "cache", [c.teacher for c in setup(frameset, tmp_path / "c2", specs=("sim-depth",))[2]],
                            other, "float16", 12)
    extract_targets(caches, other, torch.device("cpu"), 16, progress=False)
    caches = teacher_caches(tmp_path / "cache", [caches[0].teacher], source, "float16", 12)
    with pytest.raises(InputError, match="was extracted from other data"):
        CachedTargets(caches, source.keys)


class Overflowing(Teacher):
    def compute(self, batch):
        return torch.full((len(batch), 2, 2, 3), 1e6)


@pytest.fixture
def overflow_teacher():
    TEACHERS["test-overflow"] = lambda spec, device, dtype: Overflowing(spec, "overflow", (2, 2), 3)
    yield
    del TEACHERS["test-overflow"]


def test_fp16_overflow_is_reported(frameset, tmp_path, overflow_teacher):
    source, _, caches = setup(frameset, tmp_path / "cache", specs=("test-overflow",))
    with pytest.raises(InputError, match=rf"non-finite targets for sample '{source.keys[0]}'.*cache_dtype=bfloat16"):
        extract_targets(caches, source, torch.device("cpu"), 8, progress=False)
    source, _, caches = setup(frameset, tmp_path / "bf16", specs=("test-overflow",))
    caches = teacher_caches(tmp_path / "bf16", [caches[0].teacher], source, "bfloat16", 12)
    extract_targets(caches, source, torch.device("cpu"), 8, progress=False)
    assert float(CachedTargets(caches, source.keys).get(source.keys[0])[0][0, 0, 0]) == pytest.approx(1e6, rel=1e-2)


def test_ranks_split_the_shards_and_together_fill_the_cache(frameset, tmp_path):
    """What each DDP rank extracts (shard i goes to rank i % world), run in one process: the two halves make the
    cache one process makes, statistics included (rank 0 merges them)."""
    source, teachers, single = setup(frameset, tmp_path / "one")
    extract_targets(single, source, torch.device("cpu"), batch_size=8, progress=False)
    _, _, split = setup(frameset, tmp_path / "two")
    second = extract_targets(split, source, torch.device("cpu"), batch_size=8, rank=1, world=2, progress=False)
    first = extract_targets(split, source, torch.device("cpu"), batch_size=8, rank=0, world=2, progress=False)
    assert (first["shards_extracted_here"], second["shards_extracted_here"]) == (2, 1)  # shards 0, 2 and 1
    one, two = CachedTargets(single, source.keys), CachedTargets(split, source.keys)
    for key in source.keys:
        for a, b in zip(one.get(key), two.get(key)):
            assert torch.equal(a, b)
    for c1, c2 in zip(single, split):
        s1, s2 = load_stats(c1.root, c1.teacher.id, c1.teacher.dim), load_stats(c2.root, c2.teacher.id, c2.teacher.dim)
        assert s1.count == s2.count and torch.allclose(s1.mean, s2.mean) and torch.allclose(s1.std, s2.std)
