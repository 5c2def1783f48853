"""Behaviour cloning of a policy head on cached embeddings (the CortexBench protocol by default).

Data: `WindowDataset` serves, for every frame of the selected demos, the T-frame window of cached
embeddings (read by index from the memmap, padded with the first frame at episode starts), fused
("flare" by default), with that frame's proprio and action.

Normalisation (`BCConfig.action_norm` / `proprio_norm`, registry `NORMALIZERS`):
- "none" (protocol default): raw actions with MSE, raw proprio (the head's input BatchNorm
  already rescales its input);
- "standardize": per-dimension mean/std over the training frames (std floored at 1e-6). The loss
  is then the MSE on standardized actions; the stats live in `BCPolicy` buffers (so in checkpoints),
  and `BCPolicy.forward` always returns raw actions.

Training: Adam(lr 1e-3), batch 256, MSE, 100 epochs; `eval_fn(policy, epoch) -> {metric: value}`
every `eval_every` epochs and after the last (later: the simulator evaluation). Checkpoints in
`out_dir`: last.pt after every epoch, best.pt whenever `best_metric` improves; written atomically.
Resume (default when last.pt exists) restores model, optimizer, epoch, best, history and the RNG
states, so an interrupted run ends with exactly the weights of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from theia_eval.errors import CheckpointMismatchError, InputError, TrainingError, unknown_name
from theia_eval.policies.cache import EmbeddingCache, EmbeddingShapes
from theia_eval.policies.heads import PolicyHead, PolicyShapes, create_head, head_input_kind, make_head_config
from theia_eval.policies.history import fuse, gather_windows, get_fusion, window_indices
from theia_eval.settings import TrainConfig

CHECKPOINT_FORMAT = 1
EvalFn = Callable[["BCPolicy", int], dict[str, float]]
_TRAIN = TrainConfig()  # the `train` verb's defaults (theia_eval.settings): BCConfig's defaults


@dataclass
class BCConfig:
    """Behaviour-cloning settings; defaults are the `train` verb's (configs/train.yaml, the CortexBench protocol)."""

    head: str = _TRAIN.head
    head_config: dict[str, Any] = field(default_factory=dict)  # overrides of the head's config dataclass
    history: int = _TRAIN.bc.history
    fusion: str = _TRAIN.bc.fusion
    epochs: int = _TRAIN.bc.epochs
    batch_size: int = _TRAIN.bc.batch_size
    lr: float = _TRAIN.bc.lr
    weight_decay: float = _TRAIN.bc.weight_decay
    eval_every: int = _TRAIN.bc.eval_every
    seed: int = _TRAIN.seed
    device: str = _TRAIN.device
    action_norm: str = _TRAIN.bc.action_norm
    proprio_norm: str = _TRAIN.bc.proprio_norm
    best_metric: str = "success"  # key of eval_fn's dict that picks best.pt
    best_mode: str = "max"  # "max" or "min"
    progress: bool = _TRAIN.bc.progress
    precision: str = _TRAIN.bc.precision  # "fp32" | "bf16": autocast matmuls/convs to bfloat16 (AMX CPUs, GPUs)


# Fields that may change between a run and its resume (they do not change the weights reached).
RESUMABLE_FIELDS = frozenset({"epochs", "eval_every", "progress", "device", "best_metric", "best_mode"})


# --- normalisation ---------------------------------------------------------------------------------
def _no_norm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-6).astype(np.float32)


NORMALIZERS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "none": _no_norm, "standardize": _standardize}


