"""The Theia student backbone (a transformers ViTModel) and the official Theia checkpoint layout.

Official layout (released theaiinstitute/theia-* safetensors, transformers-4 ViT names):
  backbone.model.embeddings.{cls_token, position_embeddings, patch_embeddings.projection.*}
  backbone.model.encoder.layer.N.{attention.attention.{query,key,value}, attention.output.dense,
      intermediate.dense, output.dense, layernorm_before, layernorm_after}.{weight,bias}
  backbone.model.layernorm.{weight,bias}
  translator.translator_heads.<teacher id>.*   (dropped when the student is used as an encoder)
Newer transformers name the same ViT parameters differently (layers.N.attention.q_proj, mlp.fc1 ...);
`official_key_map` translates between the two so either version reads and writes the official names.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from theia_eval.errors import CheckpointMismatchError, InputError, WeightsNotFoundError, unknown_name
from theia_eval.io import remove_stale_temp_files, temp_sibling
from theia_eval.encoders.weights import check_state

BACKBONE_PREFIX = "backbone.model."
TRANSLATOR_PREFIX = "translator.translator_heads."
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EXPORT_SUBDIR = "export"
FORMAT_NAME = "theia-official-safetensors"
FEATURE_REDUCE_OPTIONS = ("cls", "mean", "max", "none")
DEFAULT_LAYER_NORM_EPS = 1e-12  # facebook/deit-*-patch16-224 config.json


@dataclass(frozen=True)
class StudentSize:
    """Architecture of one student size (a plain ViT with a [CLS] token, no pooler)."""

    width: int
    depth: int
    heads: int
    mlp: int
    patch: int = 16
    image_size: int = 224
    hf_id: str | None = None  # the DeiT checkpoint the reference initialises from

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.patch
        return side, side


STUDENT_SIZES: dict[str, StudentSize] = {
    "nano": StudentSize(width=128, depth=6, heads=4, mlp=512),  # ours: a CPU-sized student
    "tiny": StudentSize(width=192, depth=12, heads=3, mlp=768, hf_id="facebook/deit-tiny-patch16-224"),
    "small": StudentSize(width=384, depth=12, heads=6, mlp=1536, hf_id="facebook/deit-small-patch16-224"),
    "base": StudentSize(width=768, depth=12, heads=12, mlp=3072, hf_id="facebook/deit-base-patch16-224"),
}
HEADS_BY_WIDTH: dict[int, int] = {s.width: s.heads for s in STUDENT_SIZES.values()}
HEADS_BY_BACKBONE_ID: dict[str, int] = {s.hf_id: s.heads for s in STUDENT_SIZES.values() if s.hf_id}

# official (transformers-4) per-layer module names -> transformers-5 names of the same parameters
_LAYER_RENAMES: dict[str, str] = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "layernorm_before",
    "layernorm_after": "layernorm_after",
}
_OFFICIAL_NAME_OF: dict[str, str] = {new: old for old, new in _LAYER_RENAMES.items()}
_NEW_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
_OFFICIAL_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.")


# --- the student ------------------------------------------------------------------------------
def vit_config(width: int, depth: int, heads: int, mlp: int, patch: int = 16, image_size: int = 224,
               layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS):
    """A transformers ViTConfig for a DeiT-style student (gelu, qkv bias, no dropout)."""
    from transformers import ViTConfig

    if width % heads:
        raise InputError(f"student width {width} is not divisible by num_heads={heads}; pick heads dividing the width.")
    return ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=mlp,
                     patch_size=patch, image_size=image_size, layer_norm_eps=layer_norm_eps, hidden_act="gelu",
                     qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def student_size(size: str) -> StudentSize:
    """The StudentSize registered under `size` (nano, tiny, small, base)."""
    if size not in STUDENT_SIZES:
        raise unknown_name("student size", size, STUDENT_SIZES)
    return STUDENT_SIZES[size]


def build_student(size: str):
    """A freshly initialised (trainable) student ViTModel of a registered size, without pooler."""
    from transformers import ViTModel

    s = student_size(size)
    return ViTModel(vit_config(s.width, s.depth, s.heads, s.mlp, s.patch, s.image_size), add_pooling_layer=False)


def vit_cost(s: StudentSize) -> tuple[float, float]:
    """(params in millions, GFLOPs per image with a multiply-add counted as 2) of a student size."""
    c, n = s.width, (s.image_size // s.patch) ** 2
    t = n + 1
    layer_params = 4 * (c * c + c) + 2 * c * s.mlp + s.mlp + c + 4 * c
    params = 3 * s.patch**2 * c + c + c + t * c + s.depth * layer_params + 2 * c
    layer_macs = 4 * t * c * c + 2 * t * t * c + 2 * t * c * s.mlp
    macs = n * 3 * s.patch**2 * c + s.depth * layer_macs
    return params / 1e6, 2 * macs / 1e9


# --- key names --------------------------------------------------------------------------------
def official_name(module_key: str) -> str:
    """Official checkpoint name of one ViTModel state-dict key (either transformers naming)."""
    if module_key.startswith("pooler."):
        raise InputError("the backbone has a pooler, which official Theia checkpoints do not; "
                         "build it with ViTModel(config, add_pooling_layer=False) (build_student does).")
    match = _NEW_LAYER_KEY.match(module_key)
    if match is None:
        return BACKBONE_PREFIX + module_key  # embeddings.*, layernorm.*, or already transformers-4 names
    layer, name, kind = match.groups()
    if name not in _OFFICIAL_NAME_OF:
        raise InputError(f"unsupported ViTModel parameter '{module_key}': this transformers version names ViT "
                         "layers in a way the Theia key map does not know; update _LAYER_RENAMES.")
    return f"{BACKBONE_PREFIX}encoder.layer.{layer}.{_OFFICIAL_NAME_OF[name]}.{kind}"


def official_key_map(model: nn.Module) -> dict[str, str]:
    """{official checkpoint key: key in model.state_dict()} for a student ViTModel."""
    return {official_name(k): k for k in model.state_dict()}


def backbone_state_official(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's parameters under their official names (detached CPU copies)."""
    state = model.state_dict()
    return {off: state[own].detach().to("cpu").clone().contiguous() for off, own in official_key_map(model).items()}


