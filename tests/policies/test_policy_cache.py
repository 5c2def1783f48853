"""Embedding cache: reuse, invalidation, contents, corruption, streaming, demo sources."""
import dataclasses
import json

import h5py
import numpy as np
import pytest

from theia_eval.encoders import create_encoder, list_encoders
from theia_eval.errors import InputError
from theia_eval.policies.cache import (
    ArrayDemoSource,
    DemoSource,
    EmbeddingCache,
    HDF5DemoSource,
    get_or_build_cache,
)


class Counting:
    """Wraps an encoder, counting the images it encodes; can pose as another name/weights id."""

    def __init__(self, enc, name=None, weights_id=None):
        self.enc, self.dtype, self.batches = enc, enc.dtype, []
        self.config = dataclasses.replace(enc.config, name=name) if name else enc.config
        self.weights_id = enc.weights_id if weights_id is None else weights_id

    def __call__(self, images):
        self.batches.append(len(images))
        return self.enc(images)


def make_demos(seed=0, lengths=(5, 7, 4), size=32):
    rng = np.random.default_rng(seed)
    return {f"demo_{i}": {"rgb": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                          "actions": rng.standard_normal((n, 4)).astype(np.float32),
                          "proprio": rng.standard_normal((n, 3)).astype(np.float32)}
            for i, n in enumerate(lengths)}


