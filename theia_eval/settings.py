"""The typed defaults of every CLI verb: one dataclass per verb, the only place a default value lives.

`configs/<verb>.yaml` is generated from these classes (`python -m theia_eval.settings --write`) and Hydra
composes it as before; `tests/test_settings.py` fails when a YAML file and its class could disagree. Each
field carries its help text (the YAML comment, and the key list of `theia-eval <verb> --help`). Library
dataclasses that mirror a verb (policies.bc.BCConfig, policies.evaluate.EvalConfig, envs.demos.DemoConfig,
distill.frames.FrameSettings, distill.train.TrainSettings, decoding.decoders.DecodeSettings) take their
defaults from here. Value ranges and path rules are checked by `theia_eval.schema`.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any


def setting(default: Any, text: str = "", *, before: tuple[str, ...] = ()) -> Any:
    """A verb setting: its default, its help text and comment lines written above it in the YAML."""
    meta = {"help": text, "before": before}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, text: str = "") -> Any:
    """A nested block of settings (a YAML mapping such as `bc:`), typed by its own dataclass."""
    return field(default_factory=cls, metadata={"help": text, "before": ()})


@dataclass
class DecodeSamSection:
    """`decode`'s `sam:` block: SAM's automatic mask generation (decoding.decoders.SamOptions)."""

    points_per_side: int = setting(16)
    points_per_batch: int = setting(64)
    pred_iou_thresh: float = setting(0.88)
    stability_score_thresh: float = setting(0.92)
    stability_offset: float = setting(1.0)
    box_nms_thresh: float = setting(0.7)
    min_area: int = setting(16)


@dataclass
class DecodeConfig:
    """`theia-eval decode`: a student's predicted teacher features decoded into panels."""

    model: str = setting('theia-offline', 'anything load_theia takes: registry name, run/export/HF dir, hub id, .safetensors, .pth')
    media: str | None = setting(None, 'an image, a video (mp4/webm/avi), a folder of them, or a data source (frames:..., tar:...)')
    out: str | None = setting(None, 'null = decoded/<media name>')
    stats: str | None = setting(None, "feature statistics folder (reference feature_stats/ or ours); null = the checkpoint's own")
    teachers: str | list[str] | None = setting(None, 'null = every teacher the student predicts; or one teacher id / name, or a list of them')
    device: str = setting('cpu')
    batch_size: int = setting(8)
    every: int = setting(1, 'videos: decode frames 0, every, 2*every, ...')
    max_frames: int | None = setting(None, 'videos: at most this many decoded frames')
    fps: float | None = setting(None, "mp4 frame rate; null = the video's rate / every")
    max_images: int = setting(16, 'data sources: PNG rows for at most this many samples')
    score_images: int | None = setting(None, 'data sources with depth/segmentation: fidelity over this many samples (null = all)')
    on_missing_weights: str = setting('error', "a hub teacher's decoder weights absent: error | pca (show its PCA instead)")
    decoder_weights: dict[str, str] = setting({}, '{teacher registry name or id: save_pretrained folder}, e.g. +decoder_weights.sam-vit-h=PATH')
    top_k: int = setting(5, 'efficientnet-lite0: ImageNet classes listed under its panel')
    sam: DecodeSamSection = section(DecodeSamSection, "SAM's automatic mask generation on predicted embeddings (decoders.SamOptions)")




