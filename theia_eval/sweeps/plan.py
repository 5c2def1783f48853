"""From a sweep config to a plan: validated names, resolved cell configs, cell identities, stage jobs.

A sweep config (configs/sweep/<name>.yaml) names encoders, an optional distill stage (its students join
the encoder list under their labels), suites and/or tasks, heads, seeds, the demo recipe and overrides of
configs/train.yaml, optionally per task family (suite_overrides: {dmc: {demos: {...}, train: {...}}}).
`build_plan` checks every name and key before any work starts, then lists the jobs of the four stages,
in order:

  demos    one per task: collect the expert demos (shared by every cell of the task)
  distill  one per student: render its frame set if asked, distill, export
  embed    one per (encoder, input kind): the embedding cache of every task's demos
  train    one per cell (encoder x task x head x seed): train_task, then append rows to the store

A cell's identity (`config_hash`) is the hash of what decides its result: encoder name and weights (a
student's distill config, not its path), task, head, seed, the bc/eval settings and the demo recipe.
Paths, devices, progress bars and the number of parallel environments are not part of it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from theia_eval.config import to_plain
from theia_eval.encoder_entry import ENTRY_KEYS, EncoderEntry, entry_list, folder_name, parse_encoder  # noqa: F401
from theia_eval.errors import InputError, unknown_name
from theia_eval.hashing import stable_hash
from theia_eval.schema import check_config
from theia_eval.sweeps.protocol import deviations, protocol_label

PLAN_FORMAT = 1
# keys of a cell config that do not change its result
NON_IDENTITY = {"bc.progress", "eval.progress", "eval.video", "eval.video_episodes", "eval.num_envs", "device", "threads",
                "out_dir", "cache_dir", "demos_dir", "demos", "suite", "weights", "encoder"}
# keys of a distill config that do not change the student
DISTILL_NON_IDENTITY = {"run_dir", "device", "resume", "cache_dir", "extract_batch", "train.progress",
                        "train.num_workers", "train.log_every", "train.tensorboard", "train.stop_at"}
DEMO_KEYS = ("num_demos", "seed", "post_success_steps", "horizon", "max_failures", "preset", "resolution", "crop",
             "camera", "workers", "compression", "compression_level", "valid_fraction")
DEMO_IDENTITY = ("num_demos", "seed", "post_success_steps", "horizon", "preset", "resolution", "crop", "camera",
                 "valid_fraction")
# the expert that makes the demos: in a recipe (and its identity) only when set, so recipes of the default experts
# keep their folders and cell hashes
DEMO_EXPERT_KEYS = ("expert", "expert_weights")


def drop_keys(cfg: Mapping, dotted: set[str], prefix: str = "") -> dict:
    """A copy of a nested dict without the dotted keys."""
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if key in dotted:
            continue
        out[k] = drop_keys(v, dotted, key + ".") if isinstance(v, Mapping) else v
    return out


# ------------------------------------------------------------------------------------------- encoders
def with_default_weights_key(entry: EncoderEntry) -> EncoderEntry:
    """Weights enter cell identities by content where they are files: an entry using its registry default
    weights gets their fingerprint (e.g. the shipped theia-offline file's hash), and local weights (a file or
    an export directory) the hash of their files instead of their path. So a retrained student never passes
    for the old one, and a moved checkout keeps its cells."""
    from theia_eval.encoders import get_encoder_config
    from theia_eval.encoders.weights import default_weights_key, files_key

    if entry.student is not None:
        return entry
    if entry.weights is None:
        key = default_weights_key(get_encoder_config(entry.name))
    elif looks_local(entry.weights) and Path(entry.weights).expanduser().exists():
        key = files_key(Path(entry.weights).expanduser())
    else:
        key = None
    return entry if key is None else dataclasses.replace(entry, weights_key=key)


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def looks_local(weights: str) -> bool:
    """A file path rather than a hub id (owner/name) or a random-init request."""
    return (weights.startswith(("/", ".", "~")) or Path(weights).suffix in WEIGHT_SUFFIXES
            or weights.count("/") > 1  # a hub id is owner/name; a/b/c is a path
            or Path(weights).expanduser().exists())


def check_encoder(entry: EncoderEntry) -> None:
    """The name is registered and, when no weights are given, its default weights are available offline."""
    from theia_eval.encoders import get_encoder_config
    from theia_eval.encoders.registry import get_entry
    from theia_eval.encoders.weights import weights_available

    get_entry(entry.name)  # an unknown name raises here; hf:/timm:/py: names are located (offline) too
    if entry.student is not None:  # made by the sweep's distill stage
        return
    if entry.weights is not None:
        if looks_local(entry.weights) and not Path(entry.weights).expanduser().exists():
            raise InputError(f"weights {entry.weights} of encoder '{entry.label}' do not exist: download the "
                             "checkpoint there (or set THEIA_EVAL_WEIGHTS), or drop the encoder from the sweep.")
        return
    if not weights_available(get_encoder_config(entry.name)):
        raise InputError(f"encoder '{entry.name}' has no weights available offline: download them first "
                         f"(HF_HUB_OFFLINE=0 theia-eval encoders {entry.name}), give {{name: {entry.name}, "
                         "weights: PATH}, or drop it from the sweep.")


# ------------------------------------------------------------------------------------------- students
@dataclass(frozen=True)
class StudentEntry:
    """A student of the distill stage: its resolved distill config, frame-set settings and run dir."""

    label: str
    config: dict
    frames: dict | None
    run_dir: str
    key: str  # hash of what decides the student


STUDENT_KEYS = {"label", "teachers", "student", "data", "seed", "frames", "overrides"}


def parse_student(item: Any, students_dir: Path, device: str) -> StudentEntry:
    """A distill-stage entry -> StudentEntry (composes configs/distill.yaml with its settings)."""
    from theia_eval.config import compose

    item = to_plain(item)
    if not isinstance(item, Mapping) or "label" not in item or set(item) - STUDENT_KEYS:
        raise InputError(f"bad distill entry {item!r}: use keys {sorted(STUDENT_KEYS)} (label required).")
    cfg = compose("distill", [], paths=False)
    settings = {k: item[k] for k in ("teachers", "student", "seed") if k in item}
    frames = frame_settings(item["frames"]) if item.get("frames") is not None else None
    if frames is None and item.get("data") is None:
        raise InputError(f"student '{item['label']}' needs data=PATH (images) or frames={{...}} (a frame set "
                         "the sweep renders).")
    cfg = merge_checked(cfg, {**settings, **(item.get("overrides") or {})}, f"distill entry '{item['label']}'")
    check_config("distill", cfg, f"the sweep's distill entry '{item['label']}'")
    frames_dir = students_dir / "frames" / stable_hash(frames, 10) if frames else None
    data = item.get("data")
    cfg.data = str(frames_dir) if frames_dir else ([str(d) for d in data] if isinstance(data, list) else str(data))
    ident = drop_keys(to_plain(cfg), DISTILL_NON_IDENTITY)
    ident["frames"] = frames
    key = stable_hash(ident, 12)
    run_dir = students_dir / f"{item['label']}-{key}"
    cfg.run_dir, cfg.device = str(run_dir), device
    if cfg.get("cache_dir") is None:
        cfg.cache_dir = str(students_dir / "targets")
    if frames is not None:
        frames["out"] = str(frames_dir)
    check_student(cfg)
    return StudentEntry(str(item["label"]), to_plain(cfg), frames, str(run_dir), key)


def frame_settings(value: Mapping) -> dict:
    """configs/frames.yaml merged with the entry's frames block (unknown keys refused)."""
    from theia_eval.config import compose

    base = compose("frames", [], paths=False)
    merged = to_plain(merge_checked(base, dict(value), "frames block"))
    merged.pop("out", None)
    return merged


