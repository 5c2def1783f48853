"""The distillation run: data, teachers, targets (cached or online), student, training loop, export.

One process or many (torchrun: DDP, NCCL on GPUs, gloo on CPUs). Rank 0 writes logs, checkpoints and
the export; every rank sees its slice of each global batch (see data.StepSampler).
Run directory:
  config.yaml  metrics.jsonl (train every log_every steps, validation every val_every)  checkpoints/last.pt
  stats/ (online mode)  tb/ (TensorBoard, optional)  export/ (official Theia layout + CARD.md)  summary.json
  exports/step-NNNNNN/ (train.export_at: the same export at intermediate steps)  fit_curve.json / .png
  (held-out fit per teacher at every validation, export steps marked)
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from theia_eval.distill.cache import CachedTargets, cache_root, extract_targets, round_targets, storage_dtype, teacher_caches
from theia_eval.distill.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from theia_eval.distill.data import SourceDataset, StepSampler, collate_items, source_loader, split_indices
from theia_eval.distill.distributed import DistEnv, init_distributed
from theia_eval.distill.export import export_run
from theia_eval.distill.fitcurve import write_fit_curve
from theia_eval.distill.loss import LossWeights, distill_loss, image_cosine
from theia_eval.distill.optim import build_optimizer, build_scheduler, flush_denormals, scaled_lr
from theia_eval.distill.sources import open_source
from theia_eval.distill.stats import RunningStats, Standardizer, check_finite, load_stats, save_stats
from theia_eval.distill.student import DistillModel, set_attention, student_size
from theia_eval.distill.teacher_sets import resolve_teachers
from theia_eval.distill.teachers import Teacher, build_teachers
from theia_eval.errors import InputError, TrainingError
from theia_eval.io import atomic_write_json, atomic_write_text, remove_stale_temp_files
from theia_eval.settings import DistillTrainSection

NEVER = 2**62  # "no non-finite loss seen" marker for the device-side first-bad-step record


@dataclass
class TrainSettings(DistillTrainSection):
    """The `train:` block of configs/distill.yaml (fields and defaults: theia_eval.settings.DistillTrainSection)."""

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        self.export_at = export_steps(self.export_at)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrainSettings:
        data = OmegaConf.to_container(cfg, resolve=True)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown train settings {unknown}; valid keys: {sorted(known)}.")
        return cls(**data)


def export_steps(value) -> tuple[int, ...]:
    """train.export_at as sorted unique positive steps (null or [] = none)."""
    steps = [] if value is None else [value] if isinstance(value, int) else list(value)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
        raise InputError(f"train.export_at must list positive step numbers, got {value!r} "
                         "(e.g. train.export_at=[250,500,1000,2000]).")
    return tuple(sorted(set(steps)))


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles: Sapphire Rapids and later)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: auto -> bf16 on CUDA and on CPUs with AMX, else off."""
    table = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_fast_bf16() else None
    if setting not in table:
        raise InputError(f"unknown amp '{setting}'; use auto, bf16, fp16 or off.")
    return table[setting]


def teacher_dtype(setting: str, device: torch.device) -> str:
    return ("bfloat16" if device.type == "cuda" else "float32") if setting == "auto" else setting