# --- reading checkpoints ----------------------------------------------------------------------
@dataclass
class TheiaCheckpoint:
    """The tensors and config of one checkpoint in the official layout."""

    file: Path
    backbone: dict[str, torch.Tensor]  # official keys, "backbone.model." kept
    translators: dict[str, dict[str, torch.Tensor]]  # teacher id -> that head's state dict
    config: dict = field(default_factory=dict)

    @property
    def teacher_ids(self) -> list[str]:
        return sorted(self.translators)


def resolve_checkpoint_file(path: str | Path) -> Path:
    """model.safetensors inside a checkpoint dir or a run dir's export/, or a .safetensors file itself."""
    p = Path(path).expanduser()
    candidates = [p] if p.is_file() else [p / WEIGHTS_FILE, p / EXPORT_SUBDIR / WEIGHTS_FILE]
    for c in candidates:
        if c.is_file():
            if c.suffix != ".safetensors":
                raise InputError(f"{c} is not a .safetensors file; Theia checkpoints are read from model.safetensors "
                                 "in the official layout (export one with export_theia).")
            return c
    raise WeightsNotFoundError(
        f"no Theia checkpoint at {p}: looked for {', '.join(str(c) for c in candidates)}. Pass a directory with "
        f"{WEIGHTS_FILE} (official HF layout or export_theia output), a run dir with {EXPORT_SUBDIR}/{WEIGHTS_FILE}, "
        "or the .safetensors file itself.")


def split_teacher_id(rest: str, known: list[str]) -> tuple[str, str]:
    """'facebook/dinov2-large.adapter.0.weight' -> ('facebook/dinov2-large', 'adapter.0.weight').

    Known ids (from config.json) win; else the id is owner/name and ends at the first '.' after the '/'."""
    for tid in sorted(known, key=len, reverse=True):
        if rest.startswith(tid + "."):
            return tid, rest[len(tid) + 1:]
    slash = rest.find("/")
    dot = rest.find(".", slash + 1)
    if dot < 0:
        raise CheckpointMismatchError(f"translator key '{TRANSLATOR_PREFIX}{rest}' has no parameter name after the "
                                      "teacher id; the checkpoint is not in the official Theia layout.")
    return rest[:dot], rest[dot + 1:]


