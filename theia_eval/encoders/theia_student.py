"""`load_theia(source)`: a Theia student with its translator heads, from any place a student lives.

    from theia_eval import load_theia
    model = load_theia("theia-offline")              # registry name, run dir, export dir, HF dir or hub id,
                                                     # a .safetensors file, or an upstream training .pth
    tokens = model.forward_feature(images)           # uint8 (B,H,W,3) or (B,3,H,W) -> (B, 196, C)
    pooled = model.forward_feature(images, "mean")   # None | "mean" | "max" | "cls"
    preds = model(images)                            # {teacher id: standardized prediction (B, h*w, C_t)}
    feats = model.teacher_features(images)           # {teacher id: (B, h, w, C_t) in the teacher's own scale}

The model is theia_modeling.TheiaModel, the class an export's modeling_theia.py defines, so load_theia and
transformers.AutoModel.from_pretrained(export, trust_remote_code=True) give the same module. Teacher ids are
the HF ids for hub teachers (facebook/dinov2-large) and the registry names for ours (efficientnet-lite0,
sim-depth, sim-segmentation). Feature statistics come from `stats=DIR` (ours or the reference's
feature_stats/ layout), else the export's config.json, else a feature_stats/ or stats/ folder beside the
weights; official checkpoints carry none (pass the reference's feature_stats/ as stats=).
Hub ids are looked up in the local HF cache only (downloads only with HF_HUB_OFFLINE=0), as every encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from theia_eval.encoders.theia_format import (
    BACKBONE_PREFIX,
    CONFIG_FILE,
    EXPORT_SUBDIR,
    FEATURE_STATS_SUBDIR,
    TRANSLATOR_PREFIX,
    WEIGHTS_FILE,
    StudentSize,
    TheiaCheckpoint,
    check_official_keys,
    infer_size,
    official_name,
    read_json,
    split_state,
)
from theia_eval.errors import CheckpointMismatchError, InputError, WeightsNotFoundError

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
WRAPPER_KEYS = ("model", "state_dict", "module")  # training checkpoints that wrap the state dict


@dataclass
class StudentSource:
    """The tensors (official names), config.json and folder of one student checkpoint."""

    state: dict[str, torch.Tensor]
    config: dict
    file: Path
    folder: Path | None  # where feature statistics may sit beside the weights
    notes: list[str] = field(default_factory=list)


# --- finding the checkpoint -----------------------------------------------------------------------
def registry_path(name: str) -> Path | None:
    """Checkpoint location of a registered theia entry (the bundled asset, or an official hub id from the cache)."""
    from theia_eval.encoders import get_encoder_config, list_encoders
    from theia_eval.encoders.weights import hf_snapshot

    if name not in list_encoders():
        return None
    config = get_encoder_config(name)
    if config.family != "theia" or name.startswith("random-") or name == "theia":
        raise InputError(f"'{name}' is not a trained Theia student with translator heads; pass theia-offline, "
                         "theia-tiny/small/base, or a path / hub id of a student.")
    if name == "theia-offline":
        from theia_eval.encoders.theia_offline import ASSET

        return ASSET
    return hf_snapshot(config, None)


def hub_path(source: str) -> Path:
    """A hub id resolved in the local HF cache (offline unless HF_HUB_OFFLINE=0), with the usual clear error."""
    from theia_eval.encoders import get_encoder_config
    from theia_eval.encoders.weights import hf_snapshot

    return hf_snapshot(get_encoder_config("theia"), source)


def resolve(source: str | Path) -> Path:
    """The local file or folder a source names."""
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        return path
    found = registry_path(text)
    if found is not None:
        return found
    if "/" in text and not text.startswith((".", "/", "~")) and text.count("/") == 1:
        return hub_path(text)
    raise WeightsNotFoundError(
        f"no Theia student at '{text}': not a file or folder, not a registered student (theia-offline, "
        "theia-tiny/small/base), and not a hub id (owner/name). Pass a run dir, an export dir, an HF dir, a "
        ".safetensors file or an upstream .pth state dict.")


def checkpoint_file(path: Path) -> Path:
    """model.safetensors in a folder or its export/, else the folder's single .pth/.pt, else the file itself."""
    if path.is_file():
        return path
    for candidate in (path / WEIGHTS_FILE, path / EXPORT_SUBDIR / WEIGHTS_FILE):
        if candidate.is_file():
            return candidate
    torch_files = sorted(p for p in path.iterdir() if p.suffix in TORCH_SUFFIXES) if path.is_dir() else []
    if len(torch_files) == 1:
        return torch_files[0]
    raise WeightsNotFoundError(
        f"no Theia checkpoint in {path}: looked for {WEIGHTS_FILE}, {EXPORT_SUBDIR}/{WEIGHTS_FILE} and a single "
        f".pth/.pt file (found {[p.name for p in torch_files] or 'none'}). Pass the file itself.")


