"""CLI verbs `theia-eval tasks`, `theia-eval demos` and `theia-eval experts` (key=value words go to the Hydra config)."""
from __future__ import annotations

import sys
from pathlib import Path

from theia_eval.config import compose
from theia_eval.errors import InputError
from theia_eval.verbs import parse_words, verb_config, verb_parser


# ------------------------------------------------------------------------------------------ tasks
def tasks(argv: list[str]) -> int:
    """List suites and tasks."""
    from theia_eval.envs.tasks import get_suite, get_task, list_suites, list_tasks

    _, cfg = verb_config(verb_parser("tasks", "List the registered suites and tasks."), argv, "tasks")
    if cfg.suite is not None:
        suite = get_suite(cfg.suite)
        print(f"{suite.name}: {suite.description} (demos/task {suite.demos_per_task}, "
              f"eval episodes {suite.eval_episodes})")
        for name in suite.tasks:
            print("  " + _task_line(get_task(name)))
        return 0
    print("suites:")
    for name in list_suites():
        suite = get_suite(name)
        shown = ", ".join(suite.tasks) if len(suite.tasks) <= 8 else f"{len(suite.tasks)} tasks"
        print(f"  {name}: {shown}")
    print(f"tasks matching '{cfg.pattern}':")
    for name in list_tasks(cfg.pattern):
        print("  " + _task_line(get_task(name)))
    return 0


def _task_line(t) -> str:
    expert = ("no expert" if t.make_expert is None else
              f"experts {' | '.join(t.expert_kinds)}" if t.expert_kinds else "expert")
    return (f"{t.name:40s} camera {t.camera}, horizon {t.horizon}, action {t.action_dim}, "
            f"proprio {t.proprio_dim}, {expert}")


# ------------------------------------------------------------------------------------------ demos
def demos(argv: list[str]) -> int:
    """Collect expert demos, summarize a demo file, or import a CortexBench pickle."""
    parser = verb_parser("demos", "Collect scripted-expert demonstrations (robomimic HDF5, one file "
                              "per task), summarize files (--info) or import CortexBench pickles.")
    parser.add_argument("--info", nargs="+", metavar="PATH", help="summarize demo file(s) and exit")
    parser.add_argument("--check", action="store_true", help="with --info: read every frame and array too, and "
                                                               "refuse non-finite (NaN/inf) actions, proprio, states "
                                                               "or rewards")
    parser.add_argument("--import", dest="import_pickle", metavar="SOURCE",
                        help="import public demos into our format (needs task=... and out=PATH): a CortexBench "
                             "pickle (.pkl/.pickle), or for adroit/* a Minari D4RL Adroit dataset directory "
                             "(or its data/main_data.hdf5), re-rendered from its recorded simulator states")
    args, overrides = parse_words(parser, argv)
    if args.info:
        return _info(args.info, args.check)
    cfg = compose("demos", overrides)
    if args.import_pickle:
        return _import(args.import_pickle, cfg)
    return _collect(cfg)


def _info(paths: list[str], check: bool) -> int:
    from theia_eval.envs.dataset import dataset_info, format_info, verify_frames

    for path in paths:
        print(format_info(dataset_info(path)))
        if check:
            print(f"  check: read {verify_frames(path)} frames, all readable, every number finite")
    return 0


def demo_config(cfg):
    """DemoConfig from the composed `demos` config."""
    from theia_eval.envs.dataset import Storage
    from theia_eval.envs.demos import DemoConfig
    from theia_eval.envs.renderer import RenderSpec

    crop = None if cfg.crop is None else int(cfg.crop)
    return DemoConfig(num_demos=int(cfg.num_demos), base_seed=int(cfg.seed),
                      post_success_steps=cfg.post_success_steps, horizon=cfg.horizon,
                      max_failures=cfg.max_failures, workers=int(cfg.workers),
                      render=RenderSpec(str(cfg.preset), int(cfg.resolution), crop),
                      camera=cfg.camera, storage=Storage(cfg.compression, cfg.compression_level),
                      valid_fraction=float(cfg.valid_fraction), progress=bool(cfg.progress),
                      expert=plain(cfg.get("expert")), expert_weights=cfg.get("expert_weights"))


