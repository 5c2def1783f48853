"""CLI verbs `theia-eval leaderboard` and `theia-eval entropy` (their files: theia_eval.analysis.outputs)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from theia_eval.analysis.outputs import __doc__ as OUTPUTS_DOC
from theia_eval.analysis.outputs import write_entropy, write_leaderboard
from theia_eval.analysis.report import empty_message
from theia_eval.analysis.store import result_paths
from theia_eval.errors import InputError
from theia_eval.verbs import verb_config, verb_parser


def leaderboard(argv: list[str]) -> int:
    """`theia-eval leaderboard results=PATH [out_dir=DIR] [sweep=NAME] [claims=NAME|PATH]`."""
    _, cfg = verb_config(verb_parser("leaderboard", leaderboard.__doc__ + "\n\n" + OUTPUTS_DOC), argv, "leaderboard")
    if not cfg.results:
        raise InputError("pass results=PATH: a results store (.sqlite) written by `theia-eval sweep`, or its "
                         ".parquet/.csv export.")
    results = result_paths(OmegaConf.to_object(cfg.results) if OmegaConf.is_config(cfg.results) else cfg.results)
    if len(results) > 1 and not cfg.out_dir:
        raise InputError("with several results files, name where the leaderboard goes: out_dir=DIR.")
    missing = [str(p) for p in results if not p.is_file()]
    if missing:
        raise InputError(f"results={', '.join(missing)} does not exist: run `theia-eval sweep sweep=NAME` first, or "
                         "pass the results store it wrote.")
    pools = OmegaConf.to_object(cfg.pools) if OmegaConf.is_config(cfg.pools) else cfg.pools
    out_dir = Path(cfg.out_dir) if cfg.out_dir else results[0].parent / "leaderboard"
    paths = write_leaderboard(results if len(results) > 1 else results[0], out_dir, cfg.sweep,
                              tuple(cfg.mujoco_suites), cfg.export, cfg.claims, cfg.uncertainty, cfg.runs_root, pools)
    if paths.get("empty"):
        print(empty_message(str(cfg.results)))
    else:
        print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['html']} and {paths['report']}")
    return 0

def entropy(argv: list[str]) -> int:
    """`theia-eval entropy encoders=[...]|results images=demos:DIR|skimage|folder:DIR [results=PATH]`."""
    _, cfg = verb_config(verb_parser("entropy", entropy.__doc__ + "\n\n" + OUTPUTS_DOC), argv, "entropy")
    paths = write_entropy(cfg)
    print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['json']}, {paths['norm_hist']} and {paths['report']}")
    return 0



def ablation(argv: list[str]) -> int:
    """`theia-eval ablation sweep_dir=DIR [store=PATH] [head=conv] [checkpoint=best] [out_dir=DIR]`: the teacher-
    combination table (held-out cosine per teacher, scores with intervals) of a sweep whose students each learn
    from a subset of the teachers."""
    from theia_eval.analysis.ablation import ablation_report
    from theia_eval.analysis.outputs import resampling_from

    _, cfg = verb_config(verb_parser("ablation", ablation.__doc__), argv, "ablation")
    if not cfg.sweep_dir:
        raise InputError("pass sweep_dir=DIR: the out_dir of a `theia-eval sweep` whose config has students "
                         "(e.g. results/study/entropy).")
    paths = ablation_report(cfg.sweep_dir, cfg.out_dir, cfg.store, cfg.head, cfg.checkpoint,
                            resampling_from(cfg.uncertainty))
    print(paths["md"].read_text())
    print(f"wrote {paths['md']}, {paths['csv']} and {paths['json']}")
    return 0