def check_student(cfg: DictConfig) -> None:
    """Teacher and student names exist (the teachers' weights are checked when they load)."""
    from theia_eval.distill import sim_teachers  # noqa: F401  (registers the simulator teachers)
    from theia_eval.distill.student import student_size
    from theia_eval.distill.teacher_sets import resolve_teachers
    from theia_eval.distill.teachers import TEACHERS
    from theia_eval.encoders import list_encoders
    from theia_eval.encoders.registry import is_encoder

    student_size(cfg.student)
    for spec in resolve_teachers(cfg.teachers, to_plain(cfg.get("teacher_weights"))):
        if spec.name not in TEACHERS and not is_encoder(spec.name):
            raise unknown_name("teacher", spec.name, [*TEACHERS, *list_encoders()])


def open_empty_maps(node: DictConfig) -> None:
    """Let keys be added under maps that are empty by default (free-form settings such as bc.head_config)."""
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if len(child) == 0:
                OmegaConf.set_struct(child, False)
            else:
                open_empty_maps(child)


def merge_checked(base: DictConfig, overrides: Mapping, what: str) -> DictConfig:
    """Merge a dict into a struct config; unknown keys raise an InputError naming them."""
    from omegaconf.errors import OmegaConfBaseException

    OmegaConf.set_struct(base, True)
    open_empty_maps(base)
    try:
        return OmegaConf.merge(base, OmegaConf.create(dict(overrides)))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or str(exc).split("\n")[0]
        valid = ", ".join(str(k) for k in base.keys())
        raise InputError(f"bad key '{key}' in the sweep's {what}: {str(exc).splitlines()[0]}. "
                         f"Top-level keys there: {valid}.") from exc


