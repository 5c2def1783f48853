"""Allowed types and ranges of every CLI config value, checked in one place right after composition.

`SCHEMAS[config name]` maps dotted keys (`bc.epochs`, `teacher_weights.*`) to a `Rule`. `check_config`
refuses a value of the wrong type or out of range with a message that names the verb, the key, the value
and what is allowed, before any work starts or any file is created. Keys a schema does not list are not
checked here (their code checks them); a listed key missing from the config is skipped.

Path rules also say how the value is used: `path()` (any text naming a file, folder or hub id: only
quoted for Hydra), `input_path()` (must exist) and `output_dir()` / `output_file()` (must be creatable
and writable: `check_paths` tries it with a temporary file that it removes). Hydra cannot parse
unquoted values with spaces, commas, `=`, brackets, quotes or non-ASCII characters, so `quote_overrides`
quotes the values of path keys; other values get a hint with the exact quoting (`hydra_quoted`).
"""
from __future__ import annotations

import fnmatch
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theia_eval.errors import InputError


@dataclass(frozen=True)
class Rule:
    """What one config value may be; `describe()` says it in words."""

    kind: str  # int | float | bool | str | choice | path | list | dict | any_of
    low: float | None = None
    high: float | None = None
    high_open: bool = False  # value < high (else <=)
    low_open: bool = False  # value > low (else >=)
    null: str | None = None  # allowed as null; the text says what null means
    choices: tuple = ()
    path_use: str = ""  # path: "" (any text) | input | output_dir | output_file
    items: tuple[Rule, ...] = ()  # list: the item rule; any_of: the alternatives
    note: str = ""

    def describe(self) -> str:
        text = {"int": f"an integer{self._range()}", "float": f"a number{self._range()}", "bool": "true or false",
                "str": "a text", "dict": "a mapping {key: value}",
                "choice": "one of " + ", ".join(map(str, self.choices)),
                "path": {"": "a path (text)", "input": "an existing path", "output_dir": "a writable folder path",
                         "output_file": "a writable file path"}[self.path_use],
                "list": f"a list of {self.items[0].describe()}" if self.items else "a list",
                "any_of": " or ".join(r.describe() for r in self.items)}[self.kind]
        if self.note:
            text += f" ({self.note})"
        return text + (f", or null ({self.null})" if self.null else "")

    def _range(self) -> str:
        lo = None if self.low is None else f"{'>' if self.low_open else '>='} {_num(self.low)}"
        hi = None if self.high is None else f"{'<' if self.high_open else '<='} {_num(self.high)}"
        if lo and hi:
            return f" {lo} and {hi}"
        return f" {lo or hi}" if lo or hi else ""

    def accepts(self, value: Any) -> bool:
        """Whether a non-null value has the right type and lies in range (paths: type only)."""
        if self.kind == "any_of":
            return any(r.accepts(value) for r in self.items)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool) and self._in_range(value)
        if self.kind == "float":
            return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and self._in_range(value))
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return value in self.choices
        if self.kind in ("str", "path"):
            return isinstance(value, str) and value.strip() != "" and "\0" not in value
        if self.kind == "list":
            return isinstance(value, (list, tuple)) and all(
                not self.items or (v is not None and self.items[0].accepts(v)) for v in value)
        if self.kind == "dict":
            return isinstance(value, Mapping)
        raise ValueError(f"unknown rule kind {self.kind}")

    def _in_range(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# --- rule constructors (the schemas below read like the YAML comments) ------------------------------
def integer(low: int | None = None, high: int | None = None, null: str | None = None, note: str = "") -> Rule:
    return Rule("int", low, high, null=null, note=note)


def count(low: int = 1, null: str | None = None, note: str = "") -> Rule:
    """A whole number of things (>= low, default 1)."""
    return integer(low, null=null, note=note)


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
           null: str | None = None, note: str = "") -> Rule:
    return Rule("float", low, high, high_open, low_open, null=null, note=note)