def norm_stats(kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) used to normalise x under the named scheme."""
    if kind not in NORMALIZERS:
        raise unknown_name("normalisation", kind, NORMALIZERS)
    return NORMALIZERS[kind](x)


# --- data ------------------------------------------------------------------------------------------
class WindowDataset(torch.utils.data.Dataset, EmbeddingShapes):
    """T-frame windows of per-frame embeddings (array or memmap) + proprio + action, per frame.

    embeddings: (N, C) summaries or (N, h, w, C) token maps; actions (N, A); proprio (N, P);
    lengths/offsets: the demos' rows. Windows are index arrays (N_sel, T) into `embeddings`;
    a batch reads only its distinct rows, so no T-fold copy of the cache is ever made.
    """

    def __init__(self, embeddings: np.ndarray, actions: np.ndarray, proprio: np.ndarray, lengths: Sequence[int],
                 kind: str, history: int = 3, fusion: str = "flare", offsets: Sequence[int] | None = None):
        get_fusion(fusion)
        if kind not in ("tokens", "summary"):
            raise InputError(f"kind must be 'tokens' or 'summary', got '{kind}'.")
        self.embeddings, self.kind, self.history, self.fusion = embeddings, kind, int(history), fusion
        self.windows = window_indices(lengths, history, offsets)
        if len(self.windows) == 0:
            raise InputError("the dataset has no frames (no demos selected, or demos of length 0); check the "
                             "demo file / split.")
        rows = self.windows[:, -1]
        self.actions = np.asarray(actions, np.float32)[rows]
        self.proprio = np.asarray(proprio, np.float32)[rows]
        self._check(embeddings, kind)

    def _check(self, embeddings: np.ndarray, kind: str) -> None:
        rank = {"summary": 2, "tokens": 4}[kind]
        if embeddings.ndim != rank:
            raise InputError(f"{kind} embeddings must have rank {rank}, got shape {embeddings.shape}.")
        if self.windows.max() >= len(embeddings):
            raise InputError(f"demo rows reach {self.windows.max()} but there are only {len(embeddings)} embeddings.")
        for name, x in (("actions", self.actions), ("proprio", self.proprio)):
            if x.ndim != 2 or not np.isfinite(x).all():
                raise InputError(f"{name} must be a finite (N, dim) array; got shape {x.shape} with "
                                 f"{int((~np.isfinite(x)).sum())} non-finite values.")

    @classmethod
    def from_cache(cls, cache: EmbeddingCache, history: int = 3, fusion: str = "flare",
                   demo_keys: Sequence[str] | None = None) -> WindowDataset:
        """Windows over a cache, for all its demos or those named (e.g. a train split)."""
        keys = list(cache.demo_keys if demo_keys is None else demo_keys)
        spans = [cache.demo_rows(k) for k in keys]
        return cls(cache.embeddings, cache.actions, cache.proprio, [s.stop - s.start for s in spans], cache.kind,
                   history, fusion, offsets=[s.start for s in spans])

    def __len__(self) -> int:
        return len(self.windows)

    def shapes(self, action_dim: int | None = None) -> PolicyShapes:
        """PolicyShapes matching this data (grid/token dims for tokens, summary dim for summaries)."""
        if self.kind == "tokens":
            h, w, c = self.frame_shape
            grid, token_dim, summary_dim = (h, w), c, 1
        else:
            grid, token_dim, summary_dim = (1, 1), 1, self.frame_shape[0]
        return PolicyShapes(grid, token_dim, summary_dim, self.history, self.fusion, self.proprio_dim,
                            action_dim or self.action_dim)

    def get_batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fused features, proprio, actions) float32 tensors for the given sample indices."""
        index = np.asarray(index, np.int64)
        frames = torch.from_numpy(gather_windows(self.embeddings, self.windows[index]))
        return fuse(frames, self.fusion), torch.from_numpy(self.proprio[index]), torch.from_numpy(self.actions[index])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats, prop, act = self.get_batch(np.array([i]))
        return feats[0], prop[0], act[0]