def read_torch_state(file: Path) -> dict[str, torch.Tensor]:
    """A tensors-only state dict from a .pth (upstream `torch.save(model.state_dict())`, or one level wrapped)."""
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign pickles and truncated files
        raise CheckpointMismatchError(f"cannot read {file} as a tensors-only state dict ({type(exc).__name__}: "
                                      f"{exc}); Theia .pth files are state dicts saved with torch.save.") from exc
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and not any(
                isinstance(v, torch.Tensor) for v in obj.values()):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{file} does not hold a state dict of tensors; expected the upstream "
                                      "RobotVisionFM state dict (backbone.model.*, translator.translator_heads.*).")
    return normalize_keys(obj, file)


def normalize_keys(state: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    """Backbone keys under their official (transformers-4) names, whichever transformers saved them."""
    out = {}
    for key, value in state.items():
        if key.startswith(BACKBONE_PREFIX):
            key = official_name(key[len(BACKBONE_PREFIX):])
        elif not key.startswith(TRANSLATOR_PREFIX):
            raise CheckpointMismatchError(
                f"unexpected key '{key}' in {file}: a Theia state dict holds '{BACKBONE_PREFIX}*' and "
                f"'{TRANSLATOR_PREFIX}<teacher id>.*' tensors only (upstream translators other than lconv are not "
                "supported).")
        out[key] = value
    return out


def read_source(source: str | Path) -> StudentSource:
    """Tensors + config of a student, from any supported source."""
    from safetensors.torch import load_file

    path = resolve(source)
    file = checkpoint_file(path)
    if file.suffix == ".safetensors":
        state, config = normalize_keys(load_file(str(file)), file), read_json(file.parent / CONFIG_FILE)
    elif file.suffix in TORCH_SUFFIXES:
        state, config = read_torch_state(file), read_json(file.parent / CONFIG_FILE)
    else:
        raise InputError(f"{file} is neither a .safetensors file nor a .pth/.pt state dict.")
    return StudentSource(state=state, config=config, file=file, folder=file.parent)


# --- heads from tensor shapes -----------------------------------------------------------------------
def shape(params: dict[str, torch.Tensor], name: str, tid: str) -> tuple[int, ...]:
    if name not in params:
        raise CheckpointMismatchError(f"translator head '{tid}' has no '{name}': its layout is not one this loader "
                                      f"knows (keys: {sorted(params)[:8]} ...).")
    return tuple(params[name].shape)


def infer_head(tid: str, params: dict[str, torch.Tensor], source: tuple[int, int, int]) -> dict:
    """A head's {kind, source, target, hidden} from its parameter names and shapes."""
    conv1 = shape(params, "adapter.1.weight", tid) if "adapter.1.weight" in params else None
    if conv1 is not None and len(conv1) == 4 and conv1[-1] == 4:  # reference 7x7 head: Conv4x4/2
        grid = shape(params, "adapter.3.weight", tid)[1:]
        return {"kind": "lconv", "source": list(source), "target": [shape(params, "adapter.5.weight", tid)[0], *grid],
                "hidden": conv1[0]}
    if "adapter.9.weight" in params:  # ours: LN, Resample, conv body
        grid = shape(params, "adapter.4.weight", tid)[1:]
        return {"kind": "general", "source": list(shape(params, "adapter.0.weight", tid)),
                "target": [shape(params, "adapter.9.weight", tid)[0], *grid],
                "hidden": shape(params, "adapter.2.weight", tid)[0]}
    if "adapter.8.weight" in params:  # reference 16x16 / 14x14 / 64x64 heads
        final = shape(params, "adapter.6.weight", tid)
        return {"kind": "lconv", "source": list(source), "target": [shape(params, "adapter.8.weight", tid)[0],
                                                                     *final[1:]], "hidden": final[0]}
    raise CheckpointMismatchError(
        f"translator head '{tid}' has a layout this loader does not know (keys: {sorted(params)}); supported: the "
        "reference lconv heads (7x7, 14x14, 16x16, 64x64 targets) and theia-eval's general head.")


def head_specs(src: StudentSource, translators: dict[str, dict], size: StudentSize) -> dict[str, dict]:
    """Each teacher's head layout: config.json's translator_heads when present, else read from the tensors."""
    recorded = src.config.get("translator_heads") or {}
    source = (size.width, *size.grid)
    return {tid: dict(recorded[tid]) if tid in recorded else infer_head(tid, params, source)
            for tid, params in translators.items()}


# --- feature statistics --------------------------------------------------------------------------------
def stats_from_dir(directory: Path, teacher_ids: list[str], dims: dict[str, int]) -> dict[str, dict]:
    """{teacher id: {mean, std}} for the teachers whose statistics a folder holds (either layout)."""
    from theia_eval.encoders.feature_stats import find_reference_stats, load_stats, stats_path

    out = {}
    for tid in teacher_ids:
        if stats_path(directory, tid).is_file() or find_reference_stats(directory, tid) is not None:
            s = load_stats(directory, tid, dims[tid])
            out[tid] = {"mean": s.mean.float(), "std": s.std.float()}
    return out


def find_stats(src: StudentSource, stats: str | Path | None, heads: dict[str, dict]) -> dict[str, dict]:
    """Statistics from stats=DIR (every teacher required), else config.json, else feature_stats/ or stats/."""
    dims = {tid: int(h["target"][0]) for tid, h in heads.items()}
    if stats is not None:
        directory = Path(stats).expanduser()
        if not directory.is_dir():
            raise InputError(f"stats={stats} is not a directory; pass a folder of feature statistics (the "
                             "reference's feature_stats/ or an export's).")
        found = stats_from_dir(directory, list(heads), dims)
        missing = [t for t in heads if t not in found]
        if missing:
            raise InputError(f"no feature statistics for teacher(s) {missing} in {directory}: expected "
                             "<prefix>_mean_<id>.npy + <prefix>_var_<id>.npy ('/' in ids as '_') or "
                             "<id>.stats.safetensors per teacher.")
        return found
    recorded = {t: v for t, v in (src.config.get("feature_stats") or {}).items() if t in heads}
    if recorded:
        return recorded
    for sub in (FEATURE_STATS_SUBDIR, "stats"):
        if src.folder is not None and (src.folder / sub).is_dir():
            return stats_from_dir(src.folder / sub, list(heads), dims)
    return {}


# --- building the model ------------------------------------------------------------------------------
def theia_config(src: StudentSource, size: StudentSize, heads: dict[str, dict], stats: dict[str, dict],
                 feature_reduce: str | None):
    """The TheiaConfig of a student (architecture from the tensors, the rest from config.json)."""
    from theia_eval.encoders.theia_modeling import TheiaConfig

    c = src.config
    names = c.get("teacher_names") or {t["id"]: t["name"] for t in (c.get("metadata") or {}).get("teachers", [])
                                       if isinstance(t, dict) and "id" in t and "name" in t}
    return TheiaConfig(
        hidden_size=size.width, num_hidden_layers=size.depth, num_attention_heads=size.heads,
        intermediate_size=size.mlp, patch_size=size.patch, image_size=size.image_size,
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-12)), hidden_act=c.get("hidden_act", "gelu"),
        translator_heads=heads, feature_stats={t: {"mean": torch.as_tensor(s["mean"]).float().tolist(),
                                                   "std": torch.as_tensor(s["std"]).float().tolist()}
                                               for t, s in stats.items()},
        min_std=float(c.get("min_std", 1e-4)),
        feature_reduce_method=feature_reduce if feature_reduce is not None else c.get("feature_reduce_method"),
        teacher_names={t: names.get(t, t) for t in heads}, backbone=c.get("backbone"),
        metadata=c.get("metadata") or {})


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load with a clear error naming the first missing/unexpected key or shape mismatch."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_official_keys(expected, state, what)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()},
                          strict=True)