def fraction(high_open: bool = False, null: str | None = None) -> Rule:
    """A number in [0, 1] (or [0, 1))."""
    return number(0.0, 1.0, high_open=high_open, null=null)


def flag() -> Rule:
    return Rule("bool")


def text(null: str | None = None, note: str = "") -> Rule:
    return Rule("str", null=null, note=note)


def choice(*values: Any, null: str | None = None) -> Rule:
    return Rule("choice", choices=tuple(values), null=null)


def path(null: str | None = None, note: str = "") -> Rule:
    return Rule("path", null=null, note=note)


def input_path(null: str | None = None, note: str = "") -> Rule:
    return Rule("path", null=null, path_use="input", note=note)


def output_dir(null: str | None = None) -> Rule:
    return Rule("path", null=null, path_use="output_dir")


def output_file(null: str | None = None) -> Rule:
    return Rule("path", null=null, path_use="output_file")


def list_of(item: Rule | None = None, null: str | None = None) -> Rule:
    return Rule("list", items=(item,) if item else (), null=null)


def any_of(*rules: Rule, null: str | None = None) -> Rule:
    return Rule("any_of", items=rules, null=null)


def mapping(null: str | None = None) -> Rule:
    return Rule("dict", null=null)


SEED = integer(0, note="a seed")
THREADS = count(null="torch's default")


# --- the schemas ----------------------------------------------------------------------------------
FRAMES = {
    "suite": text(), "tasks": any_of(text(), list_of(text()), null="every task"),
    "exclude_tasks": any_of(text(), list_of(text()), null="none"), "num_frames": count(),
    "cameras": any_of(text(), list_of(text()), null="each task's cameras"), "resolution": count(), "preset": text(),
    "expert_fraction": fraction(), "action_noise": number(0), "frame_stride": count(), "frames_per_episode": count(),
    "shard_size": count(), "seed": SEED, "out": output_dir(null="the data root"), "task_block": count(),
    "max_open_envs": count(),
}