@dataclass
class DemosConfig:
    """`theia-eval demos`: scripted-expert demos, summaries and imports."""

    suite: str | None = setting(None, 'e.g. cortexbench-metaworld (see `theia-eval tasks`)')
    task: str | None = setting(None, 'e.g. metaworld/assembly')
    num_demos: int = setting(25, 'successful demos per task; a rerun adds only the missing ones')
    out_dir: str = setting('data/demos')
    seed: int = setting(54321, 'candidate j uses seed + j; failed seeds are skipped and recorded')
    workers: int = setting(2, 'render processes (0 = this process)')
    post_success_steps: int | None = setting(None, 'null = run to the horizon (the protocol: success is scored at the final step); N = stop N steps after the first success')
    horizon: int | None = setting(None, "null = the task's horizon (Meta-World 500)")
    max_failures: int | None = setting(None, 'failed expert episodes tolerated per task; null = 2 * num_demos + 10')
    preset: str = setting('fast', 'render preset: fast | full (must match the later evaluation)')
    resolution: int = setting(256, 'square render size')
    crop: int = setting(224, 'center crop; null = keep the full render')
    camera: str | None = setting(None, "null = the task's protocol camera (Meta-World top_cap2)")
    compression: str = setting('gzip', 'frames: gzip (portable) | lzf (h5py-only) | null')
    compression_level: int = setting(1, 'gzip level 1-9 (1: 25% smaller than lzf, +0.7 ms/frame)')
    valid_fraction: float = setting(0.1, 'last round(n * fraction) demos go to mask/valid')
    progress: bool = setting(True, 'progress bar on stderr')
    expert: str | dict | None = setting(None, "null = each task's default expert; or a kind for every task (dmc: planner | distilled | guided), or {task: kind}")
    expert_weights: str | None = setting(None, 'learned experts (distilled, guided): a folder of <task>.safetensors (`theia-eval experts` out_dir) or one file; null = theia_eval/assets/dmc-experts')
    out: str | None = setting(None, 'output file of --import', before=('# importers: theia-eval demos --import SOURCE task=... out=PATH', '#   SOURCE = a CortexBench pickle (.pkl/.pickle), or for adroit/* a Minari D4RL Adroit dataset directory / .hdf5'))
    proprio_key: str | None = setting(None, 'pickle: env_infos key holding proprio; null = gripper_proprio / proprio')
    import_num_demos: int | None = setting(None, 'Minari: import at most this many demos; null = all')
    keep_failed: bool = setting(False, 'Minari: keep episodes that fail the success rule')




@dataclass
class ExpertsConfig:
    """`theia-eval experts`: a fast DMC expert, an MLP on the state distilled from the task's planner by DAgger."""

    task: str | None = setting(None, 'a DMC task, e.g. dmc/walker-stand')
    out_dir: str = setting('data/experts', 'run folder <out_dir>/<task>/ (resumable) and the weights <out_dir>/<task>.safetensors')
    rounds: int = setting(10, 'DAgger rounds (a rerun with more rounds continues the run)')
    episodes_per_round: int = setting(4, 'labelled training episodes per round')
    episode_steps: int | None = setting(None, "policy steps of a training episode; null = the task's horizon")
    beta_decay: float = setting(0.5, "round r executes the labeller's action with probability beta_decay^r (round 0: labeller only)")
    hidden: list[int] = setting([256, 256], 'hidden layer widths of the MLP')
    train_steps: int = setting(2000, 'Adam steps per round on all labels so far (learning rate: cosine decay to lr / 10)')
    batch_size: int = setting(256)
    lr: float = setting(0.001, 'Adam learning rate')
    seed: int = setting(0, 'training episodes, mixing draws and network initialization')
    planner: dict | None = setting(None, "labeller's MPC settings over the task's recipe (MPCConfig fields), e.g. {samples: 16, threads: 2}; null = the planner expert's own")
    eval_episodes: int = setting(10, 'full episodes of the policy alone after each round')
    eval_seed: int = setting(54321, 'evaluation episode i uses seed eval_seed + i (54321: the demo seeds)')
    select: str = setting('best', 'published weights: best (highest mean evaluation return) | last round')
    time_demo: bool = setting(True, "time one demo with the published expert (episode + render replay at the demos verb's defaults)")
    threads: int = setting(1, 'torch threads for training')
    progress: bool = setting(True, 'progress lines on stderr')


@dataclass
class DistillTrainSection:
    """`distill`'s `train:` block (distill.train.TrainSettings)."""

    steps: int | None = setting(None, 'null = epochs x ceil(train images / batch_size)')
    epochs: float = setting(50)
    batch_size: int = setting(128, 'global batch (all processes and accumulation steps together)')
    grad_accum: int = setting(1)
    base_lr: float = setting(0.002, 'scaled by batch_size / lr_base_batch')
    lr_base_batch: int = setting(512)
    warmup_ratio: float = setting(0.1)
    warmup_start_factor: float = setting(0.01)
    lr_decay: str = setting('none', 'after the warm-up: none = constant lr (the reference) | cosine = half-cosine to lr_final_factor x lr')
    lr_final_factor: float = setting(0.0)
    weight_decay: float = setting(0.01)
    betas: list[float] = setting([0.9, 0.999])
    translator_lr_factor: float = setting(1.0)
    cos_weight: float = setting(0.9)
    l1_weight: float = setting(0.1)
    amp: str = setting('auto', 'auto = bf16 autocast on GPUs and on CPUs with AMX, else off | bf16 | fp16 | off')
    compile: bool = setting(False, 'torch.compile the student + translators')
    channels_last: bool = setting(True, 'channels-last convolution weights (translators, patch embedding)')
    attention: str = setting('auto', 'student attention kernel: auto (matmul on CPUs under bf16 autocast, else sdpa) | sdpa | matmul')
    num_workers: int = setting(4)
    log_every: int = setting(10)
    val_every: int = setting(500)
    ckpt_every: int = setting(500)
    tensorboard: bool = setting(False)
    progress: bool = setting(True)
    min_std: float = setting(0.0001, 'floor of the per-channel std used to standardise targets')
    val_max_images: int = setting(2048, 'validate on at most this many held-out images (the same ones each time)')
    stop_at: int | None = setting(None, 'stop after this step (checkpointed and exported, the card says so); rerun to resume')
    export_at: int | list[int] | None = setting([], 'also export at these steps to run_dir/exports/step-NNNNNN, e.g. [250, 500, 1000, 2000]')