# ------------------------------------------------------------------------------------------- tasks
def expand_tasks(suites: Iterable[str], tasks: Iterable[str]) -> list[str]:
    """Suites' tasks then the named tasks, without repeats (every name checked)."""
    from theia_eval.envs.tasks import get_suite, get_task

    names = [t for s in suites for t in get_suite(s).tasks] + [get_task(t).name for t in tasks]
    if not names:
        raise InputError("the sweep names no tasks: give suites: [...] and/or tasks: [...].")
    return list(dict.fromkeys(names))


def demo_recipe(demos: Mapping) -> dict:
    """The demo settings of the sweep (configs/demos.yaml keys), validated."""
    from theia_eval.config import compose

    base = to_plain(compose("demos", [], paths=False))
    unknown = set(demos) - set(DEMO_KEYS) - set(DEMO_EXPERT_KEYS)
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)} in the sweep's demos block; valid: "
                         f"{', '.join(DEMO_KEYS + DEMO_EXPERT_KEYS)}.")
    recipe = {k: demos.get(k, base.get(k)) for k in DEMO_KEYS}
    recipe.update({k: to_plain(demos[k]) for k in DEMO_EXPERT_KEYS if demos.get(k) is not None})
    check_config("demos", recipe, "the sweep's demos block")
    return recipe


def demos_dir_for(root: Path, recipe: Mapping) -> Path:
    """Demo files of one recipe live in their own folder, so recipes never mix."""
    crop = recipe["crop"] if recipe["crop"] is not None else "none"
    tag = (f"{recipe['num_demos']}demos-{recipe['preset']}{recipe['resolution']}-crop{crop}-"
           f"{stable_hash(demo_identity(recipe), 8)}")
    return root / tag


def demo_identity(recipe: Mapping) -> dict:
    """The recipe keys that change the demos (the expert keys only when set)."""
    return {k: recipe[k] for k in DEMO_IDENTITY + DEMO_EXPERT_KEYS if k in recipe}