SCHEMAS: dict[str, dict[str, Rule]] = {
    "tasks": {"suite": text(null="all suites"), "pattern": text()},
    "experts": {
        "task": text(null="required: a dmc/ task"), "out_dir": output_dir(), "rounds": count(),
        "episodes_per_round": count(), "episode_steps": count(null="the task's horizon"), "beta_decay": fraction(),
        "hidden": list_of(count()), "train_steps": count(), "batch_size": count(), "lr": number(0, low_open=True),
        "seed": SEED, "planner": mapping(null="the planner expert's own settings"), "eval_episodes": count(), "eval_seed": SEED,
        "select": choice("best", "last"), "time_demo": flag(), "threads": count(), "progress": flag(),
    },
    "encoders": {"name": text(null="list the registry"), "pattern": text(), "weights": path(null="the default"),
                 "device": text(), "dtype": text()},
    "demos": {
        "suite": text(null="use task="), "task": text(null="use suite="), "num_demos": count(note="a count"),
        "out_dir": output_dir(), "seed": SEED, "workers": count(0, note="0 = this process"),
        "post_success_steps": count(0, null="run to the horizon"), "horizon": count(null="the task's horizon"),
        "max_failures": count(0, null="2 * num_demos + 10"), "preset": text(), "resolution": count(),
        "crop": count(null="no crop"), "camera": text(null="the task's camera"),
        "compression": choice("gzip", "lzf", null="no compression"), "compression_level": integer(0, 9, null="default"),
        "valid_fraction": fraction(high_open=True), "progress": flag(), "out": output_file(null="no import"),
        "proprio_key": text(null="automatic"), "import_num_demos": count(null="all"), "keep_failed": flag(),
        "expert": any_of(text(), mapping(), null="each task's default expert"),
        "expert_weights": path(null="the shipped weights"),
    },
    "embed": {
        "encoder": text(), "weights": path(null="the entry's default"), "demos": input_path(null="use task=/suite="),
        "task": text(null="use demos= or suite="), "suite": text(null="use demos= or task="), "demos_dir": path(),
        "kind": choice("tokens", "summary"), "cache_dir": output_dir(), "device": text(), "threads": THREADS,
        "chunk_size": count(), "rebuild": flag(),
    },
    "train": {
        "encoder": text(), "weights": path(null="the entry's default"), "task": text(null="use suite="),
        "suite": text(null="use task="), "head": text(), "seed": SEED, "demos_dir": path(),
        "demos": input_path(null="<demos_dir>/<family>/<task>.hdf5"), "split": text(null="all demos"),
        "cache_dir": output_dir(), "out_dir": output_dir(), "device": text(), "threads": THREADS, "force": flag(),
        "bc.epochs": count(), "bc.batch_size": count(2), "bc.lr": number(0, low_open=True),
        "bc.weight_decay": number(0), "bc.eval_every": count(), "bc.history": count(), "bc.fusion": text(),
        "bc.action_norm": text(), "bc.proprio_norm": text(), "bc.head_config": mapping(), "bc.progress": flag(),
        "bc.precision": choice("fp32", "bf16"),
        "eval.episodes": count(), "eval.base_seed": SEED, "eval.num_envs": count(), "eval.groups": count(),
        "eval.preset": text(null="the demos' preset"), "eval.resolution": count(null="the demos' resolution"),
        "eval.crop": any_of(count(), choice("demos"), null="no crop"), "eval.horizon": count(null="the task's horizon"),
        "eval.video": flag(), "eval.video_episodes": count(0), "eval.progress": flag(),
    },
    "evaluate": {
        "run": input_path(null="none given: the command asks for one", note="a run directory written by `theia-eval train`"), "checkpoint": choice("best", "last"),
        "episodes": count(), "base_seed": SEED, "num_envs": count(), "groups": count(), "video": flag(),
        "force": flag(), "device": text(), "threads": THREADS, "progress": flag(),
    },
    "distill": {
        "teachers": any_of(text(), list_of(any_of(text(), mapping()))), "teacher_weights": mapping(), "teacher_weights.*": path(), "teacher_dtype": text(),
        "student": text(), "image_size": count(null="the student's own"), "data": any_of(path(), list_of(path())),
        "allow_upsample": flag(), "val_fraction": fraction(high_open=True),
        "val_tasks": any_of(text(), list_of(text()), null="hold out by val_fraction"),
        "targets": choice("cached", "online"), "cache_dir": output_dir(null="under the data root"),
        "cache_dtype": choice("float16", "bfloat16"), "shard_size": count(), "extract_batch": count(),
        "stats": input_path(null="computed from the data"), "translator": text(), "translator_hidden_factor": number(0, low_open=True),
        "run_dir": output_dir(null="runs/distill/<student>-<teachers>-<data>"), "resume": flag(), "export": flag(),
        "seed": SEED, "device": text(), "threads": THREADS,
        "train.steps": count(null="epochs x batches per epoch"), "train.epochs": number(0, low_open=True),
        "train.batch_size": count(), "train.grad_accum": count(), "train.base_lr": number(0, low_open=True),
        "train.lr_base_batch": count(), "train.warmup_ratio": fraction(), "train.warmup_start_factor": fraction(),
        "train.lr_decay": choice("none", "cosine"), "train.lr_final_factor": fraction(),
        "train.weight_decay": number(0), "train.betas": list_of(fraction(high_open=True)),
        "train.translator_lr_factor": number(0, low_open=True), "train.cos_weight": number(0),
        "train.l1_weight": number(0), "train.amp": choice("auto", "bf16", "fp16", "off"), "train.compile": flag(),
        "train.channels_last": flag(), "train.attention": choice("auto", "sdpa", "matmul"),
        "train.num_workers": count(0), "train.log_every": count(), "train.val_every": count(),
        "train.ckpt_every": count(), "train.tensorboard": flag(), "train.progress": flag(),
        "train.min_std": number(0, low_open=True), "train.val_max_images": count(0),
        "train.stop_at": count(null="run to the end"), "train.export_at": any_of(count(), list_of(count()), null="none"),
        **{f"frames.{k}": r for k, r in FRAMES.items()},
    },
    "decode": {
        "model": path(note="anything load_theia takes"), "media": path(null="none given: the command asks for one"),
        "out": output_dir(null="decoded/<media name>"), "stats": input_path(null="the checkpoint's own"),
        "teachers": any_of(text(), list_of(text()), null="every teacher the student predicts"), "device": text(),
        "batch_size": count(), "every": count(), "max_frames": count(null="every kept frame"),
        "fps": number(0, low_open=True, null="the video's rate / every"), "max_images": count(0),
        "score_images": count(null="every sample"), "on_missing_weights": choice("error", "pca"),
        "decoder_weights": mapping(), "decoder_weights.*": path(), "top_k": integer(0, 1000),
        "sam.points_per_side": count(), "sam.points_per_batch": count(), "sam.pred_iou_thresh": number(),
        "sam.stability_score_thresh": number(), "sam.stability_offset": number(0), "sam.box_nms_thresh": fraction(),
        "sam.min_area": count(0),
    },
    "frames": FRAMES,
    "sweep": {
        "launcher": choice("sequential", "joblib", "submitit", "submitit-local"), "jobs": count(),
        "launcher_overrides": list_of(text()), "out_dir": output_dir(), "store": output_file(),
        "store_journal": choice("wal", "delete"), "demos_dir": output_dir(), "cache_dir": output_dir(),
        "students_dir": output_dir(), "device": text(), "threads": THREADS, "embed_batch": count(),
        "leaderboard": flag(),
    },
    "ablation": {
        "sweep_dir": input_path(null="none given: the command asks for one", note="a sweep's out_dir"),
        "store": input_path(null="the sweep's own store"), "head": text(), "checkpoint": choice("best", "last"),
        "out_dir": output_dir(null="<sweep_dir>/ablation"), "uncertainty.resamples": count(100),
        "uncertainty.seed": SEED, "uncertainty.resample": list_of(choice("tasks", "seeds", "episodes")),
    },
    "leaderboard": {
        "results": any_of(input_path(note="the results store of a sweep"), list_of(input_path()),
                          null="none given: the command asks for one"),
        "out_dir": output_dir(null="<results folder>/leaderboard"),
        "sweep": text(null="all sweeps"), "pools": mapping(null="none"), "mujoco_suites": list_of(text()),
        "export": choice("parquet", "csv", null="no export"), "claims": any_of(text(), list_of(), null="none"),
        "runs_root": input_path(null="where the store says"), "uncertainty.resamples": count(),
        "uncertainty.seed": SEED, "uncertainty.resample": list_of(choice("tasks", "seeds", "episodes")),
    },
    "entropy": {
        "encoders": any_of(choice("results"), list_of()), "results": input_path(null="no scores"),
        "images": path(null="skimage, or each task's demo frames with sweep_dir"),
        "sweep_dir": input_path(null="no sweep: encoders and images as given"),
        "num_images": count(), "bins": count(2), "bins_list": list_of(count(2)), "token_set": choice("all", "interior"),
        "score.head": text(null="conv"), "score.checkpoint": choice("last", "best"), "score.sweep": text(null="all"),
        "mujoco_suites": list_of(text()), "bootstrap": count(), "min_encoders": count(), "min_relative_spread": number(0),
        "seed": SEED, "device": text(), "out_dir": output_dir(),
    },
    "quickstart": {
        "grid": text(), "out_dir": output_dir(), "work_dir": output_dir(), "device": text(), "threads": THREADS,
        "embed_batch": count(), "entropy.images": path(), "entropy.num_images": count(), "entropy.bins": count(2),
        "entropy.bins_list": list_of(count(2)), "entropy.token_set": choice("all", "interior"),
        "claims": any_of(text(), list_of(), null="none"), "sweep_overrides": list_of(text()),
    },
}