class Distiller:
    """Sets up and runs one distillation job from a composed `distill` config."""

    def __init__(self, cfg: DictConfig, command: str = ""):
        from theia_eval.schema import check_config

        check_config("distill", cfg)  # types and ranges (train.steps=-1, ...) before any work
        self.cfg, self.command = cfg, command
        self.train_cfg = TrainSettings.from_config(cfg.train)
        self.size = student_size(cfg.student, cfg.image_size)
        self.dist: DistEnv = init_distributed(cfg.device)
        self.device = self.dist.device
        self.amp = amp_dtype(self.train_cfg.amp, self.device)
        self.run_dir = Path(cfg.run_dir).expanduser()
        self.t_start = time.perf_counter()
        self.timings: dict[str, float] = {}

    # --- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        threads = self.cfg.get("threads")
        if threads is not None:
            if int(threads) < 1:
                raise InputError(f"threads must be >= 1 (or null for torch's default), got {threads}.")
            torch.set_num_threads(int(threads))
        torch.manual_seed(int(self.cfg.seed))
        flush_denormals()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.source = open_source(OmegaConf.to_object(self.cfg.data) if OmegaConf.is_config(self.cfg.data)
                                  else self.cfg.data, self.size.image_size, bool(self.cfg.allow_upsample))
        self.source.load(0)  # fail early on undecodable or too-small images
        specs = resolve_teachers(self.cfg.teachers, self.cfg.get("teacher_weights") or {})
        self.teachers = build_teachers(specs, self.device, teacher_dtype(self.cfg.teacher_dtype, self.device))
        self.check_extras()
        self.train_idx, self.val_idx = split_indices(self.source.keys, float(self.cfg.val_fraction),
                                                   OmegaConf.to_object(self.cfg.val_tasks)
                                                   if OmegaConf.is_config(self.cfg.get("val_tasks"))
                                                   else self.cfg.get("val_tasks"))
        self.store_dtype = storage_dtype(self.cfg.cache_dtype)
        if self.cfg.targets not in ("cached", "online"):
            raise InputError(f"targets={self.cfg.targets!r}: use cached (extract once, then train) or online.")
        t0 = time.perf_counter()
        self.cached = self.setup_cached() if self.cfg.targets == "cached" else None
        if self.cached is None:
            self.teacher_info = [t.describe() for t in self.teachers]
        if self.cfg.stats:  # given statistics replace the computed ones, in either targets mode
            self.stats = [load_stats(self.cfg.stats, t.id, t.dim) for t in self.teachers]
        else:
            self.stats = self.cached.stats() if self.cached else self.online_stats()
        self.timings["targets_s"] = time.perf_counter() - t0
        self.standardize = [Standardizer(s, self.train_cfg.min_std).to(self.device) for s in self.stats]
        self.setup_model()

    def check_extras(self) -> None:
        for t in self.teachers:
            missing = [r for r in t.requires if r not in self.source.extras]
            if missing:
                raise InputError(f"teacher '{t.name}' needs {missing} stored with every image, but {self.source.describe()} "
                                 f"has {list(self.source.extras) or 'no extra channels'}. Use a frame set rendered by "
                                 "`theia-eval frames` (data=frames:SUITE), or drop the teacher.")

    def setup_cached(self) -> CachedTargets:
        """Extract missing shards (split across ranks), then open the caches for reading; teachers are freed."""
        root = cache_root(self.cfg.cache_dir, self.source.fingerprint())
        caches = teacher_caches(root, self.teachers, self.source, self.cfg.cache_dtype, int(self.cfg.shard_size))
        self.extract_report = extract_targets(
            caches, self.source, self.device, int(self.cfg.extract_batch), self.train_cfg.num_workers,
            self.dist.rank, self.dist.world, self.train_cfg.progress, self.dist.barrier)
        self.teacher_info = [t.describe() for t in self.teachers]
        for c in caches:  # keep the Teacher facts, drop the networks (GPU memory)
            c.teacher = TeacherFacts(c.teacher)
        self.teachers = [c.teacher for c in caches]
        return CachedTargets(caches, self.source.keys)

    def online_stats(self) -> list[RunningStats]:
        """Stats from this run's stats/ (resume), or one pass over the data source (stats=DIR skips both).

        Like the cache, the pass covers every image of the source (held-out ones too), so cached and online
        runs standardise with identical statistics."""
        own = self.run_dir / "stats"
        if self.cfg.resume and (own / ".complete").is_file():
            return [load_stats(own, t.id, t.dim) for t in self.teachers]
        mine = list(range(self.dist.rank, len(self.source), self.dist.world))
        parts = [RunningStats.empty(t.dim) for t in self.teachers]
        for batch in source_loader(self.source, mine, int(self.cfg.extract_batch), self.train_cfg.num_workers):
            batch = batch.to(self.device)
            for t, s in zip(self.teachers, parts):
                s.update(round_targets(t(batch), self.store_dtype))
        gathered = self.dist.all_gather_object(parts)
        stats = []
        for i, t in enumerate(self.teachers):
            total = RunningStats.empty(t.dim)
            for rank_parts in gathered:
                total.merge(rank_parts[i])
            check_finite(total, f"the stats pass of teacher '{t.id}'")
            stats.append(total)
        if self.dist.is_main:
            for t, s in zip(self.teachers, stats):
                save_stats(self.run_dir / "stats", t.id, s, {"images": len(self.source)})
            atomic_write_text(self.run_dir / "stats" / ".complete", "ok\n")
        return stats

    def setup_model(self) -> None:
        tc = self.train_cfg
        targets = {t.id: (t.dim, *t.grid) for t in self.teachers}
        torch.manual_seed(int(self.cfg.seed))  # the student's init depends on the seed only
        self.model = DistillModel(self.size, targets, self.cfg.translator, float(self.cfg.translator_hidden_factor))
        self.attention = set_attention(self.model.backbone, tc.attention, self.device, self.amp)
        self.model.to(self.device)
        if tc.channels_last:
            self.model.to(memory_format=torch.channels_last)
        per_epoch = math.ceil(len(self.train_idx) / tc.batch_size)
        self.total_steps = int(tc.steps) if tc.steps else max(1, int(round(tc.epochs * per_epoch)))
        self.lr = scaled_lr(tc.base_lr, tc.batch_size, tc.lr_base_batch)
        self.optimizer = build_optimizer(self.model, self.lr, tc.weight_decay, tc.betas, tc.translator_lr_factor)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, tc.warmup_ratio, tc.warmup_start_factor,
                                         tc.lr_decay, tc.lr_final_factor)
        self.start_step = self.maybe_resume()
        self.train_model = self.model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids, broadcast_buffers=False)
        if tc.compile:
            self.train_model = torch.compile(self.train_model)

    def run_meta(self) -> dict:
        return {"student": self.cfg.student, "image_size": self.size.image_size,
                "teachers": [[t.id, list(t.grid), t.dim] for t in self.teachers], "translator": self.cfg.translator,
                "batch_size": self.train_cfg.batch_size, "steps": self.total_steps,
                "data_fingerprint": self.source.fingerprint(), "seed": int(self.cfg.seed), "targets": self.cfg.targets,
                **({"lr_decay": [self.train_cfg.lr_decay, self.train_cfg.lr_final_factor]}
                   if self.train_cfg.lr_decay != "none" else {})}

    def maybe_resume(self) -> int:
        ckpt = load_checkpoint(self.run_dir / "checkpoints") if self.cfg.resume else None
        if ckpt is None:
            return 0
        check_resumable(ckpt["meta"], self.run_meta(), self.run_dir / "checkpoints")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.images_seen = int(ckpt.get("images_seen", 0))
        return int(ckpt["step"])

    # --- the loop ------------------------------------------------------------------------------
    def loader(self, start: int) -> torch.utils.data.DataLoader:
        tc = self.train_cfg
        sampler = StepSampler(self.train_idx, tc.batch_size, int(self.cfg.seed), start, self.total_steps,
                              self.dist.rank, self.dist.world, tc.grad_accum)
        self.sampler = sampler
        workers = tc.num_workers
        return torch.utils.data.DataLoader(
            SourceDataset(self.source, self.cached), batch_sampler=sampler, collate_fn=collate_items,
            num_workers=workers, pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None)

    def targets_for(self, batch, cached: list[torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Standardised float32 targets {teacher id: (B, h, w, C)} on the device."""
        if cached is not None:
            raw = [c.to(self.device, non_blocking=True) for c in cached]
        else:
            raw = [round_targets(t(batch), self.store_dtype) for t in self.teachers]
        return {t.id: std(r) for t, std, r in zip(self.teachers, self.standardize, raw)}

    def autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def micro_step(self, batch, cached, sync: bool, accum: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward + backward of one micro-batch; returns (loss, per-teacher [loss, cos, l1, mse]) detached."""
        batch = batch.to(self.device)
        targets = self.targets_for(batch, cached)
        ctx = nullcontext() if sync or not self.dist.active else self.train_model.no_sync()
        with ctx:
            with self.autocast():
                preds = self.train_model(batch.images)
            loss, terms = distill_loss(preds, targets, self.weights)
            (loss / accum).backward()
        rows = torch.stack([torch.stack([v["loss"], v["cos"], v["smooth_l1"], v["mse"]]) for v in terms.values()])
        return loss.detach(), rows.detach()

    def train(self) -> dict:
        """Run steps [start, stop_at or steps), logging, validating and checkpointing; then export."""
        tc = self.train_cfg
        self.weights = LossWeights(tc.cos_weight, tc.l1_weight)
        self.images_seen = getattr(self, "images_seen", 0)
        self.logger = RunLogger(self.run_dir, self.dist.is_main, tc.tensorboard)
        self.logger.keep_until(self.start_step)  # records a killed run wrote after its last checkpoint come again
        if self.dist.is_main:  # temporary files of a killed run (checkpoint, logs) whose process is gone
            for folder in (self.run_dir, self.run_dir / "checkpoints"):
                remove_stale_temp_files(folder)
        if self.dist.is_main:
            atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))
        self.bar = progress(self.total_steps, self.start_step, tc.progress and self.dist.is_main)
        self.meter = Meter(len(self.teachers), self.device)
        end = min(self.total_steps, tc.stop_at or self.total_steps)
        self.model.train()
        batches = iter(self.loader(self.start_step))
        t_loop = time.perf_counter()
        for step in range(self.start_step, end):
            self.optimize(step, batches)
            self.after_step(step + 1, last=step + 1 == end)
        self.bar.close()
        self.timings["train_s"] = time.perf_counter() - t_loop
        if self.start_step >= end:  # nothing left to do: re-validate for the summary
            self.validate()
        self.stop_step = end if end < self.total_steps else None
        self.steps_done = max(end, self.start_step)
        return self.finish()

    def optimize(self, step: int, batches) -> None:
        """One optimizer step over grad_accum micro-batches."""
        accum = self.train_cfg.grad_accum
        for m in range(accum):
            batch, cached = next(batches)
            loss, rows = self.micro_step(batch, cached, m == accum - 1, accum)
            self.meter.add(loss / accum, rows / accum, step)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.meter.steps += 1
        self.images_seen += self.train_cfg.batch_size

    def after_step(self, done: int, last: bool) -> None:
        """Log (checking the loss is finite), validate and checkpoint at their intervals."""
        tc = self.train_cfg
        at = {name: last or done % every == 0 for name, every in
              (("log", tc.log_every), ("val", tc.val_every), ("ckpt", tc.ckpt_every))}
        at["export"] = done in tc.export_at
        if any(at.values()):
            self.check_finite_loss(self.meter.bad_step)
            self.log_train(done)
        if at["val"] or at["export"]:
            self.logger.write({"step": done, "val": self.validate()})
        if at["export"]:
            self.export_step(done)
        if at["ckpt"]:
            self.save(done)
        self.bar.update(1)

    def export_step(self, step: int) -> None:
        """train.export_at: export the model as it is after `step` to run_dir/exports/step-NNNNNN (rank 0)."""
        if self.dist.is_main:
            summary = {**self.summary(), "steps_done": step, "export_step": step}
            export_run(self.model, self.run_dir / "exports" / f"step-{step:06d}", summary, self.stats_by_id())
            self.write_fit_curve()
        self.dist.barrier()

    def stats_by_id(self) -> dict:
        return {t.id: s for t, s in zip(self.teachers, self.stats)}

    def write_fit_curve(self, final: int | None = None) -> None:
        """run_dir/fit_curve.json and .png: held-out fit per teacher at every validation so far."""
        marks = [s for s in self.train_cfg.export_at if s <= (final or self.total_steps)]
        write_fit_curve(self.run_dir, self.held_out_rule(), marks, final)

    def held_out_rule(self) -> str:
        """How the held-out images were chosen, in words (cards and fit curves say it)."""
        tasks = self.cfg.get("val_tasks")
        if tasks:
            names = [tasks] if isinstance(tasks, str) else list(tasks)
            return f"frames of tasks never trained on (val_tasks={names})"
        return f"a hash of each key (val_fraction={self.cfg.val_fraction})"

    def check_finite_loss(self, bad_step: torch.Tensor) -> None:
        """Stop on a NaN/inf loss, naming the first step (and epoch) where it happened on any rank."""
        first = int(self.dist.all_reduce(bad_step.clone(), "min"))
        if first != NEVER:
            epoch = self.sampler.epoch_of(first)
            raise TrainingError(
                f"the loss became NaN/inf at step {first + 1} of {self.total_steps} (epoch {epoch:.2f}); training "
                f"stopped. The last good checkpoint is {self.run_dir / 'checkpoints' / 'last.pt'} (if any). Lower "
                f"the learning rate (train.base_lr={self.train_cfg.base_lr}), check the teachers' targets for "
                "extreme values, or use amp=off.")

    def log_train(self, step: int) -> None:
        """Write the averages since the last log (all ranks reduced) to metrics.jsonl / TensorBoard / the bar."""
        m, tc = self.meter, self.train_cfg
        rate = m.steps * tc.batch_size / (time.perf_counter() - m.t0)
        rows = self.dist.all_reduce(m.rows / m.steps) / self.dist.world
        loss = float(self.dist.all_reduce(m.loss / m.steps)) / self.dist.world
        teachers = {t.id: dict(zip(("loss", "cos", "smooth_l1", "mse"), map(float, r)))
                    for t, r in zip(self.teachers, rows)}
        self.last_train = {"step": step, "epoch": round(self.sampler.epoch_of(step), 4),
                           "lr": self.scheduler.get_last_lr()[0], "loss": loss, "images_per_s": rate,
                           "teachers": teachers}
        self.logger.write(self.last_train)
        self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
        m.reset()

    @torch.no_grad()
    def validate(self) -> dict:
        """Per-teacher mean per-image cosine and MSE on held-out images (standardised targets)."""
        held = self.val_idx[: self.train_cfg.val_max_images]
        if len(held) == 0:
            return {}
        self.model.eval()
        sums = torch.zeros(len(self.teachers), 4, dtype=torch.float64, device=self.device)
        mine = held[self.dist.rank::self.dist.world].tolist()
        size = max(1, self.train_cfg.batch_size // (self.dist.world * self.train_cfg.grad_accum))
        loader = torch.utils.data.DataLoader(
            SourceDataset(self.source, self.cached), batch_sampler=[mine[i:i + size] for i in range(0, len(mine), size)],
            collate_fn=collate_items, num_workers=min(self.train_cfg.num_workers, 2))
        for batch, cached in loader:
            batch = batch.to(self.device)
            targets = self.targets_for(batch, cached)
            with self.autocast():
                preds = self.model(batch.images)
            for i, t in enumerate(self.teachers):
                p, y = preds[t.id].float(), targets[t.id].reshape(preds[t.id].shape)
                sums[i] += torch.stack([image_cosine(p, y).sum().double(), ((p - y) ** 2).sum().double(),
                                        torch.tensor(float(len(batch)), dtype=torch.float64, device=self.device),
                                        torch.tensor(float(p.numel()), dtype=torch.float64, device=self.device)])
        self.dist.all_reduce(sums)
        self.model.train()
        self.last_val = {t.id: {"cos": float(s[0] / s[2]), "mse": float(s[1] / s[3]), "images": int(s[2])}
                         for t, s in zip(self.teachers, sums)}
        return self.last_val

    def save(self, step: int) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "checkpoints", {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": step, "images_seen": self.images_seen,
                "meta": self.run_meta()})
        self.dist.barrier()

    # --- the end -------------------------------------------------------------------------------
    def summary(self) -> dict:
        wall = time.perf_counter() - self.t_start
        out = {"command": self.command, "run_dir": str(self.run_dir), "student": self.cfg.student,
               "image_size": self.size.image_size, "params_m": round(sum(p.numel() for p in self.model.backbone.parameters()) / 1e6, 3),
               "teachers": self.teacher_info, "targets": self.cfg.targets, "data": self.source.describe(),
               "images": len(self.source), "train_images": len(self.train_idx), "val_images": len(self.val_idx),
               "steps": self.total_steps, "steps_done": getattr(self, "steps_done", self.start_step),
               "resumed_from": self.start_step,
               "stopped_at": getattr(self, "stop_step", None), "batch_size": self.train_cfg.batch_size,
               "lr": self.lr, "world_size": self.dist.world, "device": str(self.device),
               "wall_s": round(wall, 1), "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
               "train": getattr(self, "last_train", None), "val": getattr(self, "last_val", None),
               "held_out": self.held_out_rule(), "stats_from": self.cfg.stats or None,
               "amp": str(self.amp).replace("torch.", ""),
               "attention": getattr(self, "attention", None), "threads": torch.get_num_threads()}
        if getattr(self, "extract_report", None):
            out["cache"] = self.extract_report
        return out

    def finish(self) -> dict:
        summary = self.summary()
        if self.dist.is_main:
            if self.cfg.export:  # a stopped run exports too; its card says how far it got
                summary["export"] = str(export_run(self.model, self.run_dir / "export", summary, self.stats_by_id()))
            atomic_write_json(self.run_dir / "summary.json", summary)
            self.write_fit_curve(final=summary["steps_done"])
        self.logger.close()
        self.dist.barrier()
        return summary

    def close(self) -> None:
        self.dist.close()