def split_state(state: dict[str, torch.Tensor], known_teachers: list[str]):
    """Split an official state dict into backbone tensors and per-teacher translator state dicts."""
    backbone, translators = {}, {}
    for key, value in state.items():
        if key.startswith(BACKBONE_PREFIX):
            backbone[key] = value
        elif key.startswith(TRANSLATOR_PREFIX):
            tid, name = split_teacher_id(key[len(TRANSLATOR_PREFIX):], known_teachers)
            translators.setdefault(tid, {})[name] = value
        else:
            raise CheckpointMismatchError(
                f"unexpected key '{key}': official Theia checkpoints only hold '{BACKBONE_PREFIX}*' and "
                f"'{TRANSLATOR_PREFIX}<teacher id>.*' tensors. Check that this is a Theia checkpoint.")
    if not backbone:
        raise CheckpointMismatchError(f"no '{BACKBONE_PREFIX}*' tensors in the checkpoint: not a Theia student.")
    return backbone, translators


def read_json(path: Path) -> dict:
    """A JSON object from disk, or {} when the file is absent."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); fix or delete it.") from exc
    return data if isinstance(data, dict) else {}


def read_theia_checkpoint(path: str | Path) -> TheiaCheckpoint:
    """Read model.safetensors (+ config.json beside it) in the official Theia layout."""
    from safetensors.torch import load_file

    file = resolve_checkpoint_file(path)
    config = read_json(file.parent / CONFIG_FILE)
    backbone, translators = split_state(load_file(str(file)), list(config.get("teacher_ids") or []))
    return TheiaCheckpoint(file=file, backbone=backbone, translators=translators, config=config)


# --- inferring the architecture ----------------------------------------------------------------
def _tensor(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    key = BACKBONE_PREFIX + name
    if key not in state:
        raise CheckpointMismatchError(f"missing key '{key}': cannot infer the student architecture; "
                                      "the checkpoint is not in the official Theia layout.")
    return state[key]


def infer_heads(width: int, config: dict, num_heads: int | None) -> int:
    """Heads: explicit num_heads, else config.json, else the DeiT width table."""
    if num_heads is not None:
        return int(num_heads)
    if "num_attention_heads" in config:
        return int(config["num_attention_heads"])
    if config.get("backbone") in HEADS_BY_BACKBONE_ID:
        return HEADS_BY_BACKBONE_ID[config["backbone"]]
    if width in HEADS_BY_WIDTH:
        return HEADS_BY_WIDTH[width]
    raise InputError(f"cannot tell the number of attention heads of a width-{width} student: config.json has no "
                     f"num_attention_heads and {width} is not a known width {sorted(HEADS_BY_WIDTH)}. "
                     "Pass num_heads=... (e.g. create_encoder('theia', weights=PATH, num_heads=4)).")


def infer_size(ckpt: TheiaCheckpoint, num_heads: int | None = None) -> StudentSize:
    """The student architecture of a checkpoint, from tensor shapes (heads from config.json or the table)."""
    state = ckpt.backbone
    width = _tensor(state, "embeddings.cls_token").shape[-1]
    patch = _tensor(state, "embeddings.patch_embeddings.projection.weight").shape[-1]
    positions = _tensor(state, "embeddings.position_embeddings").shape[1] - 1
    side = math.isqrt(positions)
    if side * side != positions:
        raise CheckpointMismatchError(f"position_embeddings hold {positions} patch positions, not a square grid; "
                                      "only square-input students are supported.")
    layers = {int(m.group(1)) for k in state if (m := _OFFICIAL_LAYER_KEY.match(k[len(BACKBONE_PREFIX):]))}
    depth = max(layers) + 1 if layers else 0
    mlp = _tensor(state, "encoder.layer.0.intermediate.dense.weight").shape[0] if depth else 4 * width
    size = StudentSize(width=width, depth=depth, heads=infer_heads(width, ckpt.config, num_heads), mlp=mlp,
                       patch=patch, image_size=side * patch)
    check_config_agrees(size, ckpt.config, ckpt.file)
    return size


def check_config_agrees(size: StudentSize, config: dict, file: Path) -> None:
    """config.json, when it states an architecture, must match the tensors."""
    facts = {"hidden_size": size.width, "num_hidden_layers": size.depth, "intermediate_size": size.mlp,
             "patch_size": size.patch, "image_size": size.image_size}
    for key, value in facts.items():
        if key in config and int(config[key]) != value:
            raise CheckpointMismatchError(f"{file.parent / CONFIG_FILE} says {key}={config[key]} but the tensors in "
                                          f"{file.name} give {value}; config and weights are from different models.")


# --- loading -------------------------------------------------------------------------------------
def check_official_keys(expected: dict[str, torch.Size], state: dict[str, torch.Tensor], what: str) -> None:
    """Raise naming the first missing/unexpected official key or shape mismatch."""
    check_state({k: tuple(v) for k, v in expected.items()}, state, what,
                "Check that the file is an official-layout Theia checkpoint of this size.")


def load_backbone_state(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load official-named backbone tensors into a student ViTModel (strict, clear errors)."""
    key_map = official_key_map(model)
    own = model.state_dict()
    check_official_keys({off: own[k].shape for off, k in key_map.items()}, state, what)
    model.load_state_dict({key_map[k]: v for k, v in state.items()}, strict=True)


