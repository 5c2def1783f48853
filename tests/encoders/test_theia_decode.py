"""Decoding teacher predictions: PCA, simulator depth / segmentation (exact inverses, fidelity), ImageNet top-5 from
efficientnet-lite0's own classifier, SAM masks and Depth-Anything depth on random-weight fixtures in the upstream
(transformers save_pretrained) formats, clear errors without weights, and the `decode` verb on an image, a video
and a frame source with depth / segmentation."""
from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from theia_student_helpers import export_tiny, tiny_stats, tiny_student, uint8_images

from theia_eval.cli import main
from theia_eval.decoding.decoders import (
    DecodeSettings,
    DepthAnythingDecoder,
    ImageNetTopKDecoder,
    PCABasis,
    PCADecoder,
    SamMaskDecoder,
    TeacherInfo,
    decoder_for,
    depth_anything_depth,
    mask_boxes,
)
from theia_eval.decoding.fidelity import Fidelity
from theia_eval.distill.samples import Batch
from theia_eval.distill.sim_teachers import SimDepthTeacher, SimSegmentationTeacher
from theia_eval.distill.teachers import TeacherSpec
from theia_eval.errors import InputError, WeightsNotFoundError

SAM = TeacherInfo("facebook/sam-vit-huge", "sam-vit-h", (64, 64), 16)
DEPTH = TeacherInfo("LiheYoung/depth-anything-large-hf", "depth-anything-l", (64, 64), 8)
DECODE_TARGETS = {"facebook/sam-vit-huge": (16, 64, 64), "LiheYoung/depth-anything-large-hf": (8, 64, 64),
                  "facebook/dinov2-large": (24, 16, 16), "efficientnet-lite0": (1280, 7, 7),
                  "sim-depth": (16, 16, 16), "sim-segmentation": (4, 16, 16)}
DECODE_NAMES = {"facebook/sam-vit-huge": "sam-vit-h", "LiheYoung/depth-anything-large-hf": "depth-anything-l",
                "facebook/dinov2-large": "dinov2-vit-l14"}