class Meter:
    """Device-side sums of the loss and per-teacher terms since the last log, and the first non-finite step."""

    def __init__(self, num_teachers: int, device: torch.device):
        self.rows = torch.zeros(num_teachers, 4, device=device)
        self.loss = torch.zeros((), device=device)
        self.bad_step = torch.full((), NEVER, dtype=torch.int64, device=device)
        self.reset()

    def add(self, loss: torch.Tensor, rows: torch.Tensor, step: int) -> None:
        """Accumulate without a host sync (the NaN check reads bad_step only at log time)."""
        self.rows += rows
        self.loss += loss
        self.bad_step = torch.where(torch.isfinite(loss), self.bad_step, self.bad_step.clamp(max=step))

    def reset(self) -> None:
        self.rows.zero_()
        self.loss.zero_()
        self.steps, self.t0 = 0, time.perf_counter()


class TeacherFacts:
    """What training needs of a teacher once its targets are cached (id, grid, width), without the network."""

    def __init__(self, teacher: Teacher):
        self.spec, self.id, self.grid, self.dim, self.requires = (teacher.spec, teacher.id, teacher.grid, teacher.dim,
                                                                  teacher.requires)
        self.name = teacher.name
        self._describe = teacher.describe()

    def describe(self) -> dict:
        return dict(self._describe)


class RunLogger:
    """metrics.jsonl (+ TensorBoard scalars) on rank 0."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))

    def keep_until(self, step: int) -> None:
        """Drop records after `step` (and a line cut short by a kill) from metrics.jsonl before resuming there,
        so the log never holds a step twice."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and int(record.get("step", 0)) <= step:
                kept.append(line)
        if len(kept) != len(lines):
            atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, record: dict) -> None:
        if not self.enabled or not record:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for tag, value in flatten(record):
                self.tb.add_scalar(tag, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def flatten(record: dict, prefix: str = "") -> list[tuple[str, float]]:
    out = []
    for k, v in record.items():
        if k == "step":
            continue
        if isinstance(v, dict):
            out += flatten(v, f"{prefix}{k}/")
        elif isinstance(v, (int, float)):
            out.append((f"{prefix}{k}", float(v)))
    return out


def progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="distill", disable=not enabled, dynamic_ncols=True)


def run_distillation(cfg: DictConfig, command: str = "") -> dict:
    """Set up and run a distillation job; returns its summary (also written to run_dir/summary.json)."""
    job = Distiller(cfg, command)
    try:
        job.setup()
        return job.train()
    finally:
        job.close()


