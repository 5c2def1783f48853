"""CLI verbs `theia-eval leaderboard` and `theia-eval entropy` (their files: theia_eval.analysis.outputs)."""
from __future__ import annotations

from pathlib import Path

from theia_eval.analysis.outputs import __doc__ as OUTPUTS_DOC
from theia_eval.analysis.outputs import write_entropy, write_leaderboard
from theia_eval.analysis.report import empty_message
from theia_eval.errors import InputError
from theia_eval.verbs import verb_config, verb_parser


def leaderboard(argv: list[str]) -> int:
    """`theia-eval leaderboard results=PATH [out_dir=DIR] [sweep=NAME] [claims=NAME|PATH]`."""
    _, cfg = verb_config(verb_parser("leaderboard", leaderboard.__doc__ + "\n\n" + OUTPUTS_DOC), argv, "leaderboard")
    if not cfg.results:
        raise InputError("pass results=PATH: a results store (.sqlite) written by `theia-eval sweep`, or its "
                         ".parquet/.csv export.")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.results).parent / "leaderboard"
    paths = write_leaderboard(cfg.results, out_dir, cfg.sweep, tuple(cfg.mujoco_suites), cfg.export, cfg.claims,
                              cfg.uncertainty, cfg.runs_root)
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