def demo_config(recipe: Mapping):
    """envs.demos.DemoConfig of a recipe (collection happens in this process with recipe['workers'])."""
    from theia_eval.envs.dataset import Storage
    from theia_eval.envs.demos import DemoConfig
    from theia_eval.envs.renderer import RenderSpec

    return DemoConfig(num_demos=int(recipe["num_demos"]), base_seed=int(recipe["seed"]),
                      post_success_steps=recipe["post_success_steps"], horizon=recipe["horizon"],
                      max_failures=recipe["max_failures"], workers=int(recipe["workers"]),
                      render=RenderSpec(recipe["preset"], int(recipe["resolution"]), recipe["crop"]),
                      camera=recipe["camera"], storage=Storage(recipe["compression"], recipe["compression_level"]),
                      valid_fraction=float(recipe["valid_fraction"]), progress=False,
                      expert=recipe.get("expert"), expert_weights=recipe.get("expert_weights"))


# ------------------------------------------------------------------------------------------- the jobs
# Field order is the key order of plan.json: keep it.
class Job:
    """What every stage job can say about the jobs it needs (for blocking the dependants of a failed job)."""

    id: str

    @property
    def tasks_needed(self) -> tuple[str, ...]:
        """Tasks whose demos this job reads."""
        return ()

    @property
    def student(self) -> str | None:
        """The distill-stage student whose export this job encodes with (None: none)."""
        return None

    @property
    def group(self) -> str | None:
        """The embed job (encoder label : input kind) whose caches this job reads (None: none)."""
        return None


@dataclass
class DemoJob(Job):
    """Collect (or check) the demos of one task."""

    id: str
    task: str
    recipe: dict
    demos_dir: str
    path: str
    collect: bool


@dataclass
class DistillJob(Job):
    """Distill one student of the sweep (its id is its label)."""

    id: str
    label: str
    config: dict
    frames: dict | None
    run_dir: str
    key: str

    @classmethod
    def of(cls, s: StudentEntry) -> DistillJob:
        return cls(s.label, **asdict(s))


@dataclass
class EmbedDemos:
    """One demo file an embed job encodes, and the split of it the cells train on."""

    path: str
    split: str | None