def load_theia(source: str | Path, stats: str | Path | None = None, device: str | torch.device = "cpu",
               feature_reduce: str | None = None, num_heads: int | None = None):
    """A Theia student with its translators (theia_modeling.TheiaModel, eval mode, float32) from `source`.

    source: a registry name (theia-offline, theia-tiny/small/base), a distill run dir, an export dir, an
    official HF dir or hub id (cache only unless HF_HUB_OFFLINE=0), a .safetensors file, or an upstream .pth
    state dict. stats: a feature-statistics folder for teacher_features (see the module docstring).
    feature_reduce: the default of forward_feature (None = tokens). num_heads: attention heads when neither
    config.json nor the DeiT width table tells."""
    from theia_eval.encoders.theia_modeling import TheiaModel

    src = read_source(source)
    backbone, translators = split_state(src.state, list(src.config.get("teacher_ids") or []))
    if not translators:
        raise CheckpointMismatchError(f"{src.file} holds a backbone without translator heads; load it as an encoder "
                                      "with create_encoder('theia', weights=PATH) instead.")
    size = infer_size(TheiaCheckpoint(file=src.file, backbone=backbone, translators=translators, config=src.config),
                      num_heads)
    heads = head_specs(src, translators, size)
    config = theia_config(src, size, heads, find_stats(src, stats, heads), feature_reduce)
    try:
        model = TheiaModel(config)
    except ValueError as exc:
        raise CheckpointMismatchError(f"cannot build the student of {src.file}: {exc}") from exc
    load_state(model, src.state, f"Theia student {src.file}")
    return model.eval().to(device)


