"""CLI verbs `embed`, `train` and `evaluate`: cache embeddings, behaviour-clone a head, evaluate in simulation.

Every input is checked before any work and before any file is written: the config values (theia_eval.schema),
then demo files, run directories and checkpoints (theia_eval.policies.runs). Heavy modules (torch, the
simulators) are imported only once the settings are known to be valid.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from theia_eval.config import load_config_file
from theia_eval.errors import InputError
from theia_eval.policies.runs import (check_train_names, demo_file, load_encoder, prepare_task, read_demo_meta, run_dir,
                                      save_eval, train_task)
from theia_eval.policies.runs import __doc__ as RUNS_DOC
from theia_eval.verbs import apply_threads, verb_config, verb_parser

if TYPE_CHECKING:
    from theia_eval.encoders.base import FrozenEncoder
    from theia_eval.envs.tasks import TaskSpec


def train(argv: list[str]) -> int:
    """`theia-eval train encoder=NAME task=TASK head=conv seed=100` (or suite=...)."""
    _, cfg = verb_config(verb_parser("train", train.__doc__ + "\n\n" + RUNS_DOC), argv, "train")
    from theia_eval.envs.tasks import check_ready, resolve_tasks
    specs = resolve_tasks(cfg.suite, cfg.task)
    check_ready(specs)
    if cfg.demos and len(specs) > 1:
        raise InputError(f"demos={cfg.demos} is one task's file but suite={cfg.suite} has {len(specs)} tasks: "
                         "use demos_dir=DIR for a suite, or task=NAME with demos=FILE.")
    check_train_names(cfg)
    for spec in specs:  # every task's demos and run directory, before the first one trains
        prepare_task(cfg, spec)
    apply_threads(cfg)
    encoder = load_encoder(cfg)
    for spec in specs:
        m = train_task(cfg, spec, encoder)
        best = m["best_checkpoint"]
        print(f"{spec.name} {cfg.encoder} {cfg.head} seed {cfg.seed}: last-checkpoint success "
              f"{m['last_checkpoint']['success']:.2f} (epoch {m['last_checkpoint']['epoch']}), best-checkpoint "
              f"{best['success']:.2f} (epoch {best['epoch']}) -> {run_dir(cfg, spec)}")
    return 0


def embed_sources(cfg: DictConfig) -> list[Path]:
    """The demo files `embed` encodes, each checked (structure, metadata, the task when one is named)."""
    from theia_eval.envs.tasks import resolve_tasks
    from theia_eval.policies.cache import HDF5DemoSource

    if cfg.demos:
        path = Path(cfg.demos)
        if cfg.task or cfg.suite:
            specs = resolve_tasks(cfg.suite, cfg.task)
            if len(specs) > 1:
                raise InputError(f"demos={cfg.demos} is one task's file but suite={cfg.suite} names "
                                 f"{len(specs)} tasks: pass task=NAME, or drop demos= to use demos_dir.")
            read_demo_meta(path, specs[0], force=True)
        else:  # any robomimic-layout file: its structure only
            HDF5DemoSource(path).close()
        return [path]
    specs = resolve_tasks(cfg.suite, cfg.task)
    paths = [demo_file(cfg, s) for s in specs]
    for path, spec in zip(paths, specs):
        read_demo_meta(path, spec, force=True)
    return paths


def embed(argv: list[str]) -> int:
    """`theia-eval embed encoder=NAME demos=FILE` (or task=/suite=): build the embedding cache explicitly."""
    _, cfg = verb_config(verb_parser("embed", embed.__doc__), argv, "embed")
    from theia_eval.policies.cache import HDF5DemoSource, get_or_build_cache
    paths = embed_sources(cfg)
    apply_threads(cfg)
    encoder = load_encoder(cfg)
    for path in paths:
        with HDF5DemoSource(path) as source:
            cache = get_or_build_cache(encoder, source, cfg.cache_dir, cfg.kind, chunk_size=int(cfg.chunk_size),
                                       rebuild=bool(cfg.rebuild))
        print(f"{path}: {cache.num_frames} frames x {cache.frame_shape} float16 -> {cache.path}")
    return 0


def check_policy_fits(ckpt: dict, path: Path, rcfg: DictConfig, spec: TaskSpec, encoder: FrozenEncoder) -> None:
    """A checkpoint evaluated for a run must be that run's: head, seed, run identity, encoder and task shapes."""
    from theia_eval.errors import CheckpointMismatchError
    from theia_eval.policies.heads import head_input_kind

    shapes, config, run = ckpt["shapes"], ckpt["config"], ckpt.get("run") or {}
    kind = head_input_kind(rcfg.head)
    enc = encoder.config
    wanted = {"head": (config.get("head"), rcfg.head), "seed": (config.get("seed"), int(rcfg.seed)),
              "task": (run.get("task", spec.name), spec.name), "encoder": (run.get("encoder", encoder.name), encoder.name),
              "action_dim": (shapes.get("action_dim"), spec.action_dim),
              "proprio_dim": (shapes.get("proprio_dim"), spec.proprio_dim)}
    if kind == "tokens":
        wanted.update(grid=(tuple(shapes.get("grid", ())), tuple(enc.grid)), token_dim=(shapes.get("token_dim"), enc.token_dim))
    else:
        wanted.update(summary_dim=(shapes.get("summary_dim"), enc.summary_dim))
    bad = {k: v for k, v in wanted.items() if v[0] != v[1]}
    if bad:
        listed = "; ".join(f"{k}: checkpoint {a!r}, run {b!r}" for k, (a, b) in bad.items())
        raise CheckpointMismatchError(f"{path} does not belong to the run in {path.parent} ({listed}): it was copied "
                                      "from another run. Evaluate it with its own run directory, or train this run "
                                      "again (`theia-eval train ... force=true`).")