def load_theia_backbone(path: str | Path, num_heads: int | None = None):
    """(student ViTModel in eval mode, meta) from an official-layout checkpoint; translator heads are ignored."""
    from transformers import ViTModel

    ckpt = read_theia_checkpoint(path)
    size = infer_size(ckpt, num_heads)
    eps = float(ckpt.config.get("layer_norm_eps", DEFAULT_LAYER_NORM_EPS))
    model = ViTModel(vit_config(size.width, size.depth, size.heads, size.mlp, size.patch, size.image_size, eps),
                     add_pooling_layer=False)
    load_backbone_state(model, ckpt.backbone, f"Theia checkpoint {ckpt.file}")
    meta = {"file": str(ckpt.file), "size": size, "config": ckpt.config, "teacher_ids": ckpt.teacher_ids}
    return model.eval(), meta


# --- exporting -----------------------------------------------------------------------------------
MODELING_FILE = "modeling_theia.py"  # the self-contained modeling code an export carries (AutoModel)
FEATURE_STATS_SUBDIR = "feature_stats"  # per-teacher mean/std in the reference layout
AUTO_MAP = {"AutoConfig": "modeling_theia.TheiaConfig", "AutoModel": "modeling_theia.TheiaModel"}


def size_of(backbone: nn.Module) -> StudentSize:
    """The StudentSize a ViTModel's (or TheiaModel's) config describes."""
    c = backbone.config
    return StudentSize(width=c.hidden_size, depth=c.num_hidden_layers, heads=c.num_attention_heads,
                       mlp=c.intermediate_size, patch=c.patch_size, image_size=c.image_size)


def head_specs(translators: dict[str, nn.Module] | None) -> dict[str, dict]:
    """{teacher id: {kind, source, target, hidden}} of translator heads built by theia_modeling (other modules are
    exported under their names but not described: load_theia then reads their layout from the tensors)."""
    return {tid: head.spec() for tid, head in (translators or {}).items() if hasattr(head, "spec")}


def stats_entry(mean: torch.Tensor, std: torch.Tensor) -> dict[str, list[float]]:
    return {"mean": torch.as_tensor(mean).detach().float().flatten().tolist(),
            "std": torch.as_tensor(std).detach().float().flatten().tolist()}