@dataclass
class EmbedJob(Job):
    """The embedding caches of one encoder (label) and input kind, for every task of its cells."""

    id: str
    label: str
    encoder: EncoderEntry
    kind: str
    tasks: list[str]
    demos: list[EmbedDemos]
    cache_dir: str
    device: str
    batch: int

    @property
    def tasks_needed(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    @property
    def student(self) -> str | None:
        return self.encoder.student

    @classmethod
    def from_dict(cls, d: Mapping) -> EmbedJob:
        return cls(**{**d, "encoder": encoder_from_dict(d["encoder"]), "demos": [EmbedDemos(**x) for x in d["demos"]]})


@dataclass
class TrainJob(Job):
    """One train cell (encoder x task x head x seed): its resolved train config, identity hash, protocol label."""

    id: str
    config_hash: str
    label: str
    encoder: EncoderEntry
    task: str
    suite: str
    head: str
    kind: str
    seed: int
    config: dict
    protocol: str
    deviations: list[str]
    sweep: str

    @property
    def tasks_needed(self) -> tuple[str, ...]:
        return (self.task,)

    @property
    def student(self) -> str | None:
        return self.encoder.student

    @property
    def group(self) -> str:
        return f"{self.label}:{self.kind}"

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainJob:
        return cls(**{**d, "encoder": encoder_from_dict(d["encoder"])})


def encoder_from_dict(d: Mapping) -> EncoderEntry:
    """An EncoderEntry read back from plan.json (its lists as tuples)."""
    return EncoderEntry(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# ------------------------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """Everything the stage jobs need, as JSON-able data (written to <out_dir>/plan.json)."""

    name: str
    out_dir: str
    store: str
    journal: str
    threads: int | None
    demos: list[DemoJob] = field(default_factory=list)
    distill: list[DistillJob] = field(default_factory=list)
    embed: list[EmbedJob] = field(default_factory=list)
    train: list[TrainJob] = field(default_factory=list)
    format: int = PLAN_FORMAT

    def stage(self, name: str) -> list[Job]:
        return getattr(self, name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        if data.get("format") != PLAN_FORMAT:
            raise InputError(f"plan format {data.get('format')} is not {PLAN_FORMAT}: re-run `theia-eval sweep`.")
        return cls(**{**data, "demos": [DemoJob(**d) for d in data["demos"]],
                      "distill": [DistillJob(**d) for d in data["distill"]],
                      "embed": [EmbedJob.from_dict(d) for d in data["embed"]],
                      "train": [TrainJob.from_dict(d) for d in data["train"]]})


STAGES = ("demos", "distill", "embed", "train")


def build_plan(cfg: DictConfig) -> Plan:
    """Validate the sweep config and list every job (done or not). Raises before any work on bad input."""
    from theia_eval.policies.heads import head_input_kind, make_head_config

    sweep = cfg.sweep
    check_sweep_keys(sweep)
    out_dir = Path(cfg.out_dir)
    students = [parse_student(s, Path(cfg.students_dir), cfg.device) for s in (sweep.get("students") or [])]
    encoders = [EncoderEntry(s.label, "theia", s.run_dir, s.label, f"student:{s.key}") for s in students]
    encoders += [parse_encoder(e) for e in (sweep.get("encoders") or [])]
    check_unique([e.label for e in encoders], "encoder label")
    for e in encoders:
        check_encoder(e)
    encoders = [with_default_weights_key(e) for e in encoders]
    if not encoders:
        raise InputError("the sweep names no encoders: give encoders: [...] and/or students: [...].")
    tasks = expand_tasks(sweep.get("suites") or [], sweep.get("tasks") or [])
    heads = [str(h) for h in sweep.heads]
    all_heads = list(dict.fromkeys([*heads, *(h for e in encoders for h in (e.heads or ()))]))
    kinds = {h: head_input_kind(h) for h in all_heads}
    seeds = [int(s) for s in sweep.seeds]
    check_unique(heads, "head")
    check_unique([str(s) for s in seeds], "seed")
    families = {f: family_settings(cfg, f) for f in dict.fromkeys(task_family(t) for t in tasks)}
    unknown = set(to_plain(sweep.get("suite_overrides") or {})) - set(families)
    if unknown:
        raise InputError(f"suite_overrides names task families {sorted(unknown)} that the sweep has no tasks of "
                         f"(families here: {', '.join(families)}).")
    for e in encoders:
        if set(e.families or ()) - set(families):
            raise InputError(f"encoder '{e.label}' names task families {sorted(set(e.families) - set(families))} "
                             f"that the sweep has no tasks of (families here: {', '.join(families)}).")
    demo_jobs = [demo_job(t, *families[task_family(t)][:2]) for t in tasks]
    for _, _, base in families.values():
        for h in all_heads:
            make_head_config(h, to_plain(base.bc.head_config))
    grid = [(e, t, h, s) for e in encoders for t in tasks if e.families is None or task_family(t) in e.families
            for h in (e.heads or heads) for s in seeds]
    grid += extra_seed_cells(sweep.get("extra_seeds") or [], encoders, tasks, heads, seeds)
    cells = [cell_job(families[task_family(t)][2], e, t, h, s, kinds[h], families[task_family(t)][0], out_dir,
                      sweep.name) for e, t, h, s in grid]
    embeds = embed_jobs(cells, int(cfg.embed_batch))
    return Plan(sweep.name, str(out_dir), str(cfg.store), cfg.store_journal, cfg.get("threads"), demo_jobs,
                [DistillJob.of(s) for s in students], embeds, cells)


def task_family(task: str) -> str:
    from theia_eval.envs.tasks import get_task

    return get_task(task).suite


def family_settings(cfg: DictConfig, family: str) -> tuple[dict, Path, DictConfig]:
    """(demo recipe, its demos folder, base train config) of one task family: the sweep's demos/train blocks
    with the family's suite_overrides on top (e.g. 100 demos and 10 episodes for dmc)."""
    from theia_eval.config import compose

    sweep = cfg.sweep
    extra = to_plain((sweep.get("suite_overrides") or {}).get(family) or {})
    if set(extra) - {"demos", "train"}:
        raise InputError(f"suite_overrides.{family} may hold demos: and train: blocks, got {sorted(extra)}.")
    recipe = demo_recipe({**to_plain(sweep.get("demos") or {}), **(extra.get("demos") or {})})
    demos_dir = demos_dir_for(Path(cfg.demos_dir), recipe)
    base = merge_checked(compose("train", [], paths=False), to_plain(sweep.get("train") or {}), "train block")
    base = merge_checked(base, extra.get("train") or {}, f"suite_overrides.{family}.train block")
    check_config("train", base, f"the sweep's train block ({family} tasks)")
    base = merge_checked(base, {"demos_dir": str(demos_dir), "cache_dir": str(cfg.cache_dir), "device": cfg.device,
                                "bc": {"progress": False}, "eval": {"progress": False}}, "settings")
    return recipe, demos_dir, base


SWEEP_KEYS = ("name", "description", "students", "encoders", "suites", "tasks", "heads", "seeds", "extra_seeds",
              "demos", "train", "suite_overrides", "expected_cost")
EXTRA_SEED_KEYS = ("seeds", "tasks", "encoders", "heads")


def check_sweep_keys(sweep: Mapping) -> None:
    """A misspelt key of a sweep config (seedz: [...]) would be ignored silently: refuse it."""
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise unknown_name("sweep config key", str(key), SWEEP_KEYS)


def extra_seed_cells(blocks: Iterable, encoders: list[EncoderEntry], tasks: list[str], heads: list[str],
                     seeds: list[int]) -> list[tuple]:
    """More training seeds on part of the grid (where a verdict hangs on one seed), as
    `extra_seeds: [{seeds: [200, 300], tasks: [...], encoders: [labels] (default: all), heads: [...] (default: each
    encoder's)}]`: every named task, label and head must be in the grid, and no cell may be listed twice."""
    by_label = {e.label: e for e in encoders}
    cells, seen = [], set()
    for i, block in enumerate(to_plain(blocks)):
        where = f"extra_seeds[{i}]"
        if not isinstance(block, Mapping):
            raise InputError(f"{where} must be a mapping {{seeds: [...], tasks: [...], encoders: [...], heads: [...]}}, "
                             f"not {block!r}.")
        for key in block:
            if key not in EXTRA_SEED_KEYS:
                raise InputError(f"{where} has an unknown key '{key}'; valid keys: {', '.join(EXTRA_SEED_KEYS)}.")
        if not block.get("seeds") or not block.get("tasks"):
            raise InputError(f"{where} needs seeds: [...] and tasks: [...] (the tasks where a verdict hangs on one "
                             "seed).")
        for t in block["tasks"]:
            if t not in tasks:
                raise InputError(f"{where} names task '{t}', which is not in the sweep's grid "
                                 f"({', '.join(tasks)}).")
        labels = block.get("encoders") or list(by_label)
        for label in labels:
            if label not in by_label:
                raise InputError(f"{where} names encoder '{label}', which is not in the sweep's grid (encoders here: "
                                 f"{', '.join(by_label)}); when an override narrows sweep.encoders, narrow or drop "
                                 "extra_seeds too (sweep.extra_seeds=[]).")
        for s in block["seeds"]:
            if not isinstance(s, int) or isinstance(s, bool):
                raise InputError(f"{where}: seed {s!r} is not an integer.")
            if s in seeds:
                raise InputError(f"{where}: seed {s} is already one of the sweep's seeds ({seeds}); extra_seeds adds "
                                 "seeds the grid does not have.")
        for label in labels:
            e = by_label[label]
            own = list(e.heads or heads)
            chosen = list(block.get("heads") or own)
            for h in chosen:
                if h not in own:
                    raise InputError(f"{where}: encoder '{label}' has no head '{h}' in this sweep (its heads: "
                                     f"{', '.join(own)}).")
            for t in block["tasks"]:
                if e.families is not None and task_family(t) not in e.families:
                    continue
                for h in chosen:
                    for s in block["seeds"]:
                        if (label, t, h, s) in seen:
                            raise InputError(f"{where} lists the cell {label} x {t} x {h} x seed {s} a second time.")
                        seen.add((label, t, h, s))
                        cells.append((e, t, h, int(s)))
    return cells


def check_unique(items: list[str], what: str) -> None:
    seen = [x for i, x in enumerate(items) if x in items[:i]]
    if seen:
        raise InputError(f"{what} '{seen[0]}' appears twice in the sweep; labels must be unique "
                         "(give {name, label} entries).")


def demo_job(task: str, recipe: Mapping, demos_dir: Path) -> DemoJob:
    """Collect (or check) the demos of one task."""
    from theia_eval.envs.demos import demo_path
    from theia_eval.envs.tasks import get_task

    spec = get_task(task)
    path = demo_path(demos_dir, spec)
    if spec.make_expert is None and not path.is_file():
        raise InputError(f"{task} has no scripted expert and {path} does not exist: import its demos first "
                         f"(`theia-eval demos --import PICKLE task={task} out={path}`).")
    if spec.make_expert is not None and any(k in recipe for k in DEMO_EXPERT_KEYS):
        from theia_eval.envs.tasks import task_expert_source

        task_expert_source(spec, demo_config(recipe).expert_choice(spec))  # refuses a kind or weights file now
    return DemoJob(task, task, dict(recipe), str(demos_dir), str(path), spec.make_expert is not None)


def cell_job(base: DictConfig, enc: EncoderEntry, task: str, head: str, seed: int, kind: str, recipe: Mapping,
             out_dir: Path, sweep: str) -> TrainJob:
    """One train cell: its resolved train config, identity hash and protocol label."""
    from theia_eval.envs.tasks import get_task

    spec = get_task(task)
    cfg = to_plain(base)
    cfg.update(encoder=enc.name, weights=enc.weights, task=task, suite=None, head=head, seed=seed)
    ident = drop_keys(cfg, NON_IDENTITY)
    ident.update(encoder={"name": enc.name, "weights": enc.weights_key},
                 demos=demo_identity(recipe))
    config_hash = stable_hash(ident, 16)
    cfg["out_dir"] = str(out_dir / "runs" / folder_name(enc.label) / config_hash[:12])
    devs = deviations(cfg, recipe, spec.suite)
    return TrainJob(config_hash, config_hash, enc.label, enc, task, spec.suite, head, kind, seed, cfg,
                    protocol_label(devs), devs, sweep)


def embed_jobs(cells: list[TrainJob], batch: int = 64) -> list[EmbedJob]:
    """One job per (encoder label, input kind): the caches of all its tasks, built once for every seed/head."""
    from theia_eval.envs.demos import demo_path
    from theia_eval.envs.tasks import get_task

    groups: dict[tuple[str, str], EmbedJob] = {}
    for c in cells:
        cfg = c.config
        job = groups.setdefault((c.label, c.kind), EmbedJob(c.group, c.label, c.encoder, c.kind, [], [],
                                                            cfg["cache_dir"], cfg["device"], batch))
        if c.task not in job.tasks:
            job.tasks.append(c.task)
            job.demos.append(EmbedDemos(str(demo_path(cfg["demos_dir"], get_task(c.task))), cfg["split"]))
    return list(groups.values())
