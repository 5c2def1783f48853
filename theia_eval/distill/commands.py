"""`theia-eval distill` and `theia-eval frames`: the CLI verbs of the distillation package."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from omegaconf import DictConfig, OmegaConf

from theia_eval.config import compose, to_yaml
from theia_eval.errors import InputError
from theia_eval.verbs import parse_words, verb_config, verb_parser


def run_dir_default(cfg: DictConfig) -> str:
    """runs/distill/<student>-<teachers>-<data>: the same command resumes the same run."""
    def tag(value) -> str:
        if isinstance(value, str):
            return value.replace("/", "_").replace(":", "_").strip("_.") or "x"
        text = json.dumps(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, sort_keys=True)
        return "custom-" + hashlib.sha1(text.encode()).hexdigest()[:8]

    return os.path.join("runs", "distill", f"{cfg.student}-{tag(cfg.teachers)}-{tag(cfg.data)}")


def ensure_frames(cfg: DictConfig, progress: bool) -> None:
    """Render the frame sets that data=frames:SUITE (or a list holding such specs) names when they do not
    exist yet (single process only)."""
    data = cfg.data
    for spec in (data if OmegaConf.is_list(data) or isinstance(data, list) else [data]):
        ensure_frameset(cfg, spec, progress)


def ensure_frameset(cfg: DictConfig, data, progress: bool) -> None:
    from theia_eval.distill.frames import FrameSettings, render_frameset
    from theia_eval.distill.framesets import MANIFEST
    from theia_eval.distill.sources import frameset_dir

    if not isinstance(data, str) or not data.startswith("frames:") or "/" in data:
        return
    suite = data.split(":", 1)[1]
    if (frameset_dir(suite) / MANIFEST).is_file():
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(f"no frame set for {data}; render it once before a multi-process run: "
                         f"`theia-eval frames suite={suite}`.")
    settings = FrameSettings(**{**OmegaConf.to_container(cfg.frames, resolve=True), "suite": suite, "out": None})
    print(f"rendering the {suite} frame set ({settings.num_frames} frames) to {settings.out_dir()} ...", file=sys.stderr)
    render_frameset(settings, progress)


# settings that may change when a run resumes (they do not change the student it trains)
RESUMABLE = frozenset({"run_dir", "device", "resume", "cache_dir", "extract_batch", "threads", "export", "frames",
                       "train.progress", "train.num_workers", "train.log_every", "train.tensorboard", "train.stop_at",
                       "train.export_at", "train.val_every", "train.ckpt_every", "train.compile", "train.attention"})


def check_run_dir(cfg: DictConfig) -> None:
    """A run directory that holds a run with other settings is refused (resume=true): its checkpoint, export and
    logs belong to those settings."""
    from pathlib import Path

    from theia_eval.config import config_changes, load_config_file

    stored = Path(cfg.run_dir).expanduser() / "config.yaml"
    if not cfg.resume or not stored.is_file():
        return
    changes = config_changes(load_config_file(stored, "the run config"), OmegaConf.to_container(cfg, resolve=True),
                             RESUMABLE, frozenset({"teacher_weights"}))
    if changes:
        state = "a finished run" if (stored.parent / "summary.json").is_file() else "a started run"
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:8])
        raise InputError(f"run_dir {stored.parent} holds {state} with other settings ({listed}). Use a new "
                         "run_dir=DIR, or resume=false to train it again from scratch (its checkpoint and export "
                         "are replaced).")


def _distill_parser() -> argparse.ArgumentParser:
    p = verb_parser("distill", "Distill a Theia student from a teacher set (cached or online targets, DDP under "
                    "torchrun).", "Per-teacher weights: +teacher_weights.NAME=PATH. Multi-GPU: torchrun "
                    "--nproc_per_node N -m theia_eval.cli distill ... The frames.* keys (rendering a missing "
                    "frames:SUITE set) are those of `theia-eval frames --help`.")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    return p


def distill(argv: list[str]) -> int:
    """Train a student; prints the summary (rank 0) and the export path."""
    from theia_eval.distill.train import run_distillation

    args, cfg = verb_config(_distill_parser(), argv, "distill")
    if cfg.run_dir is None:
        cfg.run_dir = run_dir_default(cfg)
    if args.print_config:
        print(to_yaml(cfg))
        return 0
    check_run_dir(cfg)
    ensure_frames(cfg, bool(cfg.train.progress))
    summary = run_distillation(cfg, command=" ".join(["theia-eval", "distill", *argv]))
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    lines = [f"distilled {s['student']} ({s['params_m']} M) on {s['data']}: {s['steps']} steps, batch {s['batch_size']}, "
             f"{s['wall_s']} s", f"run dir: {s['run_dir']}"]
    if s.get("export"):
        lines.append(f"export: {s['export']}  (create_encoder('theia', weights='{s['run_dir']}'))")
    val = s.get("val") or {}
    for t in s["teachers"]:
        v = val.get(t["id"], {})
        fit = f"held-out cos {v['cos']:.4f}  mse {v['mse']:.4f}" if v else "no held-out images"
        lines.append(f"  {t['id']:<40} {t['grid'][0]}x{t['grid'][1]}x{t['dim']:<6} {fit}")
    for tid, c in (s.get("cache") or {}).get("teachers", {}).items():
        lines.append(f"  cache {tid}: {c['bytes_per_image'] / 1024:.1f} KiB per image ({c['dir']})")
    return "\n".join(lines)


def _frames_parser() -> argparse.ArgumentParser:
    return verb_parser("frames", "Render a simulator frame set (RGB + depth + segmentation).",
                       "Videos: video=FILE|DIR every=N shard_size=M resolution=224 out=DIR (webdataset tar shards "
                       "for data=tar:DIR).")


def frames(argv: list[str]) -> int:
    """Render a frame set and print where it went."""
    from theia_eval.distill.frames import FrameSettings, render_frameset

    _, overrides = parse_words(_frames_parser(), argv)
    video, overrides = take_words(overrides, ("video", "every"))
    cfg = compose("frames", overrides)
    if video:
        return video_frames_command(video, OmegaConf.to_container(cfg, resolve=True))
    report = render_frameset(FrameSettings(**OmegaConf.to_container(cfg, resolve=True)))
    print(f"rendered {report['frames']} frames ({report['episodes']} episodes, {report['ms_per_frame']} ms/frame) "
          f"to {report['path']}")
    return 0


def take_words(overrides: list[str], keys: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Pull `key=value` words for `keys` out of the overrides (options of the verb, not of frames.yaml)."""
    found, rest = {}, []
    for word in overrides:
        key, sep, value = word.partition("=")
        if sep and key in keys:
            found[key] = value
        else:
            rest.append(word)
    if "every" in found and "video" not in found:
        raise InputError("every= applies to videos only; pass video=FILE|DIR with it.")
    return found, rest


def video_frames_command(video: dict[str, str], values: dict) -> int:
    """`frames video=... every=N`: every N-th frame of each video to webdataset tar shards (distill data=tar:DIR)."""
    from pathlib import Path

    from theia_eval.distill.sources import data_root
    from theia_eval.distill.video import VideoFrameSettings, video_frames

    try:
        every = int(video.get("every", VideoFrameSettings.every))
    except ValueError as exc:
        raise InputError(f"every={video['every']} is not an integer; pass every=N (keep every N-th frame).") from exc
    out = values.get("out") or data_root() / "video-frames" / Path(video["video"]).stem
    settings = VideoFrameSettings(every=every, shard_size=int(values["shard_size"]),
                                  resolution=int(values["resolution"]))
    s = video_frames(video["video"], out, settings)
    print(f"{s['frames']} frames of {s['videos']} video(s) ({s['skipped']} already done) in {s['shards']} shard(s) "
          f"at {settings.resolution}x{settings.resolution} to {s['out']}  (distill data=tar:{s['out']})")
    return 0