def save_theia(model, path: str | Path, metadata: dict | None = None, dtype: torch.dtype | None = None,
               card_text: str | None = None) -> Path:
    """Write a loaded student (TheiaModel) as an export folder in the current format: e.g. an official or
    upstream .pth checkpoint made loadable by AutoModel, or an older export brought up to date.

    dtype: store the weights in this dtype (e.g. torch.float16 for a packaged asset; loaders upcast)."""
    from theia_eval.encoders.theia_format import export_config, write_export_dir

    cfg = model.config
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    stats = {}
    for tid in model.teacher_ids:
        if tid in model._extra_stats or tid in cfg.feature_stats:
            s = model._extra_stats.get(tid) or cfg.feature_stats[tid]
            stats[tid] = (torch.as_tensor(s["mean"]).float(), torch.as_tensor(s["std"]).float())
    meta = metadata if metadata is not None else getattr(cfg, "metadata", {})
    config = export_config(model, list(model.teacher_ids), meta, dict(cfg.translator_heads), stats, cfg.min_std)
    config["backbone"] = getattr(cfg, "backbone", config["backbone"])
    config["feature_reduce_method"] = cfg.feature_reduce_method
    config["teacher_names"] = {t: cfg.teacher_names.get(t, t) for t in model.teacher_ids}
    return write_export_dir(path, state, config, stats, card_text)
