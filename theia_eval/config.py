"""Hydra config composition for CLI verbs: configs/ ships inside the package as theia_eval.configs."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from theia_eval.errors import InputError


def config_dir() -> Path:
    """Directory of the shipped Hydra configs (the repo's configs/, installed as theia_eval/configs)."""
    import theia_eval.configs as pkg

    return Path(pkg.__path__[0])


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split CLI words into Hydra overrides (key=value) and the rest (flags, positionals)."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    rest = [a for a in argv if a not in overrides]
    return overrides, rest


def compose(config_name: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose configs/<config_name>.yaml with key=value overrides, with errors that name the bad key."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as exc:
        raise InputError(f"bad config for '{config_name}': {exc}. "
                         f"See `theia-eval {config_name} --help` for the valid keys.") from exc


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
