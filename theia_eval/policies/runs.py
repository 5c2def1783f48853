"""A behaviour-cloning run directory and the training of one task into it (used by `theia-eval train` and the
sweep's train stage).

A run directory (<out_dir>/<task>/<encoder>/<head>/seed<seed>, '/' in names made '_') holds config.yaml (the
resolved config and the command), last.pt / best.pt, eval/epoch_NNN.json (eval_info of every evaluation),
metrics.json (best- and last-checkpoint success, both labelled) and optional videos/. Before any work the demo
file is checked against the task it is used for (task, suite, camera, render settings) and a run directory's
stored config.yaml against the new settings (a finished or started run with other settings is refused: use a new
out_dir, or force=true to discard it and train again), as are checkpoints against the run they are resumed into
or evaluated for.
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from theia_eval.config import config_changes, load_config_file
from theia_eval.encoder_entry import folder_name
from theia_eval.errors import InputError
from theia_eval.provenance import portable

if TYPE_CHECKING:
    from theia_eval.encoders.base import FrozenEncoder
    from theia_eval.envs.dataset import DatasetMeta
    from theia_eval.envs.tasks import TaskSpec
    from theia_eval.policies.bc import BCConfig
    from theia_eval.policies.evaluate import EvalConfig


# Settings that may change between a run and its resume or re-run (they do not change what is trained or
# measured): more epochs (training continues), display, parallelism, device and where inputs/caches live.
RUN_VOLATILE = frozenset({"bc.epochs", "bc.eval_every", "bc.progress", "eval.progress", "eval.video", "eval.video_episodes", "eval.num_envs",
                          "eval.groups", "device", "threads", "out_dir", "cache_dir", "demos_dir", "demos", "suite",
                          "force"})
# free-form mappings compared as one value (their keys are data, not options)
WHOLE_VALUES = frozenset({"bc.head_config"})
# Files of a run that force=true discards before training again.
RUN_FILES = ("last.pt", "best.pt", "metrics.json", "rows.json", "eval", "videos", "config.yaml")


def demo_file(cfg: DictConfig, spec: TaskSpec) -> Path:
    """The demo file of a task: cfg.demos when given, else <demos_dir>/<family>/<task>.hdf5."""
    from theia_eval.envs.demos import demo_path

    path = Path(cfg.demos) if cfg.get("demos") else demo_path(cfg.demos_dir, spec)
    if not path.is_file():
        raise InputError(f"no demos for {spec.name} at {path}: record them with "
                         f"`theia-eval demos task={spec.name}` or pass demos=PATH.")
    return path


def check_demo_meta(meta: DatasetMeta, path: Path, spec: TaskSpec, force: bool = False) -> None:
    """The demo file holds demos of this task, of its suite, seen from the camera evaluation renders."""
    if meta.task != spec.name or meta.suite != spec.suite:
        raise InputError(f"{path} holds demos of {meta.task} (suite {meta.suite}), not of {spec.name} (suite "
                         f"{spec.suite}): pass the demo file of {spec.name} (demos=PATH), or task={meta.task}.")
    if meta.camera != spec.camera and not force:
        raise InputError(f"{path} was rendered from camera '{meta.camera}' but {spec.name} is evaluated from "
                         f"'{spec.camera}': policies must be evaluated on the images they were trained on. Collect "
                         "demos with the task's camera, or pass force=true to use them anyway.")


def read_demo_meta(path: Path, spec: TaskSpec, force: bool = False) -> DatasetMeta:
    """Open a demo file (structure and metadata checked) and check it belongs to `spec`."""
    from theia_eval.envs.dataset import open_demos

    with open_demos(path) as demos:
        meta = demos.meta
    check_demo_meta(meta, path, spec, force)
    return meta


def run_dir(cfg: DictConfig, spec: TaskSpec) -> Path:
    """<out_dir>/<task>/<encoder>/<head>/seed<seed>, each '/' of the task and encoder names made '_'."""
    return Path(cfg.out_dir) / spec.name.replace("/", "_") / folder_name(cfg.encoder) / cfg.head / f"seed{cfg.seed}"


def run_config(cfg: DictConfig, spec: TaskSpec, demos: Path) -> DictConfig:
    """The config a run directory stores (config.yaml): the verb's config for one task and demo file."""
    return OmegaConf.merge(cfg, {"task": spec.name, "suite": None, "demos": str(demos)})