@dataclass
class DistillConfig:
    """`theia-eval distill`; its `frames:` block is FramesConfig (a Hydra defaults entry)."""

    teachers: str | list = setting('offline', 'a set in configs/teacher_sets/ (offline, cdiv, cddsv, ...), one encoder name, or a list')
    teacher_weights: dict[str, str] = setting({}, '{teacher name or id: weights PATH} overrides, e.g. teacher_weights.clip-vit-l14=/w/clip')
    teacher_dtype: str = setting('auto', 'auto = bfloat16 on GPU, float32 on CPU')
    student: str = setting('nano', 'nano (CPU-sized) | deit-tiny | deit-small | deit-base')
    image_size: int | None = setting(None, "student input side; null = the student's own (224)")
    data: str | list[str] = setting('frames:metaworld', 'image folder, webdataset .tar shard(s), frame set dir, frames:SUITE, or a list of them')
    allow_upsample: bool = setting(False, 'accept images smaller than the student input (they are upsampled)')
    val_fraction: float = setting(0.05, 'held-out share of images (chosen by a hash of each key); unused when val_tasks is set')
    val_tasks: str | list[str] | None = setting(None, 'hold out whole tasks instead: task patterns / suite names, e.g. [cortexbench-dmc, metaworld/hammer]')
    targets: str = setting('cached', 'cached: extract teacher targets once to disk | online: run teachers in each step')
    cache_dir: str | None = setting(None, 'null = $THEIA_EVAL_DATA/targets/<data fingerprint> (~/.cache/theia_eval/...)')
    cache_dtype: str = setting('float16', 'storage dtype of targets (both modes round through it): float16 | bfloat16')
    shard_size: int = setting(1024, 'samples per cache shard (the unit of resumable extraction)')
    extract_batch: int = setting(64, 'teacher batch size for extraction and the online stats pass')
    stats: str | None = setting(None, "a stats dir used instead of computing the statistics, either targets mode (<id>.stats.safetensors, or the reference's feature_stats/ layout)")
    translator: str = setting('auto', 'auto (the reference lconv head for 7x7/14x14/16x16/64x64 targets, general elsewhere) | lconv | general')
    translator_hidden_factor: float = setting(1.0)
    run_dir: str | None = setting(None, 'null = runs/distill/<student>-<teachers>-<data>; an existing run resumes')
    resume: bool = setting(True)
    export: bool = setting(True, 'write run_dir/export (official Theia layout + CARD.md) at the end')
    seed: int = setting(0)
    device: str = setting('auto', 'auto = cuda:<local rank> when available, else cpu')
    threads: int | None = setting(None, "torch CPU threads of this process (null = torch's default)")
    train: DistillTrainSection = section(DistillTrainSection)




@dataclass
class EmbedConfig:
    """`theia-eval embed`: the embedding cache of demo files."""

    encoder: str = setting('efficientnet-lite0')
    weights: str | None = setting(None)
    demos: str | None = setting(None, 'demo file (HDF5); or task=/suite= with demos_dir')
    task: str | None = setting(None)
    suite: str | None = setting(None)
    demos_dir: str = setting('data/demos')
    kind: str = setting('tokens', 'tokens (spatial heads) | summary (mlp head)')
    cache_dir: str = setting('data/cache')
    device: str = setting('cpu')
    threads: int | None = setting(None, 'torch CPU threads (null = torch default)')
    chunk_size: int = setting(64)
    rebuild: bool = setting(False)