def plain(value):
    """An OmegaConf mapping or list as plain Python (other values pass through)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def _collect(cfg) -> int:
    from theia_eval.envs.demos import collect
    from theia_eval.envs.tasks import check_ready, resolve_tasks

    specs = resolve_tasks(cfg.suite, cfg.task)
    check_ready(specs)
    reports = collect(specs, cfg.out_dir, demo_config(cfg))
    for r in reports:
        size = r.path.stat().st_size / 2**20
        print(f"{r.task}: {r.demos} demos ({r.new_demos} new, {len(r.failed_seeds)} failed seeds) "
              f"-> {r.path} ({size:.1f} MB, {r.seconds:.1f} s)")
    return 0


# ---------------------------------------------------------------------------------------- experts
def experts(argv: list[str]) -> int:
    """Train (or resume) a distilled DMC expert and print its figures."""
    parser = verb_parser("experts", "Train a fast DMC expert: an MLP on the privileged state, distilled from the "
                                    "task's planner by DAgger (resumable; docs/suites.md, \"Distilled experts\").")
    _, cfg = verb_config(parser, argv, "experts")
    from theia_eval.envs.dmc.dagger import train_expert

    report = train_expert(dagger_config(cfg))
    ev, lab = report["eval"], report["labeller"]
    print(f"{report['task']}: round {report['selected_round']} published -> {report['published']}; policy return "
          f"mean {ev['mean']:.1f}, min {ev['min']:.1f} over {len(ev['returns'])} episodes; "
          f"{lab['labels']} labels at {lab['seconds_per_label'] * 1e3:.1f} ms each")
    if "demo" in report:
        print(f"  one demo (episode + render replay): {report['demo']['seconds_per_demo']:.1f} s")
    return 0


def dagger_config(cfg):
    """DaggerConfig from the composed `experts` config."""
    from theia_eval.envs.dmc.dagger import DaggerConfig

    if cfg.task is None:
        raise InputError("name the task: theia-eval experts task=dmc/<task> (e.g. dmc/walker-stand)")
    episode_steps = None if cfg.episode_steps is None else int(cfg.episode_steps)
    return DaggerConfig(task=str(cfg.task), out_dir=str(cfg.out_dir), rounds=int(cfg.rounds),
                        episodes_per_round=int(cfg.episodes_per_round), episode_steps=episode_steps,
                        beta_decay=float(cfg.beta_decay), hidden=tuple(int(h) for h in cfg.hidden),
                        train_steps=int(cfg.train_steps), batch_size=int(cfg.batch_size), lr=float(cfg.lr), seed=int(cfg.seed),
                        planner=plain(cfg.planner) or {}, eval_episodes=int(cfg.eval_episodes),
                        eval_seed=int(cfg.eval_seed), select=str(cfg.select), time_demo=bool(cfg.time_demo),
                        threads=int(cfg.threads), progress=bool(cfg.progress))


def is_minari_source(path: str | Path) -> bool:
    """A Minari dataset: a directory (holding data/main_data.hdf5) or an .hdf5 file; pickles are CortexBench's."""
    path = Path(path)
    return path.is_dir() or path.suffix in (".hdf5", ".h5")


def _import(source: str, cfg) -> int:
    from theia_eval.envs.dataset import Storage
    from theia_eval.envs.importers import import_cortexbench_pickle
    from theia_eval.envs.tasks import check_ready, get_task

    if cfg.task is None or cfg.out is None:
        raise InputError("--import needs task=<family>/<task> and out=PATH.hdf5")
    spec = get_task(cfg.task)
    check_ready([spec])  # the importers render through the task's simulator
    if is_minari_source(source):
        return _import_minari(source, spec, cfg)
    out = import_cortexbench_pickle(source, cfg.task, Path(cfg.out), camera=cfg.camera,
                                    proprio_key=cfg.proprio_key,
                                    storage=Storage(cfg.compression, cfg.compression_level),
                                    valid_fraction=float(cfg.valid_fraction))
    print(f"imported {source} -> {out}", file=sys.stdout)
    return 0


def _import_minari(source: str, spec, cfg) -> int:
    """Re-render a Minari dataset with the demos config's render settings and camera (the task's suite family
    registers the importer: Adroit)."""
    from theia_eval.envs.dataset import Storage
    from theia_eval.envs.family import FAMILIES, get_family
    from theia_eval.envs.renderer import RenderSpec

    importer = get_family(spec.suite).importer
    if importer is None:
        into = " or ".join(t.name for f in FAMILIES.values() if f.importer for t in f.tasks)
        raise InputError(f"{source} looks like a Minari dataset (a directory or .hdf5), which imports only into "
                         f"{into}, not {spec.name}; CortexBench pickles end in .pkl/.pickle.")
    crop = None if cfg.crop is None else int(cfg.crop)
    render = RenderSpec(str(cfg.preset), int(cfg.resolution), crop)
    report = importer(source, spec.name, Path(cfg.out), render,
                                  camera=cfg.camera, num_demos=cfg.import_num_demos,
                                  successful_only=not bool(cfg.keep_failed),
                                  storage=Storage(cfg.compression, cfg.compression_level),
                                  valid_fraction=float(cfg.valid_fraction))
    print(f"imported {report.dataset_id or source} -> {report.path}: {report.demos} demos "
          f"({report.skipped_failed} failing the success rule skipped)")
    return 0