def checkpoint_problem(path: Path, cfg: DictConfig, spec: TaskSpec) -> str | None:
    """Why the run's last.pt cannot be resumed with these settings (None when it can, as far as is known
    before the encoder loads: the head's input shapes are checked when training resumes)."""
    from theia_eval.errors import CheckpointMismatchError
    from theia_eval.policies.bc import config_differences, load_checkpoint
    from theia_eval.policies.heads import head_input_kind

    try:
        ckpt = load_checkpoint(path)
    except CheckpointMismatchError as exc:
        return str(exc)
    diff = config_differences(ckpt["config"], bc_config(cfg))
    run = ckpt.get("run") or {}
    for key, value in (("task", spec.name), ("encoder", cfg.encoder), ("kind", head_input_kind(cfg.head))):
        if key in run and run[key] != value:
            diff[key] = (run[key], value)
    if int(ckpt["epoch"]) > int(cfg.bc.epochs):
        diff["epochs done"] = (int(ckpt["epoch"]), int(cfg.bc.epochs))
    if diff:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        return f"{path} was trained with other settings or for another run ({listed})"
    return None


def check_run_dir(cfg: DictConfig, spec: TaskSpec, demos: Path) -> bool:
    """Whether the run directory must be started over (force=true and other settings); raises when it holds a
    run with other settings (config.yaml) or a checkpoint of another run (last.pt) and force is off. A new or
    matching directory returns False."""
    out = run_dir(cfg, spec)
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"the run directory {out} is a file: choose another out_dir.")
    stored_file, last = out / "config.yaml", out / "last.pt"
    problems = []
    if stored_file.is_file():
        try:
            stored = load_config_file(stored_file, "the run config")
        except InputError as exc:
            stored, reason = {}, str(exc).split(": it is damaged")[0]
            problems.append(f"{reason}: the run directory is damaged")
        changes = config_changes(stored, OmegaConf.to_container(run_config(cfg, spec, demos)), RUN_VOLATILE,
                                 WHOLE_VALUES)
        if changes:
            state = "a finished run" if (out / "metrics.json").is_file() else "a started run"
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:8])
            problems.append(f"{out} holds {state} with other settings ({listed}); its checkpoints and results "
                            "belong to those")
    elif last.exists() or (out / "metrics.json").exists():
        problems.append(f"{out} holds checkpoints or results but no config.yaml, so they cannot be matched to "
                        "these settings")
    if not problems and last.is_file():
        problem = checkpoint_problem(last, cfg, spec)
        problems += [problem] if problem else []
    if not problems:
        return False
    if cfg.force:
        return True
    raise InputError("; ".join(problems) + ". Use a new out_dir=DIR, or force=true to discard that run and train "
                     "again.")


def discard_run(out: Path) -> None:
    """Remove what a previous run wrote in `out` (force=true after a settings change)."""
    import shutil

    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in out.glob("eval_info_*.json"):
        p.unlink()


def load_encoder(cfg: DictConfig) -> FrozenEncoder:
    from theia_eval.encoders import create_encoder

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
    from theia_eval.io import atomic_write_json

    videos = info.pop("videos", [])
    if videos:
        info["video_files"] = write_videos(path.parent / "videos" / path.stem, videos)
    atomic_write_json(path, info)
    return info["aggregate"]


def make_eval_fn(encoder: FrozenEncoder, spec: TaskSpec, ecfg: EvalConfig, render, kind: str, bc: BCConfig,
                 out: Path):
    """The per-epoch evaluation callback train_bc calls: simulate, write eval/epoch_NNN.json, report success."""
    from theia_eval.policies.evaluate import evaluate_policy

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