@dataclass
class EncodersConfig:
    """`theia-eval encoders`: the registry table, or encoding images with one encoder."""

    name: str | None = setting(None, 'encoder to encode with (omit to list the registry)')
    pattern: str = setting('*', 'shell pattern over names when listing')
    weights: str | None = setting(None, 'null = entry\'s default source; "random"; a path; a hub id')
    device: str = setting('cpu')
    dtype: str = setting('float32')




@dataclass
class EntropyScoreSection:
    """`entropy`'s `score:` block: which leaderboard score is correlated."""

    head: str | None = setting(None, 'policy head whose score is correlated; null = conv (else the first spatial head)')
    checkpoint: str = setting('last', 'last | best')
    sweep: str | None = setting(None, "only this sweep's rows of the store")


@dataclass
class EntropyConfig:
    """`theia-eval entropy`: feature-norm entropy and its correlation with the score."""

    encoders: str | list = setting('results', 'results = every encoder of the results store; or a list of names / {name, label, weights}')
    results: str | None = setting(None, 'results store for the scores (needed for encoders=results and the correlation)')
    sweep_dir: str | None = setting(None, "a `theia-eval sweep` out_dir: its plan's encoders, each task's demo frames and its cells' scores (per task and pooled)")
    images: str | None = setting(None, 'demos:DIR (frames sampled from the demo files under DIR) | skimage | folder:DIR; null = skimage, or with sweep_dir each task\'s own demo frames (plan)')
    num_images: int = setting(64, 'images sampled (demos, folder) or taken (skimage has 4)')
    bins: int = setting(100, 'histogram bins of the reported entropy (the paper does not say; stated with every number)')
    bins_list: list[int] = setting([10, 25, 50, 100, 200], 'sensitivity check: entropy and correlation at these bin counts too')
    token_set: str = setting('all', 'all | interior (drop the outer ring of the token grid)')
    score: EntropyScoreSection = section(EntropyScoreSection)
    mujoco_suites: list[str] = setting(['metaworld', 'dmc', 'adroit'])
    bootstrap: int = setting(2000, 'bootstrap resamples of the correlation intervals')
    min_encoders: int = setting(8, 'below this many encoders the report says no conclusion can be drawn')
    min_relative_spread: float = setting(0.0001, '(max-min)/mean of the norms below this = constant up to rounding: flagged, left out of the correlation')
    seed: int = setting(0)
    device: str = setting('cpu')
    out_dir: str = setting('results/entropy')




@dataclass
class EvaluateConfig:
    """`theia-eval evaluate`: re-evaluating a trained run."""

    run: str | None = setting(None, 'run directory written by `theia-eval train`')
    checkpoint: str = setting('best', 'best | last')
    episodes: int = setting(25)
    base_seed: int = setting(1000)
    num_envs: int = setting(2)
    groups: int = setting(1, '2: pipeline render and encode (see docs/policies.md)')
    video: bool = setting(False)
    force: bool = setting(False)
    device: str = setting('cpu')
    threads: int | None = setting(None, 'torch CPU threads (null = torch default)')
    progress: bool = setting(True)




@dataclass
class FramesConfig:
    """`theia-eval frames` (and `distill`'s `frames:` block): a simulator frame set."""

    suite: str = setting('metaworld', 'a family (metaworld | dmc | adroit: every task of that simulator) or a registered suite')
    tasks: str | list[str] | None = setting(None, 'null = every task of the suite; or task names / globs (dmc/quadruped-*) / suite names')
    exclude_tasks: str | list[str] | None = setting(None, 'task names / globs left out (e.g. the tasks a student must never see)')
    num_frames: int = setting(2000)
    cameras: str | list[str] | None = setting(None, "null = each task's protocol camera + its family's others (docs/distill.md); or a list")
    resolution: int = setting(224)
    preset: str = setting('fast', 'render preset of the envs package (fast | full)')
    expert_fraction: float = setting(0.6, 'share of episodes driven by the scripted expert (the rest: smoothed random actions)')
    action_noise: float = setting(0.1, 'Gaussian noise added to expert actions')
    frame_stride: int = setting(8, 'simulator steps between rendered frames')
    frames_per_episode: int = setting(8, 'rendered time steps per episode (x cameras frames)')
    task_block: int = setting(1, 'consecutive episodes per task before moving to the next (fewer env re-opens)')
    max_open_envs: int = setting(4, 'environments kept open at once (a Meta-World one with its renderers: ~300 MB)')
    shard_size: int = setting(512)
    seed: int = setting(0)
    out: str | None = setting(None, 'null = $THEIA_EVAL_DATA/frames/<suite>')