def _relations_train(cfg: Mapping) -> list[str]:
    ev = cfg.get("eval") or {}
    out = []
    if isinstance(ev.get("groups"), int) and isinstance(ev.get("num_envs"), int) and ev["groups"] > ev["num_envs"]:
        out.append(f"eval.groups={ev['groups']} is more than eval.num_envs={ev['num_envs']}: each group needs at least "
                   "one env (use eval.groups=1, or eval.groups=2 with eval.num_envs>=2)")
    return out


def _relations_evaluate(cfg: Mapping) -> list[str]:
    return _relations_train({"eval": cfg})


def _relations_demos(cfg: Mapping) -> list[str]:
    crop, res = cfg.get("crop"), cfg.get("resolution")
    if isinstance(crop, int) and isinstance(res, int) and crop > res:
        return [f"crop={crop} is larger than resolution={res}: the crop must fit in the render (or crop=null)"]
    return []


RELATIONS: dict[str, Callable[[Mapping], list[str]]] = {
    "train": _relations_train, "evaluate": _relations_evaluate, "demos": _relations_demos}


# --- checking -------------------------------------------------------------------------------------
def flat_items(cfg: Mapping, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested mapping, mappings included (their own key) and their leaves."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        out[key] = v
        if isinstance(v, Mapping):
            out.update(flat_items(v, key + "."))
    return out


def rule_for(schema: Mapping[str, Rule], key: str) -> Rule | None:
    """The rule of a dotted key: an exact entry, else a wildcard one (`teacher_weights.*`)."""
    if key in schema:
        return schema[key]
    return next((r for pattern, r in schema.items() if "*" in pattern and fnmatch.fnmatchcase(key, pattern)), None)


def shown(value: Any, rule: Rule) -> str:
    """A value as the message shows it, with its type when the type is the problem."""
    wants_int = rule.kind == "int" or (rule.kind == "any_of" and any(r.kind == "int" for r in rule.items))
    if isinstance(value, str):
        return f"'{value}' (a text)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, float) and wants_int:
        return f"{value} ({'a real number' if value.is_integer() else 'a fraction'})"
    if isinstance(value, (list, tuple)):
        return f"{list(value)} (a list)"
    if isinstance(value, Mapping):
        return f"{dict(value)} (a mapping)"
    return repr(value)


def problems(name: str, cfg: Mapping) -> list[str]:
    """Every value of a plain config that breaks its rule, as sentences."""
    schema = SCHEMAS.get(name, {})
    found = []
    for key, value in flat_items(cfg).items():
        rule = rule_for(schema, key)
        if rule is None:
            continue
        if value is None:
            if rule.null is None:
                found.append(f"{key} is null (empty) but must be {rule.describe()}")
            continue
        if not rule.accepts(value):
            found.append(f"{key}={shown(value, rule)} is not allowed: {key} must be {rule.describe()}")
    if not found and name in RELATIONS:
        found += RELATIONS[name](cfg)
    return found


def check_config(name: str, cfg: Any, where: str = "") -> None:
    """Raise an InputError listing every bad value of config `name` (a DictConfig or a plain mapping)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    bad = problems(name, plain)
    if bad:
        origin = f" in {where}" if where else ""
        raise InputError(f"bad setting{'s' if len(bad) > 1 else ''} for `theia-eval {name}`{origin}: "
                         + "; ".join(bad) + ". See the comments in configs/" + f"{name}.yaml (`theia-eval {name} --help`).")


# --- paths ----------------------------------------------------------------------------------------
def nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def probe_writable(folder: Path) -> str | None:
    """Create and remove a temporary file in `folder`; the OS error text when that fails, else None."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".theia-eval-write-test-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def output_problem(key: str, value: str, is_dir: bool) -> str | None:
    """Why a file or folder cannot be written at `value` (None when it can): checked without creating it."""
    p = Path(value).expanduser()
    what = "folder" if is_dir else "file"
    if os.path.lexists(p):
        if is_dir and not p.is_dir():
            return f"{key}={value} is a file, not a folder: pass a folder path (a new one is created)"
        if not is_dir and p.is_dir():
            return f"{key}={value} is a folder, not a file: pass a file path"
        folder = p if is_dir else p.parent
    else:
        folder = nearest_existing(p)
        if not folder.is_dir():
            return (f"{key}={value} cannot be created: {folder} is a file, so no {what} can be made below it; "
                    "pass another path")
    error = probe_writable(folder)
    if error:
        return f"{key}={value} is not writable ({error} in {folder}): choose another {what} or fix its permissions"
    return None


def input_problem(key: str, value: str) -> str | None:
    p = Path(value).expanduser()
    if not p.exists():
        return f"{key}={value} does not exist: check the path (quote it if it holds spaces or special characters)"
    if not os.access(p, os.R_OK):
        return f"{key}={value} is not readable (permissions)"
    return None


def check_paths(name: str, cfg: Any) -> None:
    """Input paths exist and output paths can be written (tested with a temporary file); no folder is created."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    schema = SCHEMAS.get(name, {})
    bad = []
    for key, value in flat_items(plain).items():
        rule = rule_for(schema, key)
        if rule is None or rule.kind != "path" or not isinstance(value, str) or not rule.path_use:
            continue
        if rule.path_use == "input":
            bad.append(input_problem(key, value))
        else:
            bad.append(output_problem(key, value, rule.path_use == "output_dir"))
    bad = [b for b in bad if b]
    if bad:
        raise InputError(f"bad path{'s' if len(bad) > 1 else ''} for `theia-eval {name}`: " + "; ".join(bad) + ".")


# --- Hydra quoting --------------------------------------------------------------------------------
def hydra_quoted(value: str) -> str:
    """`value` as a single-quoted Hydra string (quotes and the backslashes before them escaped)."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + escaped.replace("'", "\\'") + "'"


def shell_word(override: str) -> str:
    """How to type an override in a POSIX shell so that it reaches theia-eval unchanged."""
    if not re.search(r"[\"$`\\!]", override):
        return f'"{override}"'
    return "'" + override.replace("'", "'\"'\"'") + "'"


def _path_like(rule: Rule | None) -> bool:
    return rule is not None and (rule.kind == "path" or (rule.kind == "any_of" and any(r.kind == "path"
                                                                                    for r in rule.items)))


def quote_overrides(name: str, overrides: list[str]) -> list[str]:
    """Quote the values of path keys for Hydra (spaces, commas, '=', brackets, quotes, non-ASCII), leaving
    null, lists, dicts and values already quoted as they are."""
    schema = SCHEMAS.get(name, {})
    out = []
    for o in overrides:
        key, sep, value = o.partition("=")
        bare = key.lstrip("+~")
        if (sep and _path_like(rule_for(schema, bare)) and value and value != "null"
                and value[0] not in "'\"[{"):
            o = f"{key}={hydra_quoted(value)}"
        out.append(o)
    return out


@dataclass
class OverrideProblem:
    """One override Hydra cannot parse, with the quoting that makes it work."""

    override: str
    error: str
    fix: str = field(default="")


def unparsable(overrides: list[str]) -> OverrideProblem | None:
    """The first override Hydra's grammar refuses (None when all parse)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except Exception as exc:  # noqa: BLE001  (Hydra raises several grammar error types)
            key, _, value = o.partition("=")
            fix = shell_word(f"{key}={hydra_quoted(value)}") if value and value[0] not in "'\"" else ""
            return OverrideProblem(o, " ".join(str(exc).split()), fix)
    return None