def bc_config(cfg: DictConfig) -> BCConfig:
    from theia_eval.policies.bc import BCConfig

    return BCConfig(head=cfg.head, seed=int(cfg.seed), device=cfg.device, **OmegaConf.to_container(cfg.bc))


def eval_config(cfg: DictConfig) -> EvalConfig:
    from theia_eval.policies.evaluate import EvalConfig

    return EvalConfig(**OmegaConf.to_container(cfg.eval))


def check_train_names(cfg: DictConfig) -> None:
    """Registry names of the train config (head, fusion, normalisations, its head_config keys, render preset)."""
    from theia_eval.envs.renderer import get_preset
    from theia_eval.errors import unknown_name
    from theia_eval.policies.bc import NORMALIZERS
    from theia_eval.policies.heads import head_input_kind, make_head_config
    from theia_eval.policies.history import get_fusion

    head_input_kind(cfg.head)
    make_head_config(cfg.head, OmegaConf.to_container(cfg.bc.head_config))
    get_fusion(cfg.bc.fusion)
    for key in ("action_norm", "proprio_norm"):
        if cfg.bc[key] not in NORMALIZERS:
            raise unknown_name(f"bc.{key} normalisation", cfg.bc[key], NORMALIZERS)
    if cfg.eval.preset is not None:
        get_preset(cfg.eval.preset)


def prepare_task(cfg: DictConfig, spec: TaskSpec):
    """Everything checked for one task before any work: (demo file, render spec, start over?)."""
    from theia_eval.policies.evaluate import eval_render_spec

    path = demo_file(cfg, spec)
    meta = read_demo_meta(path, spec, force=bool(cfg.force))
    render = eval_render_spec(eval_config(cfg), meta.render, force=bool(cfg.force))
    return path, render, check_run_dir(cfg, spec, path)


def run_identity(spec: TaskSpec, encoder: FrozenEncoder, kind: str, source_fingerprint: str) -> dict:
    """What a checkpoint belongs to: resumed or evaluated elsewhere, it is refused."""
    return {"task": spec.name, "encoder": encoder.name, "weights_id": str(encoder.weights_id), "kind": kind,
            "demos": source_fingerprint}


def train_task(cfg: DictConfig, spec: TaskSpec, encoder: FrozenEncoder) -> dict:
    """Cache embeddings, train with periodic evaluation, write the run directory; returns metrics."""
    from theia_eval.io import atomic_write_json, atomic_write_text, remove_stale_temp_files
    from theia_eval.policies.bc import WindowDataset, train_bc
    from theia_eval.policies.cache import HDF5DemoSource, get_or_build_cache
    from theia_eval.policies.heads import head_input_kind

    out = run_dir(cfg, spec)
    bc = bc_config(cfg)
    kind = head_input_kind(cfg.head)
    path, render, start_over = prepare_task(cfg, spec)
    ecfg = eval_config(cfg)
    t0 = time.perf_counter()
    with HDF5DemoSource(path, split=cfg.get("split")) as source:
        cache = get_or_build_cache(encoder, source, cfg.cache_dir, kind, progress=bc.progress)
        fingerprint = source.fingerprint()
    data = WindowDataset.from_cache(cache, bc.history, bc.fusion)
    t1 = time.perf_counter()
    if start_over:
        discard_run(out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "eval"):
        remove_stale_temp_files(folder)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(run_config(cfg, spec, path))
                      + f"# command: {shlex.join(sys.argv)}\n")
    result = train_bc(data, bc, out, make_eval_fn(encoder, spec, ecfg, render, kind, bc, out),
                      run=run_identity(spec, encoder, kind, fingerprint))
    metrics = summarize(result.history, result.best, out)
    metrics.update(task=spec.name, encoder=encoder.name, weights=portable(str(encoder.weights_id)), head=cfg.head,
                   seed=int(cfg.seed), demos=portable(str(path)), frames=len(data), embed_s=t1 - t0,
                   train_and_eval_s=time.perf_counter() - t1, render=render.as_dict())
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
