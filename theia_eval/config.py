"""Hydra config composition for CLI verbs: configs/ ships inside the package as theia_eval.configs.

`compose` quotes the values of path keys for Hydra, composes, then checks every value against
`theia_eval.schema` (types, ranges, paths) before the verb does any work or creates any file.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from theia_eval.errors import InputError


def to_plain(value: Any) -> Any:
    """OmegaConf nodes -> plain Python containers (resolved)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def config_dir() -> Path:
    """Directory of the shipped Hydra configs (the repo's configs/, installed as theia_eval/configs).

    In a source checkout the configs/ beside the imported package are used, so that a second checkout (a git
    worktree on PYTHONPATH) reads its own configs rather than those of the checkout installed in editable mode.
    """
    source = Path(__file__).resolve().parent.parent / "configs"
    if (source / "__init__.py").is_file() and (source / "train.yaml").is_file():
        return source
    import theia_eval.configs as pkg

    return Path(pkg.__path__[0])


def _value_options(parser: argparse.ArgumentParser | None) -> dict[str, object]:
    """Option strings of `parser` that take values, with their nargs."""
    if parser is None:
        return {}
    return {s: a.nargs for a in parser._actions for s in a.option_strings if a.nargs != 0}


def split_args(argv: list[str], parser: argparse.ArgumentParser | None = None) -> tuple[list[str], list[str]]:
    """Split CLI words into Hydra overrides (key=value) and the rest (flags, their values, positionals).

    With `parser`, the values of its options (`--image a=b.png`, `--info PATH...`) are never taken for
    overrides, whatever characters they hold.
    """
    options = _value_options(parser)
    overrides, rest, i = [], [], 0
    while i < len(argv):
        word = argv[i]
        rest_or_override = rest if word.startswith("-") or "=" not in word else overrides
        rest_or_override.append(word)
        i += 1
        if word in options:
            nargs = options[word]
            take = 1 if nargs in (None, "?") else len(argv) if nargs in ("+", "*", argparse.REMAINDER) else int(nargs)
            while take and i < len(argv) and (not argv[i].startswith("-") or nargs == argparse.REMAINDER):
                rest.append(argv[i])
                i += 1
                take -= 1
    return overrides, rest


