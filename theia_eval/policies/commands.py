"""CLI verbs `embed`, `train` and `evaluate`: cache embeddings, behaviour-clone a head, evaluate in simulation.

A run directory (<out_dir>/<task>/<encoder>/<head>/seed<seed>) holds config.yaml (the resolved config and
the command), last.pt / best.pt, eval/epoch_NNN.json (eval_info of every evaluation), metrics.json
(best- and last-checkpoint success, both labelled) and optional videos/.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from theia_eval.config import compose, split_args
from theia_eval.encoders import create_encoder
from theia_eval.encoders.base import FrozenEncoder
from theia_eval.envs.dataset import open_demos
from theia_eval.envs.demos import demo_path
from theia_eval.envs.tasks import TaskSpec, get_task, resolve_tasks
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json, atomic_write_text
from theia_eval.policies.bc import BCConfig, WindowDataset, load_policy, train_bc
from theia_eval.policies.cache import HDF5DemoSource, get_or_build_cache
from theia_eval.policies.evaluate import EvalConfig, eval_render_spec, evaluate_policy
from theia_eval.policies.heads import head_input_kind


def demo_file(cfg: DictConfig, spec: TaskSpec) -> Path:
    """The demo file of a task: cfg.demos when given, else <demos_dir>/<family>/<task>.hdf5."""
    path = Path(cfg.demos) if cfg.get("demos") else demo_path(cfg.demos_dir, spec)
    if not path.is_file():
        raise InputError(f"no demos for {spec.name} at {path}: record them with "
                         f"`theia-eval demos task={spec.name}` or pass demos=PATH.")
    return path


def run_dir(cfg: DictConfig, spec: TaskSpec) -> Path:
    return Path(cfg.out_dir) / spec.name.replace("/", "_") / cfg.encoder / cfg.head / f"seed{cfg.seed}"


def load_encoder(cfg: DictConfig) -> FrozenEncoder:
    return create_encoder(cfg.encoder, weights=cfg.get("weights"), device=cfg.device)


def write_videos(folder: Path, videos: list, fps: int = 30) -> list[str]:
    """Write (seed, frames) pairs as mp4 files (atomic); returns the file names."""
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for seed, frames in videos:
        path = folder / f"seed{seed}.mp4"
        tmp = folder / f".seed{seed}.tmp.mp4"
        iio.imwrite(tmp, frames, fps=fps, codec="libx264")
        tmp.replace(path)
        names.append(path.name)
    return names


def save_eval(info: dict, path: Path) -> dict:
    """Write eval_info JSON (videos go to mp4 files beside it) and return the aggregate."""
    videos = info.pop("videos", [])
    if videos:
        info["video_files"] = write_videos(path.parent / "videos" / path.stem, videos)
    atomic_write_json(path, info)
    return info["aggregate"]


def make_eval_fn(encoder: FrozenEncoder, spec: TaskSpec, ecfg: EvalConfig, render, kind: str, bc: BCConfig,
                 out: Path):
    """The per-epoch evaluation callback train_bc calls: simulate, write eval/epoch_NNN.json, report success."""

    def eval_fn(policy, epoch: int) -> dict[str, float]:
        info = evaluate_policy(policy, encoder, spec.name, ecfg, render, kind, bc.history, bc.fusion)
        agg = save_eval(info, out / "eval" / f"epoch_{epoch:03d}.json")
        return {"success": agg["success_rate"], "mean_return": agg["mean_return"]}

    return eval_fn


def summarize(history: list[dict], best: dict | None, out: Path) -> dict:
    """metrics.json: the best-checkpoint score (max over evaluations) and the last-checkpoint score, labelled."""
    evals = [row for row in history if "success" in row]
    if not evals:
        raise InputError(f"run {out} has no evaluation; set bc.eval_every <= bc.epochs.")
    last = evals[-1]
    return {"best_checkpoint": {"epoch": best["epoch"], "success": best["value"]} if best else None,
            "last_checkpoint": {"epoch": last["epoch"], "success": last["success"]},
            "note": "best_checkpoint = max over evaluations during training (the CortexBench protocol, "
                    "optimistic); last_checkpoint = the final epoch's evaluation",
            "history": history}


def train_task(cfg: DictConfig, spec: TaskSpec, encoder: FrozenEncoder) -> dict:
    """Cache embeddings, train with periodic evaluation, write the run directory; returns metrics."""
    out = run_dir(cfg, spec)
    bc = BCConfig(head=cfg.head, seed=int(cfg.seed), device=cfg.device, **OmegaConf.to_container(cfg.bc))
    kind = head_input_kind(cfg.head)
    path = demo_file(cfg, spec)
    with open_demos(path) as demos:
        demo_render = demos.meta.render
    ecfg = EvalConfig(**OmegaConf.to_container(cfg.eval))
    render = eval_render_spec(ecfg, demo_render, force=bool(cfg.force))
    out.mkdir(parents=True, exist_ok=True)
    run_cfg = OmegaConf.merge(cfg, {"task": spec.name, "suite": None, "demos": str(path)})
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(run_cfg) + f"# command: {shlex.join(sys.argv)}\n")
    t0 = time.perf_counter()
    with HDF5DemoSource(path, split=cfg.get("split")) as source:
        cache = get_or_build_cache(encoder, source, cfg.cache_dir, kind, progress=bc.progress)
    data = WindowDataset.from_cache(cache, bc.history, bc.fusion)
    t1 = time.perf_counter()
    result = train_bc(data, bc, out, make_eval_fn(encoder, spec, ecfg, render, kind, bc, out))
    metrics = summarize(result.history, result.best, out)
    metrics.update(task=spec.name, encoder=encoder.name, weights=encoder.weights_id, head=cfg.head,
                   seed=int(cfg.seed), demos=str(path), frames=len(data), embed_s=t1 - t0,
                   train_and_eval_s=time.perf_counter() - t1, render=render.as_dict())
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def apply_threads(cfg) -> None:
    """`threads=N`: torch CPU threads for this process (null keeps torch's default)."""
    if cfg.get("threads") is None:
        return
    if int(cfg.threads) < 1:
        raise InputError(f"threads must be >= 1 (or null for torch's default), got {cfg.threads}.")
    import torch

    torch.set_num_threads(int(cfg.threads))


def train(argv: list[str]) -> int:
    """`theia-eval train encoder=NAME task=TASK head=conv seed=100` (or suite=...)."""
    overrides, rest = split_args(argv)
    argparse.ArgumentParser(prog="theia-eval train", description=train.__doc__ + "\n\n" + __doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="Config keys: configs/train.yaml (bc.*, eval.* included).").parse_args(rest)
    cfg = compose("train", overrides)
    apply_threads(cfg)
    specs = resolve_tasks(cfg.suite, cfg.task)
    head_input_kind(cfg.head)  # unknown head names fail before any work
    encoder = load_encoder(cfg)
    for spec in specs:
        m = train_task(cfg, spec, encoder)
        best = m["best_checkpoint"]
        print(f"{spec.name} {cfg.encoder} {cfg.head} seed {cfg.seed}: last-checkpoint success "
              f"{m['last_checkpoint']['success']:.2f} (epoch {m['last_checkpoint']['epoch']}), best-checkpoint "
              f"{best['success']:.2f} (epoch {best['epoch']}) -> {run_dir(cfg, spec)}")
    return 0


def embed(argv: list[str]) -> int:
    """`theia-eval embed encoder=NAME demos=FILE` (or task=/suite=): build the embedding cache explicitly."""
    overrides, rest = split_args(argv)
    argparse.ArgumentParser(prog="theia-eval embed", description=embed.__doc__,
                            epilog="Config keys: configs/embed.yaml").parse_args(rest)
    cfg = compose("embed", overrides)
    apply_threads(cfg)
    if cfg.kind not in ("tokens", "summary"):
        raise InputError(f"kind must be tokens or summary, got '{cfg.kind}'.")
    paths = [Path(cfg.demos)] if cfg.demos else [demo_file(cfg, s) for s in resolve_tasks(cfg.suite, cfg.task)]
    encoder = load_encoder(cfg)
    for path in paths:
        with HDF5DemoSource(path) as source:
            cache = get_or_build_cache(encoder, source, cfg.cache_dir, cfg.kind, chunk_size=int(cfg.chunk_size),
                                       rebuild=bool(cfg.rebuild))
        print(f"{path}: {cache.num_frames} frames x {cache.frame_shape} float16 -> {cache.path}")
    return 0


def evaluate(argv: list[str]) -> int:
    """`theia-eval evaluate run=DIR [checkpoint=best|last] [episodes=25]`: re-evaluate a trained run."""
    overrides, rest = split_args(argv)
    argparse.ArgumentParser(prog="theia-eval evaluate", description=evaluate.__doc__,
                            epilog="Config keys: configs/evaluate.yaml").parse_args(rest)
    cfg = compose("evaluate", overrides)
    apply_threads(cfg)
    if not cfg.run or not (Path(cfg.run) / "config.yaml").is_file():
        raise InputError(f"run={cfg.run!r} is not a run directory (no config.yaml); pass run=DIR from `theia-eval train`.")
    if cfg.checkpoint not in ("best", "last"):
        raise InputError(f"checkpoint must be best or last, got '{cfg.checkpoint}'.")
    run = Path(cfg.run)
    ckpt = run / f"{cfg.checkpoint}.pt"
    if not ckpt.is_file():
        raise InputError(f"{ckpt} does not exist; the run has not finished an evaluation yet (try checkpoint=last).")
    rcfg = OmegaConf.load(run / "config.yaml")
    spec = get_task(rcfg.task)
    policy = load_policy(ckpt, device=cfg.device)
    rcfg.device = cfg.device
    encoder = load_encoder(rcfg)
    with open_demos(demo_file(rcfg, spec)) as demos:
        demo_render = demos.meta.render
    ecfg = EvalConfig(**{**OmegaConf.to_container(rcfg.eval), "episodes": int(cfg.episodes),
                         "base_seed": int(cfg.base_seed), "num_envs": int(cfg.num_envs), "groups": int(cfg.groups),
                         "video": bool(cfg.video), "progress": bool(cfg.progress)})
    render = eval_render_spec(ecfg, demo_render, force=bool(cfg.force))
    info = evaluate_policy(policy, encoder, spec.name, ecfg, render, head_input_kind(rcfg.head),
                           int(rcfg.bc.history), rcfg.bc.fusion)
    info["checkpoint"] = cfg.checkpoint
    agg = save_eval(info, run / f"eval_info_{cfg.checkpoint}.json")
    lo, hi = agg["success_ci95"]
    print(f"{spec.name} {cfg.checkpoint}: success {agg['successes']}/{agg['episodes']} = {agg['success_rate']:.2f} "
          f"(95% CI {lo:.2f}-{hi:.2f}), {agg['episodes_per_s']:.2f} episodes/s -> {run}/eval_info_{cfg.checkpoint}.json")
    return 0