@pytest.fixture(scope="module")
def hub_fixtures(tmp_path_factory):
    """Random-weight SAM and Depth-Anything in their transformers save_pretrained formats."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, SamConfig, SamModel

    root = tmp_path_factory.mktemp("hub")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sam = SamModel(SamConfig(
            vision_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, mlp_dim=32,
                               output_channels=16, global_attn_indexes=[0], window_size=4, num_pos_feats=8),
            prompt_encoder_config=dict(hidden_size=16, mask_input_channels=4),
            mask_decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                     iou_head_hidden_dim=16)))
        with torch.no_grad():  # fresh SAM heads output near-zero logits: spread them so masks appear
            for name, p in sam.named_parameters():
                if not name.startswith("vision_encoder"):
                    p.add_(0.3 * torch.randn_like(p))
        sam.save_pretrained(root / "sam")
        DepthAnythingForDepthEstimation(DepthAnythingConfig(
            backbone_config={"model_type": "dinov2", "hidden_size": 32, "num_hidden_layers": 4,
                             "num_attention_heads": 2, "image_size": 56, "patch_size": 14, "out_indices": [1, 2, 3, 4],
                             "reshape_hidden_states": False},
            reassemble_hidden_size=32, neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16, head_hidden_size=8,
            patch_size=14)).save_pretrained(root / "depth")
    return {"sam-vit-h": str(root / "sam"), "depth-anything-l": str(root / "depth")}


def smooth_depth_and_labels(n: int = 2, size: int = 224, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    depth = F.interpolate(0.5 + 2 * torch.rand(n, 1, 8, 8, generator=g), size=(size, size), mode="bilinear")[:, 0]
    labels = F.interpolate(torch.randint(0, 4, (n, 1, 6, 6), generator=g).float(), size=(size, size),
                           mode="nearest")[:, 0].long()
    return depth, labels


def test_sim_decoders_invert_their_teachers_and_fidelity_is_exact():
    depth, labels = smooth_depth_and_labels()
    batch = Batch(["a", "b"], torch.zeros(2, 3, 224, 224, dtype=torch.uint8), {"depth": depth, "segmentation": labels})
    depth_t = SimDepthTeacher(TeacherSpec("sim-depth")).compute(batch)  # (2, 16, 16, 16): the exact targets
    seg_t = SimSegmentationTeacher(TeacherSpec("sim-segmentation")).compute(batch)
    fidelity = Fidelity({"sim-depth": "sim-depth", "sim-segmentation": "sim-segmentation"}, 224)
    fidelity.add({"sim-depth": depth_t, "sim-segmentation": seg_t}, batch.extras)
    s = fidelity.summary()
    assert s["depth"]["sim-depth"]["abs_rel"] == 0.0 and s["depth"]["sim-depth"]["delta1"] == 1.0
    assert s["segmentation"]["sim-segmentation"]["miou"] == s["segmentation"]["sim-segmentation"]["ceiling_miou"]
    shifted = Fidelity({"d": "sim-depth"}, 224)
    shifted.add({"d": depth_t * 1.1}, batch.extras)
    assert shifted.summary()["depth"]["d"]["abs_rel"] == pytest.approx(0.1, abs=1e-4)
    settings = DecodeSettings()
    panels = decoder_for(TeacherInfo("sim-depth", "sim-depth", (16, 16), 16), settings).panels(
        depth_t, batch.images, batch.extras)
    assert [p.title for p in panels[0]] == ["sim-depth: depth", "simulator depth"]
    assert np.array_equal(panels[0][0].image, panels[0][1].image)  # exact targets decode to the truth picture
    seg_panels = decoder_for(TeacherInfo("sim-segmentation", "sim-segmentation", (16, 16), 4), settings).panels(
        seg_t, batch.images, batch.extras)
    assert seg_panels[1][0].image.shape == (224, 224, 3) and "robot=orange" in seg_panels[1][0].caption[0]


def test_pca_colours_stay_fixed_within_a_media_item():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 4, 4, 10, generator=g)
    dec = PCADecoder(TeacherInfo("t", "t", (4, 4), 10), DecodeSettings(size=8))
    first = dec.pca_images(feats)
    assert first.shape == (2, 8, 8, 3) and first.min() == 0 and first.max() == 255
    assert np.array_equal(dec.pca_images(feats[1:]), first[1:])  # the same basis for later frames
    dec.reset()
    assert not np.array_equal(dec.pca_images(feats[1:]), first[1:])  # refitted on the new item
    basis = PCABasis.fit(feats.reshape(-1, 10))
    assert torch.allclose(basis.components.T @ basis.components, torch.eye(3, dtype=torch.float64), atol=1e-8)


def test_imagenet_top5_comes_from_efficientnets_own_classifier():
    from theia_eval.encoders import create_encoder

    enc = create_encoder("efficientnet-lite0")
    imgs = uint8_images(seed=3)
    tokens = enc(imgs).tokens  # the teacher's true features: top-5 must equal its own classification
    dec = decoder_for(TeacherInfo("efficientnet-lite0", "efficientnet-lite0", (7, 7), 1280), DecodeSettings())
    assert isinstance(dec, ImageNetTopKDecoder)
    probs = enc.classify(imgs).softmax(-1)
    for top, p in zip(dec.top_k(tokens), probs):
        assert [label for label, _ in top] == [dec.labels[int(i)] for i in p.topk(5).indices]
        assert top[0][1] == pytest.approx(float(p.max()), rel=1e-4)
    panel = dec.decode(tokens, torch.zeros(2, 3, 224, 224, dtype=torch.uint8))[0]
    assert len(panel.caption) == 5 and panel.image.shape == (224, 224, 3)


def test_sam_masks_from_predicted_embeddings_on_a_random_fixture(hub_fixtures):
    settings = DecodeSettings(decoder_weights=hub_fixtures, sam={"pred_iou_thresh": -1e9, "stability_score_thresh": 0.0,
                                                                   "stability_offset": 0.1, "points_per_side": 4,
                                                                   "min_area": 1})
    dec = decoder_for(SAM, settings)
    assert isinstance(dec, SamMaskDecoder) and dec.model.vision_encoder is None
    emb = torch.randn(16, 64, 64, generator=torch.Generator().manual_seed(1))
    masks, scores = dec.masks(emb)
    assert masks.dtype == torch.bool and masks.shape[1:] == (224, 224) and 0 < len(masks) <= 3 * 16
    areas = masks.sum((1, 2))
    assert torch.all(areas[:-1] >= areas[1:])  # largest first
    from torchvision.ops import box_iou

    iou = box_iou(mask_boxes(masks), mask_boxes(masks)).fill_diagonal_(0)
    assert float(iou.max()) <= 0.7 + 1e-6  # box NMS as SAM's automatic mask generator
    with torch.no_grad():  # each kept mask is SAM's own decoder output for one grid point, thresholded at 0
        out = dec.model(image_embeddings=emb[None], input_points=torch.tensor([[[[128.0, 128.0]]]]),
                        input_labels=torch.ones(1, 1, 1, dtype=torch.long), multimask_output=True)
    assert out.pred_masks.shape == (1, 1, 3, 256, 256)
    panel = dec.decode(emb.permute(1, 2, 0)[None], torch.zeros(1, 3, 224, 224, dtype=torch.uint8))[0]
    assert panel.image.shape == (224, 224, 3) and panel.caption == (f"{len(masks)} masks",)


def test_depth_anything_head_decodes_predicted_head_features(hub_fixtures):
    dec = decoder_for(DEPTH, DecodeSettings(decoder_weights=hub_fixtures))
    assert isinstance(dec, DepthAnythingDecoder)
    feats = torch.randn(2, 64, 64, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        depth = depth_anything_depth(feats, dec.head, 224)
        manual = dec.head.conv3(F.relu(F.interpolate(feats.permute(0, 3, 1, 2), size=(224, 224))))
        manual = F.relu(manual)[:, 0]
    lo, hi = manual.flatten(1).amin(1), manual.flatten(1).amax(1)
    torch.testing.assert_close(depth, (manual - lo[:, None, None]) / (hi - lo)[:, None, None], atol=1e-5, rtol=1e-5)
    assert dec.decode(feats, torch.zeros(2, 3, 224, 224, dtype=torch.uint8))[1].image.shape == (224, 224, 3)


def test_hub_decoders_without_weights_raise_or_fall_back_to_pca(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"\+decoder_weights.sam-vit-h=PATH"):
        decoder_for(SAM, DecodeSettings(decoder_weights={"sam-vit-h": str(tmp_path / "none")}))
    assert type(decoder_for(DEPTH, DecodeSettings(decoder_weights={"depth-anything-l": str(tmp_path / "none")}),
                            on_missing_weights="pca")) is PCADecoder
    assert type(decoder_for(TeacherInfo("facebook/dinov2-large", "facebook/dinov2-large", (16, 16), 24),
                            DecodeSettings())) is PCADecoder  # DINOv2: PCA colours, needs no weights


@pytest.fixture(scope="module")
def decode_export(tmp_path_factory):
    student = tiny_student(DECODE_TARGETS, seed=2)
    return export_tiny(tmp_path_factory.mktemp("decode") / "export", student, tiny_stats(DECODE_TARGETS),
                       names=DECODE_NAMES)


def frame_tar(path, n: int = 3):
    """A webdataset shard of frames with depth and segmentation extras (what a frame source carries)."""
    depth, labels = smooth_depth_and_labels(n, seed=4)
    images = uint8_images(n=n, seed=4)
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            png = io.BytesIO()
            Image.fromarray(images[i]).save(png, format="PNG")
            members = {f"f{i}.png": png.getvalue()}
            extras = {"depth": depth[i].numpy().astype(np.float16), "segmentation": labels[i].numpy().astype(np.uint8)}
            for name, arr in extras.items():
                buf = io.BytesIO()
                np.save(buf, arr)
                members[f"f{i}.{name}.npy"] = buf.getvalue()
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_decode_verb_on_image_video_and_frames(decode_export, hub_fixtures, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as iio

    weights = [f"+decoder_weights.{k}={v}" for k, v in hub_fixtures.items()]
    Image.fromarray(uint8_images(n=1, h=120, w=160)[0]).save(tmp_path / "photo.png")
    assert main(["decode", f"model={decode_export}", f"media={tmp_path / 'photo.png'}", f"out={tmp_path / 'o1'}",
                 *weights]) == 0
    row = np.asarray(Image.open(tmp_path / "o1" / "photo.png"))
    assert row.shape[1] == 7 * 224 + 6 * 4  # input + one panel per teacher

    writer = iio.get_writer(str(tmp_path / "clip.mp4"), fps=8, codec="libx264", macro_block_size=16,
                            ffmpeg_log_level="error")
    for f in uint8_images(n=5, h=64, w=80, seed=5):
        writer.append_data(f)
    writer.close()
    assert main(["decode", f"model={decode_export}", f"media={tmp_path / 'clip.mp4'}", f"out={tmp_path / 'o2'}",
                 "every=2", "teachers=[facebook/dinov2-large,sim-depth]"]) == 0
    with iio.get_reader(str(tmp_path / "o2" / "clip.mp4"), "ffmpeg") as reader:
        frames = [f for f in reader]
    assert len(frames) == 3 and (tmp_path / "o2" / "clip.png").is_file()
    record = json.loads((tmp_path / "o2" / "decode.json").read_text())["records"][0]
    assert record["frames"] == 3 and record["fps"] == pytest.approx(4.0)

    shards = tmp_path / "shards"
    shards.mkdir()
    frame_tar(shards / "frames-000000.tar")
    assert main(["decode", f"model={decode_export}", f"media=tar:{shards}", f"out={tmp_path / 'o3'}",
                 "teachers=[sim-depth,sim-segmentation]", "max_images=2"]) == 0
    fidelity = json.loads((tmp_path / "o3" / "fidelity.json").read_text())
    assert fidelity["images"] == 3 and set(fidelity["depth"]) == {"sim-depth"}
    assert 0.0 <= fidelity["segmentation"]["sim-segmentation"]["miou"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "o3").glob("f*.png")) == ["f0.png", "f1.png"]
    assert np.asarray(Image.open(tmp_path / "o3" / "f0.png")).shape[1] == 5 * 224 + 4 * 4  # + truth panels
    assert "segmentation mIoU" in capsys.readouterr().out


def test_decode_verb_errors(decode_export, tmp_path, capsys):
    assert main(["decode", f"model={decode_export}"]) == 2
    assert "media= is required" in capsys.readouterr().err
    Image.fromarray(uint8_images(n=1)[0]).save(tmp_path / "x.png")
    assert main(["decode", f"model={decode_export}", f"media={tmp_path / 'x.png'}", "teachers=[clip]"]) == 2
    assert "not predicted by this student" in capsys.readouterr().err
    assert main(["decode", f"model={decode_export}", f"media={tmp_path / 'missing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(InputError, match="on_missing_weights"):
        decoder_for(SAM, DecodeSettings(), on_missing_weights="ignore")


@pytest.mark.parametrize("setting, message", [
    ("every=0", "every=0 is not allowed: every must be an integer >= 1"),
    ("batch_size=0", "batch_size=0 is not allowed"),
    ("fps=-1", "fps=-1 is not allowed: fps must be a number > 0"),
    ("max_images=-3", "max_images=-3 is not allowed"),
    ("on_missing_weights=ignore", "on_missing_weights='ignore' .*must be one of error, pca"),
    ("sam.box_nms_thresh=2", "sam.box_nms_thresh=2 is not allowed"),
])
def test_decode_settings_are_checked_before_any_work(decode_export, tmp_path, capsys, setting, message):
    Image.fromarray(uint8_images(n=1)[0]).save(tmp_path / "x.png")
    out = tmp_path / "out"
    assert main(["decode", f"model={decode_export}", f"media={tmp_path / 'x.png'}", f"out={out}", setting]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_decode_one_teacher_given_as_a_name_and_folder_media(decode_export, tmp_path):
    from theia_eval.decoding.decode import media_items

    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "sub/a.jpg"):
        Image.fromarray(uint8_images(n=1, h=48, w=64)[0]).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub" / "clip.webm").write_bytes(b"")
    items = media_items(str(folder))
    assert [(i.kind, i.name) for i in items] == [("image", "b"), ("image", "sub_a"), ("video", "sub_clip")]
    (folder / "sub" / "clip.webm").unlink()
    out = tmp_path / "out"
    assert main(["decode", f"model={decode_export}", f"media={folder}", f"out={out}", "teachers=sim-depth"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["b.png", "sub_a.png"]
    assert np.asarray(Image.open(out / "b.png")).shape[1] == 2 * 224 + 4  # the input, then sim-depth alone
    record = json.loads((out / "decode.json").read_text())
    assert [r["png"] for r in record["records"]] == [str(out / "b.png"), str(out / "sub_a.png")]