@dataclass
class LeaderboardUncertaintySection:
    """`leaderboard`'s `uncertainty:` block: the bootstrap intervals."""

    resamples: int = setting(2000, 'bootstrap resamples')
    seed: int = setting(0, 'generator seed')
    resample: list[str] = setting(['tasks', 'seeds', 'episodes'], 'levels resampled with replacement: tasks within a suite, training seeds within a task, episodes within a run')


@dataclass
class LeaderboardConfig:
    """`theia-eval leaderboard`: tables, plot and HTML from a results store."""

    results: str | list | None = setting(None, 'the store (.sqlite) written by `theia-eval sweep`, or its .parquet/.csv export; or a list of them, read together')
    out_dir: str | None = setting(None, 'null = <folder of results>/leaderboard (required with several results files)')
    sweep: str | None = setting(None, 'only the rows of this sweep (null = all)')
    pools: dict | None = setting(None, "sweeps reported as one section, e.g. {study: [offline-study-metaworld, offline-study-dmc-adroit]} (a study run as one sweep per suite family: its MuJoCo-subset score spans them)")
    mujoco_suites: list[str] = setting(['metaworld', 'dmc', 'adroit'], 'the MuJoCo-subset score is the mean of these suites')
    export: str = setting('parquet', 'also write results.parquet (or csv) next to the tables; null = no export')
    claims: str | list | None = setting(None, 'claims to test (docs/analysis.md "Claims"): a name in configs/claim_sets/, a YAML file, or a list')
    runs_root: str | None = setting(None, "where run directories live when not at their stored run_dir (the results file's folder is searched too)")
    uncertainty: LeaderboardUncertaintySection = section(LeaderboardUncertaintySection, 'intervals (the same seed gives the same numbers)')




@dataclass
class AblationConfig:
    """`theia-eval ablation`: the teacher-combination table of a sweep with students."""

    sweep_dir: str | None = setting(None, "a `theia-eval sweep` out_dir whose plan.json has students (one per teacher subset)")
    store: str | None = setting(None, "null = the sweep's own store (plan.json's store)")
    head: str = setting('conv', 'the policy head whose scores are tabled')
    checkpoint: str = setting('best', 'best (the protocol number) | last')
    out_dir: str | None = setting(None, 'null = <sweep_dir>/ablation')
    uncertainty: LeaderboardUncertaintySection = section(LeaderboardUncertaintySection, 'intervals (the same seed gives the same numbers)')


@dataclass
class QuickstartEntropySection:
    """`quickstart`'s `entropy:` block."""

    images: str = setting('demos', "demos = frames sampled from the quickstart's demo files; or skimage | folder:DIR")
    num_images: int = setting(32)
    bins: int = setting(100)
    bins_list: list[int] = setting([10, 25, 50, 100, 200])
    token_set: str = setting('all')


@dataclass
class QuickstartConfig:
    """`theia-eval quickstart`: the small end-to-end job."""

    grid: str = setting('quickstart', 'the sweep (configs/sweep/<grid>.yaml) it runs')
    out_dir: str = setting('results/quickstart', 'leaderboard.md/.csv/.html, *.png, entropy.*, report.html, run_info.md')
    work_dir: str = setting('${out_dir}/work', 'demos, frames, student, embedding caches, runs, results.sqlite (reused)')
    device: str = setting('cpu')
    threads: int = setting(1, 'torch threads: 1 beats 2 on a 2-core machine while simulator workers render')
    embed_batch: int = setting(16, 'frames per encoder call when caching embeddings (memory: 16 keeps the run under 2 GB)')
    entropy: QuickstartEntropySection = section(QuickstartEntropySection)
    claims: str | list | None = setting('quickstart', 'claims tested on paired episodes (configs/claim_sets/quickstart.yaml: vision vs blind); null = none')
    sweep_overrides: list[str] = setting([], 'extra overrides of the sweep, e.g. ["sweep.encoders=[efficientnet-lite0,pixels]"]')




