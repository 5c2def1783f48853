"""`theia-eval distill` and `theia-eval frames`: the CLI verbs of the distillation package."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from omegaconf import DictConfig, OmegaConf

from theia_eval.config import compose, split_args, to_yaml
from theia_eval.errors import InputError


def run_dir_default(cfg: DictConfig) -> str:
    """runs/distill/<student>-<teachers>-<data>: the same command resumes the same run."""
    def tag(value) -> str:
        if isinstance(value, str):
            return value.replace("/", "_").replace(":", "_").strip("_.") or "x"
        text = json.dumps(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, sort_keys=True)
        return "custom-" + hashlib.sha1(text.encode()).hexdigest()[:8]

    return os.path.join("runs", "distill", f"{cfg.student}-{tag(cfg.teachers)}-{tag(cfg.data)}")


def ensure_frames(cfg: DictConfig, progress: bool) -> None:
    """Render the frame set that data=frames:SUITE names when it does not exist yet (single process only)."""
    from theia_eval.distill.frames import FrameSettings, render_frameset
    from theia_eval.distill.framesets import MANIFEST
    from theia_eval.distill.sources import frameset_dir

    data = cfg.data
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


def _distill_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="theia-eval distill",
        description="Distill a Theia student from a teacher set (cached or online targets, DDP under torchrun).",
        epilog="Config keys (key=value; see configs/distill.yaml): teachers=offline|cdiv|cddsv|[name,...] "
               "student=nano|deit-tiny|deit-small|deit-base data=PATH|frames:SUITE targets=cached|online "
               "train.steps=N train.batch_size=B run_dir=DIR device=auto|cpu|cuda. Per-teacher weights: "
               "+teacher_weights.NAME=PATH. Multi-GPU: torchrun --nproc_per_node N -m theia_eval.cli distill ...")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    return p


def distill(argv: list[str]) -> int:
    """Train a student; prints the summary (rank 0) and the export path."""
    from theia_eval.distill.train import run_distillation

    overrides, rest = split_args(argv)
    args = _distill_parser().parse_args(rest)
    cfg = compose("distill", overrides)
    if cfg.run_dir is None:
        cfg.run_dir = run_dir_default(cfg)
    if args.print_config:
        print(to_yaml(cfg))
        return 0
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
    return argparse.ArgumentParser(
        prog="theia-eval frames", description="Render a simulator frame set (RGB + depth + segmentation).",
        epilog="Config keys (key=value; see configs/frames.yaml): suite=metaworld num_frames=N "
               "cameras=[top_cap2,corner] resolution=224 preset=fast|full expert_fraction=0.6 out=DIR.")


def frames(argv: list[str]) -> int:
    """Render a frame set and print where it went."""
    from theia_eval.distill.frames import FrameSettings, render_frameset

    overrides, rest = split_args(argv)
    _frames_parser().parse_args(rest)
    cfg = compose("frames", overrides)
    report = render_frameset(FrameSettings(**OmegaConf.to_container(cfg, resolve=True)))
    print(f"rendered {report['frames']} frames ({report['episodes']} episodes, {report['ms_per_frame']} ms/frame) "
          f"to {report['path']}")
    return 0