# --- the policy ------------------------------------------------------------------------------------
class BCPolicy(nn.Module):
    """A head plus the proprio/action normalisation; `forward` maps fused features + raw proprio to raw actions."""

    def __init__(self, head: PolicyHead, action_stats: tuple[np.ndarray, np.ndarray] | None = None,
                 proprio_stats: tuple[np.ndarray, np.ndarray] | None = None):
        super().__init__()
        self.head = head
        a, p = head.shapes.action_dim, head.shapes.proprio_dim
        for name, stats, dim in (("action", action_stats, a), ("proprio", proprio_stats, p)):
            mean, std = stats if stats is not None else (np.zeros(dim, np.float32), np.ones(dim, np.float32))
            self.register_buffer(f"{name}_mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer(f"{name}_std", torch.as_tensor(std, dtype=torch.float32))

    @property
    def shapes(self) -> PolicyShapes:
        return self.head.shapes

    def normalized(self, features: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """The head's output, i.e. actions in the normalised space the loss is computed in."""
        if proprio is not None:
            proprio = (proprio - self.proprio_mean) / self.proprio_std
        return self.head(features, proprio)

    def forward(self, features: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        return self.normalized(features, proprio) * self.action_std + self.action_mean

    @torch.no_grad()
    def act(self, features: torch.Tensor, proprio: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic actions in eval mode (BatchNorm running stats)."""
        self.eval()
        return self(features, proprio)


def build_policy(config: BCConfig, shapes: PolicyShapes, data: WindowDataset | None = None) -> BCPolicy:
    """A fresh policy seeded by config.seed (global RNG untouched); normalisation stats from `data`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = create_head(config.head, shapes, config.head_config)
    stats = [None, None] if data is None else [norm_stats(config.action_norm, data.actions),
                                               norm_stats(config.proprio_norm, data.proprio)]
    return BCPolicy(head, *stats)


def _check_kind(config: BCConfig, data: WindowDataset) -> None:
    want = head_input_kind(config.head)
    if data.kind != want:
        raise InputError(f"head '{config.head}' reads {want} but the data holds {data.kind}; "
                         f"build the cache with kind='{want}'.")


def check_compatible(policy: BCPolicy, data: WindowDataset, config: BCConfig) -> None:
    """Raise InputError when the data's kind, dims, history or fusion differ from what the head expects."""
    _check_kind(config, data)
    s, d = policy.shapes, data.shapes()
    pairs = {"action_dim": (s.action_dim, d.action_dim), "proprio_dim": (s.proprio_dim, d.proprio_dim),
             "history": (s.history, data.history), "fusion": (s.fusion, data.fusion)}
    if data.kind == "tokens":
        pairs.update(grid=(s.grid, d.grid), token_dim=(s.token_dim, d.token_dim))
    else:
        pairs.update(summary_dim=(s.summary_dim, d.summary_dim))
    bad = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if bad:
        detail = "; ".join(f"{k}: head {h} vs data {x}" for k, (h, x) in bad.items())
        raise InputError(f"the policy head does not fit the data ({detail}). Build the head from the data's "
                         "shapes (WindowDataset.shapes()) or use the matching task/encoder cache.")


# --- checkpoints -----------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, then os.replace (never a half-written checkpoint)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


CHECKPOINT_KEYS = ("format", "epoch", "config", "shapes", "model")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict, every tensor on CPU (safe `weights_only` loading); anything else is refused."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint {path} does not exist.") from None
    except Exception as exc:  # torch raises many types for damaged files
        first = " ".join(str(exc).split())[:300]
        raise CheckpointMismatchError(f"checkpoint {path} cannot be read as a theia-eval policy checkpoint ({first}); "
                                      "it is damaged or another kind of file: delete it to start over.") from exc
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"{path} is not a theia-eval policy checkpoint (format {CHECKPOINT_FORMAT}; "
                                      f"missing {missing or 'nothing'}, format {ckpt.get('format') if isinstance(ckpt, dict) else '?'}): "
                                      "it comes from another program or version. Delete it to start over.")
    return ckpt


def policy_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu",
                           where: str | Path = "checkpoint") -> BCPolicy:
    """Rebuild a trained BCPolicy (eval mode) from a loaded checkpoint dict."""
    try:
        config = BCConfig(**ckpt["config"])
        policy = BCPolicy(create_head(config.head, PolicyShapes(**ckpt["shapes"]), config.head_config))
        policy.load_state_dict(ckpt["model"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointMismatchError(f"{where} does not rebuild a policy ({' '.join(str(exc).split())[:300]}); it "
                                      "was written by another version or damaged: train again.") from exc
    return policy.to(device).eval()


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> BCPolicy:
    """Rebuild a trained BCPolicy (eval mode) from last.pt / best.pt."""
    return policy_from_checkpoint(load_checkpoint(path), device, path)


# --- training --------------------------------------------------------------------------------------
@dataclass
class BCResult:
    policy: BCPolicy
    history: list[dict[str, float]]  # one row per epoch: epoch, train_loss, and eval metrics when run
    best: dict[str, float] | None  # {"epoch", "value"} of the best eval, None without eval_fn
    last_path: Path | None
    best_path: Path | None


@dataclass
class _State:
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] | None = None


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[np.ndarray]:
    """A shuffled epoch; a last batch of one sample is dropped (BatchNorm cannot train on it)."""
    perm = torch.randperm(n, generator=gen).numpy()
    out = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
    return out[:-1] if len(out) > 1 and len(out[-1]) == 1 else out


def _num_batches(n: int, batch_size: int) -> int:
    full = math.ceil(n / batch_size)
    return full - 1 if full > 1 and n % batch_size == 1 else full


def _check_config(config: BCConfig, data: WindowDataset) -> None:
    if config.history != data.history or config.fusion != data.fusion:
        raise InputError(f"config history/fusion ({config.history}, {config.fusion}) differ from the dataset's "
                         f"({data.history}, {data.fusion}); build the WindowDataset with the config's values.")
    if len(data) < 2:
        raise InputError(f"the dataset has {len(data)} frame(s); BatchNorm heads need at least 2 to train.")
    if config.best_mode not in ("max", "min") or config.epochs < 1 or config.batch_size < 2 or config.eval_every < 1:
        raise InputError(f"bad BCConfig: need best_mode max|min, epochs >= 1, batch_size >= 2, eval_every >= 1; "
                         f"got {config.best_mode}, {config.epochs}, {config.batch_size}, {config.eval_every}.")
    if config.precision not in ("fp32", "bf16"):
        raise InputError(f"bad BCConfig.precision '{config.precision}': use fp32 or bf16.")
    make_head_config(config.head, config.head_config)
    _check_kind(config, data)


def _canon(value: Any) -> Any:
    """Compare configs from YAML (lists) and from Python (tuples) alike."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_differences(stored: dict[str, Any], config: BCConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (checkpoint's, config's)} of the BCConfig fields that may not change on resume."""
    old = {k: _canon(v) for k, v in stored.items() if k not in RESUMABLE_FIELDS}
    new = {k: _canon(v) for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE_FIELDS}
    return {k: (old.get(k), new[k]) for k in new if old.get(k) != new[k]}


def _restore(path: Path, config: BCConfig, policy: BCPolicy, opt: torch.optim.Optimizer,
             gen: torch.Generator, run: dict[str, Any] | None = None) -> _State:
    ckpt = load_checkpoint(path)  # on CPU: RNG states must stay there; load_state_dict moves the rest
    missing = [k for k in ("optimizer", "generator", "rng", "history", "best") if k not in ckpt]
    if missing:
        raise CheckpointMismatchError(f"{path} cannot be resumed: it lacks {missing} (not a last.pt of "
                                      "`train_bc`). Use a new out_dir, or delete it to start over.")
    theirs = ckpt.get("run")
    if run is not None and theirs is not None:
        other = {k: (theirs.get(k), v) for k, v in run.items() if k in theirs and _canon(theirs[k]) != _canon(v)}
        if other:
            raise CheckpointMismatchError(f"{path} belongs to another run {other} (checkpoint, this run): it was "
                                          "copied from elsewhere or the demos changed. Use a new out_dir, or delete "
                                          "it to start over.")
    diff = config_differences(ckpt["config"], config)
    if diff:
        raise CheckpointMismatchError(f"{path} was trained with other settings {diff} (old, new); use a new "
                                      "out_dir or resume=False to start over.")
    if ckpt["shapes"] != dataclasses.asdict(policy.shapes):
        raise CheckpointMismatchError(f"{path} holds a head for shapes {ckpt['shapes']} but the data needs "
                                      f"{dataclasses.asdict(policy.shapes)}; use a new out_dir.")
    policy.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    gen.set_state(ckpt["generator"])
    _set_rng_state(ckpt["rng"])
    return _State(ckpt["epoch"], list(ckpt["history"]), ckpt["best"])


def _payload(config: BCConfig, policy: BCPolicy, opt: torch.optim.Optimizer, gen: torch.Generator,
             state: _State, run: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "epoch": state.epoch, "run": run, "config": dataclasses.asdict(config),
            "shapes": dataclasses.asdict(policy.shapes), "model": policy.state_dict(), "optimizer": opt.state_dict(),
            "generator": gen.get_state(), "rng": _rng_state(), "history": state.history, "best": state.best}


def _train_epoch(policy: BCPolicy, opt: torch.optim.Optimizer, data: WindowDataset, config: BCConfig,
                 gen: torch.Generator, epoch: int, bar: tqdm) -> float:
    """One pass over the shuffled data; returns the mean loss; raises TrainingError on NaN/inf."""
    policy.train()
    batches, total, count = _batches(len(data), config.batch_size, gen), 0.0, 0
    for step, idx in enumerate(batches, 1):
        feats, prop, act = (t.to(config.device) for t in data.get_batch(idx))
        target = (act - policy.action_mean) / policy.action_std
        with torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16,
                            enabled=config.precision == "bf16"):
            pred = policy.normalized(feats, prop if data.proprio_dim else None)
        loss = F.mse_loss(pred.float(), target)
        if not torch.isfinite(loss):
            raise TrainingError(f"the BC loss became {loss.item()} at epoch {epoch}, step {step}/{len(batches)}; "
                                f"lower lr (now {config.lr}) or check the embeddings/actions for huge values.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total, count = total + loss.item() * len(idx), count + len(idx)
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{total / count:.4g}")
    return total / count


def _evaluate(eval_fn: EvalFn, policy: BCPolicy, epoch: int, config: BCConfig) -> dict[str, float]:
    policy.eval()
    metrics = dict(eval_fn(policy, epoch))
    value = metrics.get(config.best_metric)
    if value is None or not math.isfinite(float(value)):
        raise InputError(f"eval_fn returned {metrics} at epoch {epoch}; it must include a finite "
                         f"'{config.best_metric}' (BCConfig.best_metric).")
    return metrics


def _improves(value: float, best: dict[str, float] | None, mode: str) -> bool:
    return best is None or (value > best["value"] if mode == "max" else value < best["value"])


def train_bc(data: WindowDataset, config: BCConfig, out_dir: str | Path | None = None, eval_fn: EvalFn | None = None,
             policy: BCPolicy | None = None, resume: bool = True, run: dict[str, Any] | None = None) -> BCResult:
    """Train a head on `data` by MSE; see the module docstring for eval, checkpoints and resume.

    policy: a prebuilt BCPolicy (checked against the data) or None to build one from
    `data.shapes()`. out_dir None: no checkpoints, no resume. run: what the checkpoints belong to (task,
    encoder, demos, ...), stored in them; resuming a checkpoint of another run is refused.
    """
    _check_config(config, data)
    policy = policy or build_policy(config, data.shapes(), data)
    check_compatible(policy, data, config)
    policy.to(config.device)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    out = Path(out_dir) if out_dir is not None else None
    last, best_path = (out / "last.pt", out / "best.pt") if out else (None, None)
    state = _restore(last, config, policy, opt, gen, run) if resume and last and last.exists() else _State()
    if out:
        out.mkdir(parents=True, exist_ok=True)
    steps = _num_batches(len(data), config.batch_size)
    with tqdm(total=steps * config.epochs, initial=steps * state.epoch, desc=f"bc {config.head}",
              disable=not config.progress) as bar:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            row = {"epoch": epoch, "train_loss": _train_epoch(policy, opt, data, config, gen, epoch, bar)}
            improved = False
            if eval_fn is not None and (epoch % config.eval_every == 0 or epoch == config.epochs):
                row.update(_evaluate(eval_fn, policy, epoch, config))
                improved = _improves(float(row[config.best_metric]), state.best, config.best_mode)
            state.epoch = epoch
            state.history.append(row)
            if improved:
                state.best = {"epoch": epoch, "value": float(row[config.best_metric])}
            if out and improved:
                save_checkpoint(best_path, _payload(config, policy, opt, gen, state, run))
            if out:
                save_checkpoint(last, _payload(config, policy, opt, gen, state, run))
    has_best = out is not None and state.best is not None
    return BCResult(policy.eval(), state.history, state.best, last, best_path if has_best else None)