@dataclass
class SweepConfig:
    """`theia-eval sweep`; its `sweep:` block is a grid file of configs/sweep/ (a Hydra defaults entry)."""

    launcher: str = setting('sequential', 'sequential (this process) | joblib (local processes) | submitit (SLURM) | submitit-local')
    jobs: int = setting(2, 'joblib: processes at once')
    launcher_overrides: list[str] = setting([], 'more Hydra launcher settings, e.g. [hydra.launcher.partition=gpu, hydra.launcher.gpus_per_node=1]')
    out_dir: str = setting('results/sweeps/${sweep.name}', 'plan.json, runs/, hydra/ (job logs), leaderboard/')
    store: str = setting('${out_dir}/results.sqlite', 'the results store (one row per evaluation)')
    store_journal: str = setting('wal', 'wal (local disks) | delete (network filesystems, where WAL does not work)')
    demos_dir: str = setting('data/demos', 'shared demo files, one folder per demo recipe')
    cache_dir: str = setting('data/cache', 'shared embedding caches (encoder x demo file x input kind)')
    students_dir: str = setting('data/students', 'distilled students (and their frame sets), one folder per distill config')
    device: str = setting('cpu', 'cpu | cuda')
    threads: int | None = setting(None, "torch threads per job (null = torch's default)")
    embed_batch: int = setting(64, 'frames per encoder call when building embedding caches (lower it to save memory)')
    leaderboard: bool = setting(True, 'write <out_dir>/leaderboard/ when the sweep ends')




@dataclass
class TasksConfig:
    """`theia-eval tasks`: the suite and task listing."""

    suite: str | None = setting(None, "show only this suite's tasks (with details)")
    pattern: str = setting('*', 'shell pattern over task names')




@dataclass
class TrainBCSection:
    """`train`'s `bc:` block: behaviour-cloning settings (policies.bc.BCConfig)."""

    epochs: int = setting(100)
    batch_size: int = setting(256)
    lr: float = setting(0.001)
    weight_decay: float = setting(0.0)
    eval_every: int = setting(5)
    history: int = setting(3)
    fusion: str = setting('flare', 'flare | stack')
    action_norm: str = setting('none')
    proprio_norm: str = setting('none')
    head_config: dict[str, Any] = setting({})
    progress: bool = setting(True)
    precision: str = setting('fp32', "fp32 | bf16 (autocast the head's matmuls: ~1.4x faster conv-head training on AMX CPUs and GPUs)")


@dataclass
class TrainEvalSection:
    """`train`'s `eval:` block: the evaluation in simulation (policies.evaluate.EvalConfig)."""

    episodes: int = setting(25)
    base_seed: int = setting(1000, 'episode i uses base_seed + i')
    num_envs: int = setting(2, 'parallel simulator workers (lock-step, one batched encode per step)')
    groups: int = setting(1, "2: pipeline, encode one half of the workers' frames while the other half renders")
    preset: str | None = setting(None, "null = the demos' render settings")
    resolution: int | None = setting(None)
    crop: int | str | None = setting('demos')
    horizon: int | None = setting(None, "null = the task's protocol horizon")
    video: bool = setting(False, 'write mp4s of the first video_episodes episodes')
    video_episodes: int = setting(2)
    progress: bool = setting(True)


@dataclass
class TrainConfig:
    """`theia-eval train`: behaviour cloning of a policy head, evaluated in simulation."""

    encoder: str = setting('efficientnet-lite0')
    weights: str | None = setting(None, 'encoder weights: null (entry default) | random | PATH | hub id')
    task: str | None = setting(None, 'e.g. metaworld/drawer-open')
    suite: str | None = setting(None, 'e.g. cortexbench-metaworld (trains one run per task)')
    head: str = setting('conv', 'conv (spatial tokens) | mlp (summary / CLS) | attn')
    seed: int = setting(100, 'training seed; the protocol uses 100, 200, 300')
    demos_dir: str = setting('data/demos')
    demos: str | None = setting(None, 'explicit demo file (single task); overrides demos_dir')
    split: str | None = setting(None, 'null = all demos (the protocol); train = mask/train only')
    cache_dir: str = setting('data/cache', 'embedding caches, shared across seeds and heads')
    out_dir: str = setting('results/runs', 'run dir: <out_dir>/<task>/<encoder>/<head>/seed<seed>')
    device: str = setting('cpu')
    threads: int | None = setting(None, 'torch CPU threads (null = torch default); 1 is often faster when other processes share the cores')
    force: bool = setting(False, "evaluate with other render settings than the demos' anyway")
    bc: TrainBCSection = section(TrainBCSection)
    eval: TrainEvalSection = section(TrainEvalSection)



@dataclass(frozen=True)
class VerbConfig:
    """A verb's settings class and how its configs/<name>.yaml is laid out (header, Hydra defaults list)."""

    name: str
    cls: type
    header: tuple[str, ...] = ()
    hydra_defaults: tuple[str, ...] = ()
    column: int = 28  # where the YAML comments start