def evaluate(argv: list[str]) -> int:
    """`theia-eval evaluate run=DIR [checkpoint=best|last] [episodes=25]`: re-evaluate a trained run."""
    from theia_eval.schema import probe_writable

    _, cfg = verb_config(verb_parser("evaluate", evaluate.__doc__), argv, "evaluate")
    from theia_eval.envs.tasks import check_ready, get_task
    from theia_eval.policies.bc import load_checkpoint, policy_from_checkpoint
    from theia_eval.policies.evaluate import EvalConfig, eval_render_spec, evaluate_policy
    from theia_eval.policies.heads import head_input_kind
    run = Path(cfg.run)
    if not (run / "config.yaml").is_file():
        raise InputError(f"run={cfg.run!r} is not a run directory (no config.yaml); pass run=DIR from `theia-eval train`.")
    error = probe_writable(run)
    if error:
        raise InputError(f"run={cfg.run} is not writable ({error}); eval_info_{cfg.checkpoint}.json is written there.")
    ckpt_path = run / f"{cfg.checkpoint}.pt"
    if not ckpt_path.is_file():
        raise InputError(f"{ckpt_path} does not exist; the run has not finished an evaluation yet (try checkpoint=last).")
    rcfg = OmegaConf.create(load_config_file(run / "config.yaml", "the run config"))
    if not rcfg.get("task") or "bc" not in rcfg or "eval" not in rcfg:
        raise InputError(f"{run / 'config.yaml'} is not a `theia-eval train` run config (task, bc, eval missing).")
    spec = get_task(rcfg.task)
    check_ready([spec])
    demos = demo_file(rcfg, spec)
    meta = read_demo_meta(demos, spec, force=bool(cfg.force))
    ecfg = EvalConfig(**{**OmegaConf.to_container(rcfg.eval), "episodes": int(cfg.episodes),
                         "base_seed": int(cfg.base_seed), "num_envs": int(cfg.num_envs), "groups": int(cfg.groups),
                         "video": bool(cfg.video), "progress": bool(cfg.progress)})
    render = eval_render_spec(ecfg, meta.render, force=bool(cfg.force))
    ckpt = load_checkpoint(ckpt_path)
    apply_threads(cfg)
    rcfg.device = cfg.device
    encoder = load_encoder(rcfg)
    check_policy_fits(ckpt, ckpt_path, rcfg, spec, encoder)
    policy = policy_from_checkpoint(ckpt, device=cfg.device)
    info = evaluate_policy(policy, encoder, spec.name, ecfg, render, head_input_kind(rcfg.head),
                           int(rcfg.bc.history), rcfg.bc.fusion)
    info["checkpoint"] = cfg.checkpoint
    agg = save_eval(info, run / f"eval_info_{cfg.checkpoint}.json")
    lo, hi = agg["success_ci95"]
    print(f"{spec.name} {cfg.checkpoint}: success {agg['successes']}/{agg['episodes']} = {agg['success_rate']:.2f} "
          f"(95% CI {lo:.2f}-{hi:.2f}), {agg['episodes_per_s']:.2f} episodes/s -> {run}/eval_info_{cfg.checkpoint}.json")
    return 0