def compose(config_name: str, overrides: list[str] | None = None, paths: bool = True) -> DictConfig:
    """Compose configs/<config_name>.yaml with key=value overrides and check every value (theia_eval.schema).

    paths=False skips the file-system checks (input paths exist, output paths writable): for configs that
    are merged further before use.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from theia_eval.schema import check_config, check_paths, quote_overrides, unparsable

    overrides = quote_overrides(config_name, list(overrides or []))
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        problem = unparsable(overrides)
        if problem is not None:
            fix = f": {problem.fix}" if problem.fix else ""
            raise InputError(f"cannot read the setting `{problem.override}` ({problem.error}). A value with spaces, "
                             "commas, '=', brackets, quotes or non-ASCII characters must be quoted for Hydra, inside "
                             f"shell quotes{fix}.") from exc
        raise InputError(f"bad config for '{config_name}': {' '.join(str(exc).split())}. "
                         f"See `theia-eval {config_name} --help` for the valid keys.") from exc
    check_added_keys(config_name, cfg, overrides)
    try:
        check_config(config_name, cfg)
        if paths:
            check_paths(config_name, cfg)
    except OmegaConfBaseException as exc:  # e.g. an interpolation ${...} that names no key
        raise InputError(f"bad config for '{config_name}': {' '.join(str(exc).split())}.") from exc
    return cfg


_ABSENT = object()
ADDED_KEY = re.compile(r"^\+\+?(?P<key>[A-Za-z0-9_.\-]+)=")


def check_added_keys(config_name: str, cfg: DictConfig, overrides: list[str]) -> None:
    """`+key=value` adds a key the config does not have; nothing reads a misspelt one (`+bogus=1`, `+num_demoz=3`),
    so it is refused unless it lands in a free-form mapping (`decoder_weights: {}`, `bc.head_config: {}`, a schema
    `mapping()` or `name.*` rule). Keys under a config group (`+sweep.train...`) are checked where the group's
    block is read."""
    from theia_eval.schema import SCHEMAS, rule_for

    schema = SCHEMAS.get(config_name, {})
    plain = OmegaConf.to_container(cfg, resolve=False)
    shipped_file = config_dir() / f"{config_name}.yaml"
    shipped = OmegaConf.load(shipped_file) if shipped_file.is_file() else OmegaConf.create({})
    for override in overrides:
        m = ADDED_KEY.match(override)
        if m is None:
            continue
        parts = m.group("key").split(".")
        if parts[0] == "hydra" or (config_dir() / parts[0]).is_dir():
            continue
        if OmegaConf.select(shipped, m.group("key"), default=_ABSENT, throw_on_resolution_failure=False) \
                is not _ABSENT:  # `++key=v` on a key the shipped config has
            continue
        node, depth = plain, 0
        while depth < len(parts) - 1 and isinstance(node, dict) and isinstance(node.get(parts[depth]), dict):
            node = node[parts[depth]]
            depth += 1
        parent = ".".join(parts[:depth])
        rule = rule_for(schema, parent) if parent else None
        shipped_parent = OmegaConf.select(shipped, parent, default=None, throw_on_resolution_failure=False) \
            if parent else None
        free = depth == len(parts) - 1 and parent and (
            (rule is not None and rule.kind == "dict") or rule_for(schema, f"{parent}.{parts[depth]}") is not None
            or (OmegaConf.is_dict(shipped_parent) and len(shipped_parent) == 0))  # a `{}` in the YAML: free-form
        if free:
            continue
        where = f"under '{parent}'" if parent else "at the top level"
        added = {ADDED_KEY.match(o).group("key") for o in overrides if ADDED_KEY.match(o)}
        choices = sorted(str(k) for k in node if ".".join([*parts[:depth], str(k)]) not in added) \
            if isinstance(node, dict) else []
        close = difflib.get_close_matches(parts[depth], choices, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise InputError(f"unknown key '{m.group('key')}' for `theia-eval {config_name}`: `{override}` adds a key "
                         f"that configs/{config_name}.yaml does not have {where}, and nothing would read it.{hint} "
                         f"Keys there: {', '.join(choices) or 'none'}.")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def flat_leaves(cfg: Any, whole: frozenset[str] = frozenset(), prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value} of a nested dict; mappings named in `whole` stay one value."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in whole:
            out.update(flat_leaves(v, whole, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(stored: dict, new: dict, ignore: frozenset[str] = frozenset(),
                   whole: frozenset[str] = frozenset()) -> dict[str, tuple]:
    """{key: (stored, new)} of the settings both configs have that differ, except `ignore`d keys (and keys below
    them). A key only one of them has is an option added or retired since: not a difference."""
    a, b = flat_leaves(stored, whole), flat_leaves(new, whole)
    canon = lambda v: json.dumps(v, sort_keys=True, default=str)  # noqa: E731
    return {k: (a[k], b[k]) for k in sorted(set(a) & set(b))
            if k not in ignore and not any(k.startswith(i + ".") for i in ignore) and canon(a[k]) != canon(b[k])}


def load_config_file(path: str | Path, what: str = "config") -> dict:
    """A YAML config file (e.g. a run directory's config.yaml) as a dict; a damaged one is an InputError."""
    try:
        stored = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # noqa: BLE001  (yaml and OmegaConf raise many types)
        raise InputError(f"{what} {path} cannot be read ({' '.join(str(exc).split())}): it is damaged. Use a new "
                         "output folder, or delete that run directory.") from exc
    if not isinstance(stored, dict):
        raise InputError(f"{what} {path} is not a mapping of settings: it is damaged; delete that run directory.")
    return stored