VERB_CONFIGS: dict[str, VerbConfig] = {v.name: v for v in (
    VerbConfig('ablation', AblationConfig, header=(
        'theia-eval ablation sweep_dir=DIR: which teachers matter? Held-out cosine per teacher and policy score, with intervals,',
        'for each student of a sweep distilled from a subset of the teachers (docs/analysis.md "Teacher-combination ablation").',
    )),
    VerbConfig('decode', DecodeConfig, column=24, header=(
        "theia-eval decode: a student's predicted teacher features back to teacher outputs, as PNG panels (mp4 for videos).",
        '  theia-eval decode model=theia-offline media=frame.png out=decoded/',
        '  theia-eval decode model=runs/distill/RUN media=clip.mp4 every=2',
        '  theia-eval decode model=theaiinstitute/theia-base-patch16-224-cddsv stats=theia/feature_stats media=DIR \\',
        '    +decoder_weights.sam-vit-h=/models/sam-vit-huge +decoder_weights.depth-anything-l=/models/depth-anything-large',
        '  theia-eval decode model=theia-offline media=frames:/data/frames-unseen   (+ fidelity.json vs the simulator)',
    )),
    VerbConfig('demos', DemosConfig, header=(
        'theia-eval demos: scripted-expert demonstrations, one robomimic-layout HDF5 per task.',
        'Name exactly one of suite / task. Files go to <out_dir>/<family>/<task>.hdf5.',
    )),
    VerbConfig('experts', ExpertsConfig, header=(
        'theia-eval experts task=dmc/TASK: train a fast DMC expert (an MLP on the privileged state) from the task\'s planner',
        'by DAgger, resumably; then `theia-eval demos ... expert=distilled expert_weights=<out_dir>` uses it (docs/suites.md).',
    )),
    VerbConfig('distill', DistillConfig, column=24, header=(
        'theia-eval distill: train a Theia student from a teacher set. Examples:',
        '  theia-eval distill teachers=offline student=nano data=frames:metaworld',
        '  theia-eval distill teachers=cdiv student=deit-small data=/data/imagenet-224',
        '  torchrun --nproc_per_node 8 -m theia_eval.cli distill teachers=cdiv student=deit-small data=PATH',
    ), hydra_defaults=('frames@frames   # settings for rendering a missing frames:SUITE set (configs/frames.yaml)', '_self_')),
    VerbConfig('embed', EmbedConfig, header=(
        'theia-eval embed: encode every demo frame once into the float16 memory-mapped cache.',
    )),
    VerbConfig('encoders', EncodersConfig, column=20, header=(
        'theia-eval encoders: list the registry, or encode images with one encoder.',
    )),
    VerbConfig('entropy', EntropyConfig, header=(
        'theia-eval entropy: feature-norm entropy per encoder and its correlation with the leaderboard score.',
        '  theia-eval entropy encoders=results results=results/sweeps/NAME/results.sqlite images=demos:data/demos',
        '  theia-eval entropy encoders=[efficientnet-lite0,random-vit-nano,pixels] images=skimage',
        '  theia-eval entropy sweep_dir=results/study/entropy out_dir=...   # one sweep: per task and pooled',
    )),
    VerbConfig('evaluate', EvaluateConfig, header=(
        'theia-eval evaluate: re-evaluate a trained run in simulation.',
    )),
    VerbConfig('frames', FramesConfig, column=24, header=(
        'theia-eval frames: render a simulator frame set (RGB + exact depth + segmentation) for distillation.',
        '  theia-eval frames suite=metaworld num_frames=2000',
        '  theia-eval frames suite=dmc exclude_tasks=[dmc/walker-*,dmc/cheetah-*] out=DIR',
        '  theia-eval frames video=DIR every=30 shard_size=512 out=DIR   (videos -> webdataset tar shards; data=tar:DIR;',
        '    video= and every= are read by the verb itself, not keys of this file: see theia_eval/distill/video.py)',
    )),
    VerbConfig('leaderboard', LeaderboardConfig, header=(
        'theia-eval leaderboard results=PATH: markdown, CSV and a self-contained HTML page from the results store.',
    )),
    VerbConfig('quickstart', QuickstartConfig, column=30, header=(
        'theia-eval quickstart (`make quickstart`): the small end-to-end job on a CPU.',
        'Runs the sweep configs/sweep/<grid>.yaml (demos -> distill a nano student -> embed -> train + evaluate heads),',
        'then writes the leaderboard, plots, entropy report and one HTML report to out_dir. A second run reuses',
        'everything (demos, frames, student, embeddings, finished cells, entropy records) and takes well under a minute.',
    )),
    VerbConfig('sweep', SweepConfig, header=(
        'theia-eval sweep sweep=NAME: a grid of cells (encoders x tasks x heads x seeds, plus students distilled',
        'in the same sweep) run as Hydra multiruns, stage by stage: demos -> distill -> embed -> train.',
        'The grid is configs/sweep/NAME.yaml (under the key `sweep`); override its keys as sweep.seeds=[100,200].',
        'Re-running the same command resumes: finished cells are skipped, killed cells continue from last.pt.',
    ), hydra_defaults=('sweep: ???', '_self_')),
    VerbConfig('tasks', TasksConfig, column=18, header=(
        'theia-eval tasks: list suites and tasks.',
    )),
    VerbConfig('train', TrainConfig, header=(
        'theia-eval train: behaviour cloning of a policy head on a frozen encoder, evaluated in simulation.',
        'Name exactly one of task / suite. Demos come from `theia-eval demos` (<demos_dir>/<family>/<task>.hdf5).',
    )),
)}

