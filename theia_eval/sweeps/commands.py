"""`theia-eval sweep sweep=NAME [launcher=joblib] [--dry-run]`: run a sweep grid (theia_eval.sweeps.run)."""
from __future__ import annotations

import sys
from pathlib import Path

from theia_eval.analysis.store import ResultsStore
from theia_eval.config import compose, config_dir
from theia_eval.errors import InputError
from theia_eval.sweeps.plan import SWEEP_KEYS
from theia_eval.sweeps.run import __doc__ as RUN_DOC
from theia_eval.sweeps.run import run_sweep
from theia_eval.verbs import parse_words, verb_parser


def _parser():
    sweeps = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
    p = verb_parser("sweep", RUN_DOC, f"sweeps (configs/sweep/): {', '.join(sweeps)}; grid keys: sweep.encoders=[...] "
                    "sweep.seeds=[...] ... (the keys of configs/sweep/NAME.yaml: "
                    f"{', '.join(SWEEP_KEYS)}; docs/analysis.md)")
    p.add_argument("--dry-run", action="store_true", help="check the sweep and list what would run, then exit")
    return p


def sweep(argv: list[str]) -> int:
    args, overrides = parse_words(_parser(), argv)
    if not any(o.split("=", 1)[0].lstrip("+~") == "sweep" for o in overrides):
        raise InputError("name a sweep: `theia-eval sweep sweep=NAME` (see `theia-eval sweep --help` for the list).")
    cfg = compose("sweep", overrides)
    report = run_sweep(cfg, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if cfg.leaderboard and len(ResultsStore(cfg.store, cfg.store_journal)):
        from theia_eval.analysis.outputs import write_leaderboard

        paths = write_leaderboard(cfg.store, Path(cfg.out_dir) / "leaderboard", sweep_name=report.plan.name)
        print(f"leaderboard: {paths['md']} (html: {paths['html']})")
    if report.failures or report.blocked:
        print(f"{len(report.failures)} job(s) failed; fix them and re-run the same command (finished cells are "
              "kept).", file=sys.stderr)
        return 1
    if report.waiting:
        print(f"{len(report.waiting)} job(s) wait for work another process is doing (listed above); run the same "
              "command again when it has finished to run them.", file=sys.stderr)
    return 0