def export_config(backbone: nn.Module, teacher_ids: list[str], metadata: dict | None,
                  heads: dict[str, dict] | None = None, feature_stats: dict | None = None,
                  min_std: float = 1e-4) -> dict:
    """config.json of an export: architecture, teachers, each head's layout and feature statistics, metadata,
    plus what transformers' AutoModel needs (model_type, auto_map) and the reference's target_feature_sizes."""
    s, c = size_of(backbone), backbone.config
    shape = (s.width, s.depth, s.heads, s.mlp, s.patch, s.image_size)
    named = [n for n, v in STUDENT_SIZES.items() if (v.width, v.depth, v.heads, v.mlp, v.patch, v.image_size) == shape]
    heads = heads or {}
    names = {t["id"]: t["name"] for t in (metadata or {}).get("teachers", []) if "id" in t and "name" in t}
    config = {"architectures": ["TheiaModel"], "model_type": "theia", "auto_map": AUTO_MAP,
              "format": FORMAT_NAME, "student_size": named[0] if named else None,
              "backbone": STUDENT_SIZES[named[0]].hf_id if named else None,
              "hidden_size": s.width, "num_hidden_layers": s.depth, "num_attention_heads": s.heads,
              "intermediate_size": s.mlp, "patch_size": s.patch, "image_size": s.image_size,
              "layer_norm_eps": c.layer_norm_eps, "hidden_act": c.hidden_act,
              "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
              "feature_reduce_method": None, "feature_reduce_options": list(FEATURE_REDUCE_OPTIONS),
              "teacher_ids": teacher_ids, "teacher_names": {t: names.get(t, t) for t in teacher_ids},
              "translator_heads": heads, "target_feature_sizes": {t: h["target"] for t, h in heads.items()},
              "feature_stats": {t: stats_entry(*v) for t, v in (feature_stats or {}).items()},
              "min_std": float(min_std), "dtype": "float32", "torch_dtype": "float32",
              "metadata": metadata or {}}
    if heads and all(h["kind"] == "lconv" for h in heads.values()):
        config["translator_type"] = "lconv"  # the reference's TheiaConfig key
    return config


def modeling_source() -> Path:
    """theia_modeling.py, the file an export carries as modeling_theia.py."""
    from theia_eval.encoders import theia_modeling

    return Path(theia_modeling.__file__)


def export_state(backbone: nn.Module, translators: dict[str, nn.Module] | None) -> dict[str, torch.Tensor]:
    """All tensors of an export under their official names."""
    state = backbone_state_official(backbone)
    for tid, head in (translators or {}).items():
        for name, value in head.state_dict().items():
            state[f"{TRANSLATOR_PREFIX}{tid}.{name}"] = value.detach().to("cpu").clone().contiguous()
    return state


def replace_dir(tmp: Path, path: Path) -> None:
    """Move a finished temp dir to `path`, replacing an existing one only after the new one is complete."""
    old = temp_sibling(path, "old") if path.exists() else None
    if old is not None:
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_theia(backbone: nn.Module, path: str | Path, translators: dict[str, nn.Module] | None = None,
                 metadata: dict | None = None, feature_stats: dict | None = None, min_std: float = 1e-4) -> Path:
    """Write an export directory atomically: model.safetensors (official key names), config.json (architecture,
    heads, feature statistics, AutoModel fields), modeling_theia.py, and feature_stats/ (reference layout).

    feature_stats: {teacher id: (mean, std)} per channel, the statistics the targets were standardized with."""
    stats = {t: (torch.as_tensor(m), torch.as_tensor(sd)) for t, (m, sd) in (feature_stats or {}).items()}
    config = export_config(backbone, sorted(translators or {}), metadata, head_specs(translators), stats, min_std)
    return write_export_dir(path, export_state(backbone, translators), config, stats)


def write_export_dir(path: str | Path, state: dict[str, torch.Tensor], config: dict, feature_stats: dict,
                     card_text: str | None = None) -> Path:
    """The export folder from its parts, written to a temp folder and moved into place when complete."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"export path {path} is a file; pass a directory path (it will hold {WEIGHTS_FILE}).")
    try:
        text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as exc:
        raise InputError(f"export metadata must be JSON-serialisable ({exc}); "
                         "convert values to str/int/float/list/dict.") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)  # what a killed export left
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(text + "\n")
        write_carried_files(tmp, feature_stats)
        if card_text is not None:
            (tmp / "CARD.md").write_text(card_text)
        for p in tmp.rglob("*"):  # readable by everyone (exports get packaged and shared)
            p.chmod(0o755 if p.is_dir() else 0o644)
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def write_carried_files(directory: Path, feature_stats: dict) -> None:
    """modeling_theia.py and feature_stats/ (reference layout) beside the weights."""
    from theia_eval.encoders.feature_stats import save_feature_stats

    shutil.copyfile(modeling_source(), directory / MODELING_FILE)
    for tid, (mean, std) in feature_stats.items():
        save_feature_stats(directory / FEATURE_STATS_SUBDIR, tid, mean, std)