def defaults(verb: str) -> dict[str, Any]:
    """The verb's default settings as a plain nested mapping (what configs/<verb>.yaml holds)."""
    return dataclasses.asdict(VERB_CONFIGS[verb].cls())


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """(dotted key, default, help) of every leaf setting, nested sections flattened."""
    for f in fields(cls):
        value = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if is_dataclass(value):
            yield from _leaves(type(value), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, f.metadata.get("help", "")


def yaml_value(value: Any) -> str:
    """One value as YAML flow text that OmegaConf reads back as the same value and type."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if not isinstance(value, str):
        return str(value)
    return value if _reads_back(value) else json.dumps(value)


def _reads_back(text: str) -> bool:
    """Whether `text`, written unquoted, is read by OmegaConf as this same string."""
    import yaml
    from omegaconf import OmegaConf

    if not text or text.strip() != text:
        return False
    try:
        return OmegaConf.to_container(OmegaConf.create(f"v: {text}"))["v"] == text
    except yaml.YAMLError:  # e.g. '*' (an alias): must be quoted
        return False


def _body(obj: Any, indent: int, column: int) -> list[str]:
    lines = []
    for f in fields(obj):
        value, help_text = getattr(obj, f.name), f.metadata.get("help", "")
        lines += [" " * indent + c for c in f.metadata.get("before", ())]
        line = " " * indent + f"{f.name}:" + ("" if is_dataclass(value) else f" {yaml_value(value)}")
        if help_text:
            line = line.ljust(max(column, len(line) + 2)) + f"# {help_text}"
        lines.append(line)
        if is_dataclass(value):
            lines += _body(value, indent + 2, column)
    return lines


def render_yaml(verb: str) -> str:
    """The text of configs/<verb>.yaml: header comments, Hydra defaults list, every setting with its help."""
    vc = VERB_CONFIGS[verb]
    lines = [f"# {line}".rstrip() for line in vc.header]
    if vc.hydra_defaults:
        lines += ["defaults:"] + [f"  - {d}" for d in vc.hydra_defaults]
    return "\n".join(lines + _body(vc.cls(), 0, vc.column)) + "\n"


def key_help(verb: str) -> str:
    """`theia-eval <verb> --help`'s list of config keys: key=default and what it means."""
    rows = [(f"{key}={yaml_value(value)}", help_text) for key, value, help_text in _leaves(VERB_CONFIGS[verb].cls)]
    width = min(max(len(k) for k, _ in rows), 40)
    lines = [f"  {k.ljust(width)}  {h}".rstrip() for k, h in rows]
    return f"config keys (override with key=value; configs/{verb}.yaml):\n" + "\n".join(lines)


def write_yaml(config_dir: Path) -> list[Path]:
    """Write configs/<verb>.yaml for every verb; returns the files whose text changed."""
    changed = []
    for verb in VERB_CONFIGS:
        path = Path(config_dir) / f"{verb}.yaml"
        text = render_yaml(verb)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m theia_eval.settings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="(re)write configs/<verb>.yaml from the classes")
    args = parser.parse_args(argv)
    from theia_eval.config import config_dir

    if args.write:
        for path in write_yaml(config_dir()):
            print(f"wrote {path}")
        return 0
    stale = [v for v in VERB_CONFIGS if (config_dir() / f"{v}.yaml").read_text() != render_yaml(v)]
    print("stale: " + ", ".join(stale) if stale else "every configs/<verb>.yaml matches theia_eval/settings.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