def write_robomimic(path, demos, masks=None, proprio=True):
    """The layout the envs helper writes: data/demo_i/{obs/rgb, obs/proprio, actions}, mask/<split>."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "test"})
        data.attrs["total"] = sum(len(d["rgb"]) for d in demos.values())
        for key, d in demos.items():
            g = data.create_group(key)
            g.attrs["num_samples"] = len(d["rgb"])
            g.create_dataset("obs/rgb", data=d["rgb"], compression="gzip")
            if proprio:
                g.create_dataset("obs/proprio", data=d["proprio"])
            g.create_dataset("actions", data=d["actions"])
        for split, names in (masks or {}).items():
            f.create_dataset(f"mask/{split}", data=np.array(names, dtype="S"))


@pytest.fixture(scope="module")
def pixels():
    return create_encoder("pixels")


@pytest.mark.parametrize("kind", ["tokens", "summary"])
def test_second_build_reuses_and_contents_equal_a_fresh_encode(tmp_path, pixels, kind):
    demos = make_demos()
    enc = Counting(pixels)
    cache = get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, kind, chunk_size=3, progress=False)
    assert sum(enc.batches) == 16 and max(enc.batches) <= 3  # streamed in chunks of <= 3 frames
    again = Counting(pixels)
    reused = get_or_build_cache(again, ArrayDemoSource(make_demos()), tmp_path, kind, progress=False)
    assert again.batches == [] and reused.path == cache.path
    assert isinstance(reused.embeddings, np.memmap) and reused.embeddings.dtype == np.float16
    fresh = np.concatenate([getattr(pixels(d["rgb"]), kind).numpy() for d in demos.values()])
    np.testing.assert_allclose(reused.embeddings.astype(np.float32), fresh, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(reused.actions, np.concatenate([d["actions"] for d in demos.values()]))
    np.testing.assert_array_equal(reused.proprio[5:12], demos["demo_1"]["proprio"])
    m = reused.manifest
    assert (m["encoder"], m["weights_id"], m["kind"], m["dtype"]) == ("pixels", "none", kind, "float16")
    assert m["demos"] == [{"key": "demo_0", "offset": 0, "length": 5}, {"key": "demo_1", "offset": 5, "length": 7},
                          {"key": "demo_2", "offset": 12, "length": 4}]
    assert tuple(m["shape"]) == ((16, 16, 16, 48) if kind == "tokens" else (16, 768))
    assert reused.demo_rows("demo_2") == slice(12, 16) and (reused.action_dim, reused.proprio_dim) == (4, 3)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # temp folder renamed away


def test_changing_encoder_name_weights_or_data_invalidates(tmp_path, pixels):
    demos = make_demos()
    base = get_or_build_cache(Counting(pixels), ArrayDemoSource(demos), tmp_path, "summary", progress=False)
    for enc in (Counting(pixels, weights_id="random:1"), Counting(pixels, name="pixels-v2")):
        cache = get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, "summary", progress=False)
        assert sum(enc.batches) == 16 and cache.path != base.path
    changed = make_demos()
    changed["demo_1"]["rgb"][3, 0, 0, 0] ^= 1
    enc = Counting(pixels)
    cache = get_or_build_cache(enc, ArrayDemoSource(changed), tmp_path, "summary", progress=False)
    assert sum(enc.batches) == 16 and cache.path != base.path
    tokens = get_or_build_cache(Counting(pixels), ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    assert tokens.path != base.path and tokens.kind == "tokens"


def test_weights_file_replaced_in_place_invalidates(tmp_path, pixels):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    def key_path():
        return get_or_build_cache(Counting(pixels, weights_id=str(weights)), ArrayDemoSource(make_demos()),
                                  tmp_path / "c", "summary", progress=False).path
    first = key_path()
    weights.write_bytes(b"two!")
    assert key_path() != first


def test_a_weights_folder_keys_its_weights_not_its_card(tmp_path, pixels):
    """An export folder: replacing its weights or config gives a new cache; editing its card or plots does not."""
    folder = tmp_path / "export"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    (folder / "CARD.md").write_text("card")

    def key_path():
        return get_or_build_cache(Counting(pixels, weights_id=str(folder)), ArrayDemoSource(make_demos()),
                                  tmp_path / "c", "summary", progress=False).path
    first = key_path()
    (folder / "CARD.md").write_text("a longer card, rewritten")
    (folder / "plot.png").write_bytes(b"png")
    (folder / "checkpoints" / "step-1.pt").write_bytes(b"training state")
    assert key_path() == first
    (folder / "config.json").write_text('{"depth": 2}')
    second = key_path()
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert len({first, second, key_path()}) == 3


def test_truncated_or_corrupted_cache_is_detected_and_rebuilt(tmp_path, pixels):
    demos = make_demos()
    cache = get_or_build_cache(Counting(pixels), ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    good = np.array(cache.embeddings)
    path = cache.path
    del cache
    emb_file = path / "embeddings.npy"
    emb_file.write_bytes(emb_file.read_bytes()[:-100])
    with pytest.raises(InputError, match="unreadable, incomplete or corrupted.*truncated"):
        EmbeddingCache.open(path)
    enc = Counting(pixels)
    rebuilt = get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    assert sum(enc.batches) == 16 and np.array_equal(np.array(rebuilt.embeddings), good)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="JSONDecodeError"):
        EmbeddingCache.open(path)
    enc = Counting(pixels)
    get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    assert sum(enc.batches) == 16
    raw = bytearray(emb_file.read_bytes())  # same size, one flipped byte: the chunk checksums tell, by default
    raw[-1] ^= 0xFF
    emb_file.write_bytes(bytes(raw))
    EmbeddingCache.open(path, verify=False)  # sizes and shapes only
    with pytest.raises(InputError, match="checksums in the manifest at bytes 0-"):
        EmbeddingCache.open(path)
    enc = Counting(pixels)
    get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    assert sum(enc.batches) == 16


def test_cache_without_chunk_checksums_is_verified_by_sha256(tmp_path, pixels):
    """Caches written before the per-chunk checksums still open, and their corruption is still found."""
    cache = get_or_build_cache(Counting(pixels), ArrayDemoSource(make_demos()), tmp_path, "summary", progress=False)
    manifest = json.loads((cache.path / "manifest.json").read_text())
    assert set(manifest["chunks"]) == {"embeddings.npy", "actions.npy", "proprio.npy"}
    del manifest["chunks"]
    (cache.path / "manifest.json").write_text(json.dumps(manifest))
    EmbeddingCache.open(cache.path)
    actions = cache.path / "actions.npy"
    raw = bytearray(actions.read_bytes())
    raw[-1] ^= 0x01
    actions.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="sha256"):
        EmbeddingCache.open(cache.path)


def test_temporary_folder_of_a_killed_build_is_removed(tmp_path, pixels):
    cache = get_or_build_cache(Counting(pixels), ArrayDemoSource(make_demos()), tmp_path, "tokens", progress=False)
    mine = cache.path.parent / f".{cache.path.name}.tmp-999999-0123abcd"  # left by a killed build of this cache
    other = cache.path.parent / ".0123456789abcdef0123.tmp-999998-89abcdef"  # ... and of another cache
    for tmp in (mine, other):
        tmp.mkdir()
        (tmp / "embeddings.npy").write_bytes(b"\0" * 1000)
    enc = Counting(pixels)
    get_or_build_cache(enc, ArrayDemoSource(make_demos()), tmp_path, "tokens", progress=False)
    assert enc.batches == [] and not mine.exists() and not other.exists()


def test_hdf5_source_reads_the_robomimic_layout_and_splits(tmp_path, pixels):
    demos = make_demos(lengths=(5, 7, 4, 3))
    path = tmp_path / "demos.hdf5"
    write_robomimic(path, demos, {"train": ["demo_0", "demo_2", "demo_3"], "valid": ["demo_1"]})
    with HDF5DemoSource(path, split="train") as src:
        assert isinstance(src, DemoSource) and src.demo_keys() == ["demo_0", "demo_2", "demo_3"]
        assert src.num_frames("demo_2") == 4
        np.testing.assert_array_equal(src.frames("demo_2", 1, 3), demos["demo_2"]["rgb"][1:3])
        np.testing.assert_array_equal(src.proprio("demo_3"), demos["demo_3"]["proprio"])
        enc = Counting(pixels)
        cache = get_or_build_cache(enc, src, tmp_path / "c", "summary", progress=False)
        assert sum(enc.batches) == 12 and cache.demo_keys == ["demo_0", "demo_2", "demo_3"]
        train_fp = src.fingerprint()
    with HDF5DemoSource(path, split="valid") as src:
        assert src.fingerprint() != train_fp
    with pytest.raises(InputError, match=r"no mask/test; available splits: \['train', 'valid'\]"):
        HDF5DemoSource(path, split="test")
    with HDF5DemoSource(path) as src:
        assert src.demo_keys() == ["demo_0", "demo_1", "demo_2", "demo_3"]
    demos["demo_0"]["actions"][0, 0] += 1.0  # a new file content (same shapes) invalidates the cache
    write_robomimic(path, demos, {"train": ["demo_0", "demo_2", "demo_3"]})
    with HDF5DemoSource(path, split="train") as src:
        enc = Counting(pixels)
        rebuilt = get_or_build_cache(enc, src, tmp_path / "c", "summary", progress=False)
        assert sum(enc.batches) == 12 and rebuilt.path != cache.path
        assert rebuilt.actions[0, 0] == demos["demo_0"]["actions"][0, 0]


def test_hdf5_without_proprio_and_bad_files(tmp_path):
    demos = make_demos(lengths=(3,))
    path = tmp_path / "noprop.hdf5"
    write_robomimic(path, demos, proprio=False)
    with HDF5DemoSource(path) as src:
        assert src.proprio("demo_0").shape == (3, 0)
    with pytest.raises(InputError, match="does not exist"):
        HDF5DemoSource(tmp_path / "missing.hdf5")
    bad = tmp_path / "bad.hdf5"
    demos["demo_0"]["rgb"] = demos["demo_0"]["rgb"].astype(np.float32)
    write_robomimic(bad, demos)
    with pytest.raises(InputError, match="must be uint8"):
        HDF5DemoSource(bad)


def test_bad_sources_raise_clear_errors(tmp_path, pixels):
    with pytest.raises(InputError, match="no demos"):
        get_or_build_cache(pixels, ArrayDemoSource({}), tmp_path, progress=False)
    empty = make_demos(lengths=(3, 0))
    with pytest.raises(InputError, match=r"demos \['demo_1'\] have 0 frames"):
        get_or_build_cache(pixels, ArrayDemoSource(empty), tmp_path, progress=False)
    short = make_demos(lengths=(3,))
    short["demo_0"]["actions"] = short["demo_0"]["actions"][:2]
    with pytest.raises(InputError, match=r"demo 'demo_0' has 3 frames but actions \(2, 4\)"):
        get_or_build_cache(pixels, ArrayDemoSource(short), tmp_path, progress=False)
    with pytest.raises(InputError, match="cache kind"):
        get_or_build_cache(pixels, ArrayDemoSource(make_demos()), tmp_path, "cls", progress=False)
    assert not [p for p in tmp_path.rglob("*") if p.is_dir() and ".tmp-" in p.name]


@pytest.mark.skipif("random-vit-nano" not in list_encoders(), reason="random-vit-nano not registered yet")
def test_cache_with_a_tiny_vit(tmp_path):
    enc = create_encoder("random-vit-nano")
    demos = make_demos(lengths=(2, 3))
    cache = get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    fresh = np.concatenate([enc(d["rgb"]).tokens.float().numpy() for d in demos.values()])
    np.testing.assert_allclose(cache.embeddings.astype(np.float32), fresh, rtol=2e-3, atol=2e-3)


class Shrunk(Counting):
    """An encoder whose outputs are scaled far below float16's normal range (as PyTorch's default init left a
    random EfficientNet-Lite0: features of about 1e-8)."""

    def __call__(self, images):
        out = self.enc(images)
        return dataclasses.replace(out, tokens=out.tokens.float() * 1e-8, summary=out.summary.float() * 1e-8)


def test_embeddings_float16_cannot_hold_are_refused_and_nothing_is_cached(tmp_path, pixels):
    with pytest.raises(InputError, match=r"storing the embeddings as float16 would change them by \d+% .*out of "
                                         r"scale.*nothing was cached"):
        get_or_build_cache(Shrunk(pixels), ArrayDemoSource(make_demos()), tmp_path, "tokens", progress=False)
    assert [p.name for p in tmp_path.rglob("*") if p.is_dir()] == ["pixels"]  # the encoder's folder: its lock only
    assert all(p.suffix == ".lock" for p in (tmp_path / "pixels").iterdir())
    cache = get_or_build_cache(Counting(pixels), ArrayDemoSource(make_demos()), tmp_path, "tokens", progress=False)
    assert cache.num_frames == 16  # features of ordinary scale (pixels in [0, 1]) pass


class PosingAsMean(Counting):
    """An encoder that claims its summary is the mean token but returns something else (first token)."""

    def __init__(self, enc):
        super().__init__(enc)
        self.config = dataclasses.replace(enc.config, summary="mean", summary_dim=enc.config.token_dim)

    def __call__(self, images):
        self.batches.append(len(images))
        out = self.enc(images)
        return dataclasses.replace(out, summary=out.tokens[:, 0, 0].float() * 3 + 1)


@pytest.fixture(scope="module")
def effnet():
    return create_encoder("efficientnet-lite0")  # the bundled ImageNet weights


def test_summary_of_a_mean_pooled_encoder_comes_from_its_token_cache(tmp_path, effnet):
    demos = make_demos(lengths=(20, 6))
    tokens = get_or_build_cache(Counting(effnet), ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    enc = Counting(effnet)
    summary = get_or_build_cache(enc, ArrayDemoSource(demos), tmp_path, "summary", chunk_size=8, progress=False)
    assert enc.batches == [16]  # only the check on the first 16 frames ran the encoder
    derived = summary.manifest["derived_from"]
    assert derived["key_hash"] == tokens.manifest["key_hash"] and derived["checked_frames"] == 16
    fresh = np.concatenate([effnet(d["rgb"]).summary.float().numpy() for d in demos.values()])
    scale = np.abs(fresh).max()
    np.testing.assert_allclose(summary.embeddings.astype(np.float32), fresh, rtol=0, atol=2e-3 * scale)
    np.testing.assert_array_equal(summary.actions, tokens.actions)
    # reopened as an ordinary cache; derive=False in a fresh root encodes every frame
    again = get_or_build_cache(Counting(effnet), ArrayDemoSource(demos), tmp_path, "summary", progress=False)
    assert again.path == summary.path
    direct = Counting(effnet)
    plain = get_or_build_cache(direct, ArrayDemoSource(demos), tmp_path / "b", "summary", progress=False)
    assert sum(direct.batches) == 26 and "derived_from" not in plain.manifest


def test_summary_is_encoded_directly_when_it_is_not_the_mean_token(tmp_path, effnet, pixels):
    demos = make_demos(lengths=(20, 6))
    liar = PosingAsMean(effnet)
    get_or_build_cache(liar, ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    liar.batches.clear()
    cache = get_or_build_cache(liar, ArrayDemoSource(demos), tmp_path, "summary", progress=False)
    assert "derived_from" not in cache.manifest and sum(liar.batches) == 16 + 26  # check failed, then encoded
    fresh = np.concatenate([liar(d["rgb"]).summary.numpy() for d in demos.values()])
    np.testing.assert_allclose(cache.embeddings.astype(np.float32), fresh, rtol=1e-3, atol=1e-3)
    # pixels' summary is a pooled image, not its mean token: no derivation is tried
    pix = Counting(pixels)
    get_or_build_cache(pix, ArrayDemoSource(demos), tmp_path, "tokens", progress=False)
    pix.batches.clear()
    cache = get_or_build_cache(pix, ArrayDemoSource(demos), tmp_path, "summary", progress=False)
    assert sum(pix.batches) == 26 and "derived_from" not in cache.manifest
