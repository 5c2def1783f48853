"""The preamble every `theia-eval <verb>` shares: its argparse parser (whose --help lists the config keys of
theia_eval.settings), the split of key=value overrides from --flags, the composed and checked config, and
torch CPU threads. A verb is then `args, cfg = verb_config(parser, argv, "name")` and its own work."""
from __future__ import annotations

import argparse

from omegaconf import DictConfig

from theia_eval.config import compose, split_args
from theia_eval.errors import InputError
from theia_eval.settings import key_help


def verb_parser(verb: str, description: str | None, note: str = "", config: str | None = None,
                keys: bool = True) -> argparse.ArgumentParser:
    """The parser of `theia-eval <verb>`; --help ends with `note` and the config keys of `config` (default: verb)."""
    epilog = "\n\n".join(p for p in (note, key_help(config or verb) if keys else "") if p)
    return argparse.ArgumentParser(prog=f"theia-eval {verb}", description=description, epilog=epilog or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_words(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(--flags and positionals parsed by `parser`, the key=value overrides)."""
    overrides, rest = split_args(argv, parser)
    return parser.parse_args(rest), overrides


def verb_config(parser: argparse.ArgumentParser, argv: list[str], config: str) -> tuple[argparse.Namespace, DictConfig]:
    """Parse the words of a verb and compose configs/<config>.yaml with its overrides (every value checked)."""
    args, overrides = parse_words(parser, argv)
    return args, compose(config, overrides)


def apply_threads(cfg: DictConfig) -> None:
    """`threads=N`: torch CPU threads for this process (null keeps torch's default)."""
    if cfg.get("threads") is None:
        return
    if int(cfg.threads) < 1:
        raise InputError(f"threads must be >= 1 (or null for torch's default), got {cfg.threads}.")
    import torch

    torch.set_num_threads(int(cfg.threads))
