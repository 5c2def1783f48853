"""CLI verbs: `theia-eval frames` renders a deterministic frame set; `theia-eval distill` composes and fails cleanly."""
import numpy as np

from theia_eval.cli import main
from theia_eval.distill.framesets import read_manifest
from theia_eval.distill.sources import open_source


def render(out, *extra):
    return main(["frames", "tasks=[metaworld/drawer-open]", "num_frames=6", "cameras=[top_cap2,corner]",
                 "frames_per_episode=3", "frame_stride=5", "expert_fraction=1.0", f"out={out}", *extra])


def test_frames_verb_is_deterministic(tmp_path, capsys):
    assert render(tmp_path / "a") == 0 and render(tmp_path / "b") == 0
    assert "rendered 6 frames" in capsys.readouterr().out
    a, b = open_source(str(tmp_path / "a"), 224), open_source(str(tmp_path / "b"), 224)
    assert a.keys == b.keys and a.keys[2] == "metaworld/drawer-open/ep00000/t005/top_cap2"
    for i in range(len(a)):
        sa, sb = a.load(i), b.load(i)
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.extras["depth"], sb.extras["depth"])
    seg = np.stack([a.load(i).extras["segmentation"] for i in range(len(a))])
    assert {1, 2} <= set(np.unique(seg))  # table/world and robot are always in view
    manifest = read_manifest(tmp_path / "a")
    assert manifest["num_frames"] == 6 and manifest["settings"]["cameras"] == ["top_cap2", "corner"]


def test_frames_verb_unknown_camera(tmp_path, capsys):
    assert render(tmp_path / "c", "cameras=[nosuchcam]") == 2
    assert "unknown camera 'nosuchcam'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_distill_print_config_and_clean_errors(tmp_path, capsys):
    assert main(["distill", "teachers=cdiv", "student=deit-small", f"data={tmp_path}", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "teachers: cdiv" in out and "run_dir: runs/distill/deit-small-cdiv-" in out
    assert main(["distill", "teachers=offline", "student=nano", f"data={tmp_path}", f"run_dir={tmp_path / 'r'}",
                 "device=cpu"]) == 2
    assert "empty data source" in capsys.readouterr().err
    assert main(["distill", "student=deit-huge", f"data={tmp_path}", "device=cpu"]) == 2
    assert "unknown student 'deit-huge'" in capsys.readouterr().err


def test_distill_verb_renders_missing_frames_then_trains(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    code = main(["distill", "teachers=[sim-depth,sim-segmentation]", "student=nano", "data=frames:metaworld",
                 "frames.num_frames=12", "frames.tasks=[metaworld/drawer-open]", "frames.cameras=[top_cap2]",
                 f"run_dir={run}", "device=cpu", "train.steps=2", "train.batch_size=4", "train.num_workers=0",
                 "train.progress=false", "val_fraction=0.2", "shard_size=8"])
    assert code == 0
    out = capsys.readouterr().out
    assert "distilled nano" in out and "cache sim-depth: 8.0 KiB per image" in out
    assert (data_root / "frames" / "metaworld" / "frameset.json").is_file()
    assert (run / "export" / "model.safetensors").is_file() and (run / "summary.json").is_file()
