"""Bad input never passes silently (issue 16): a table of wrong settings, files and paths across every verb.

Each case runs `theia-eval` in a subprocess on real (tiny) files and asserts exit code 2, one error line
`theia-eval VERB: error: ...` matching the expected message (no traceback), and that no file or folder was
created and no existing file changed. Every path below the fixture root holds a space.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

TASK = "metaworld/drawer-open"
RUN = ["encoder=pixels", f"task={TASK}", "head=conv", "bc.progress=false", "eval.progress=false"]


# --- tiny real files -------------------------------------------------------------------------------
def write_demo_file(path: Path, task: str = TASK, camera: str = "top_cap2", nan: bool = False, seed: int = 0,
                    dims: tuple[int, int, int] = (4, 4, 39)) -> None:
    """A 2-episode demo file of `task`; dims = (action, proprio, state) sizes (Meta-World's by default)."""
    from theia_eval.envs.dataset import DatasetMeta, Episode, write_demos
    from theia_eval.envs.renderer import RenderSpec

    rng = np.random.default_rng(seed)
    action_dim, proprio_dim, state_dim = dims
    episodes = []
    for i in range(2):
        actions = rng.uniform(-1, 1, (6, action_dim)).astype(np.float32)
        if nan and i == 1:
            actions[2, 1] = np.nan
        episodes.append(Episode(rgb=rng.integers(0, 256, (6, 56, 56, 3), dtype=np.uint8),
                                proprio=rng.standard_normal((6, proprio_dim)).astype(np.float32),
                                state=rng.standard_normal((6, state_dim)).astype(np.float32), actions=actions,
                                rewards=np.zeros(6, np.float32), success=np.r_[np.zeros(5, bool), True],
                                seed=54321 + i))
    meta = DatasetMeta(task=task, suite=task.split("/")[0], camera=camera, render=RenderSpec("fast", 64, 56),
                       horizon=500)
    write_demos(path, episodes, meta, valid_fraction=0.5)


def write_png16(path: Path, array: np.ndarray) -> None:
    """A 16-bit PNG (grey (H, W) or RGB (H, W, 3)), written by hand: Pillow cannot write 16-bit RGB."""
    a = np.asarray(array, dtype=">u2")
    h, w = a.shape[:2]
    raw = b"".join(b"\0" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if a.ndim == 3 else 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def write_tar(path: Path, count: int = 4) -> bytes:
    from PIL import Image

    with tarfile.open(path, "w") as tar:
        for i in range(count):
            buf = io.BytesIO()
            Image.fromarray(np.full((72, 72, 3), 40 * i, np.uint8)).save(buf, "PNG")
            info = tarfile.TarInfo(f"img{i}.png")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path.read_bytes()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The fixture tree (paths with a space): demo files, text files, images, a truncated tar, run dirs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad inputs") / "fixture root"
    for sub in ("cwd", "home", "data root"):
        (root / sub).mkdir(parents=True)
    demos = root / "demos"
    write_demo_file(demos / "metaworld" / "drawer-open.hdf5")
    write_demo_file(demos / "metaworld" / "window-open.hdf5", task="metaworld/window-open", seed=1)
    write_demo_file(demos / "nan.hdf5", nan=True)
    write_demo_file(demos / "corner.hdf5", camera="corner")
    from theia_eval.envs.tasks import get_task

    walker = get_task("dmc/walker-stand")  # a DMC file: its own camera, action size, no proprio
    write_demo_file(demos / "dmc" / "walker-stand.hdf5", task=walker.name, camera=walker.camera, seed=2,
                    dims=(walker.action_dim, walker.proprio_dim, walker.state_dim))
    (root / "notes.txt").write_text("just some notes, not data\n")
    images = root / "images"
    images.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (72, 72, 3), dtype=np.uint8)).save(images / name)
    (images / "b.png").write_text("not an image\n")
    full = write_tar(root / "full.tar")
    (root / "cut.tar").write_bytes(full[:1536 + 700])  # ends inside the second member
    return root


# --- per-case setups (each writes below root / "cases" / <id>, before the snapshot) ------------------
def finished_run(case_dir: Path, root: Path, overrides: list[str]) -> Path:
    """A finished run directory as `train` leaves it (config.yaml + metrics.json); returns the run dir."""
    from theia_eval.config import compose
    from theia_eval.envs.tasks import get_task
    from theia_eval.policies.runs import run_config, run_dir

    cfg = compose("train", overrides, paths=False)
    spec = get_task(TASK)
    out = run_dir(cfg, spec)
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(__import__("omegaconf").OmegaConf.to_yaml(
        run_config(cfg, spec, Path(cfg.demos))))
    (out / "metrics.json").write_text('{"last_checkpoint": {"epoch": 2, "success": 0.5}}\n')
    return out


def run_args(root: Path, case_dir: Path) -> list[str]:
    return [*RUN, f"demos={root / 'demos/metaworld/drawer-open.hdf5'}", f"out_dir={case_dir / 'runs'}",
            f"cache_dir={case_dir / 'cache'}"]


def policy_checkpoint(path: Path, overrides: list[str], grid=(16, 16), token_dim=48, run: dict | None = None) -> None:
    import torch

    from theia_eval.config import compose
    from theia_eval.policies.runs import bc_config

    cfg = compose("train", overrides, paths=False)
    shapes = {"grid": list(grid), "token_dim": token_dim, "summary_dim": 1, "history": 3, "fusion": "flare",
              "proprio_dim": 4, "action_dim": 4}
    torch.save({"format": 1, "epoch": 1, "config": dataclasses.asdict(bc_config(cfg)), "shapes": shapes,
                "model": {}, "run": run, "optimizer": {}, "generator": torch.Generator().get_state(), "rng": {},
                "history": [], "best": None}, path)


def setup_finished(root: Path, d: Path) -> None:
    finished_run(d, root, run_args(root, d) + ["eval.episodes=2"])


def setup_foreign_last(root: Path, d: Path) -> None:
    out = finished_run(d, root, run_args(root, d))
    (out / "metrics.json").unlink()
    policy_checkpoint(out / "last.pt", run_args(root, d), run={"task": "metaworld/window-open", "encoder": "pixels"})


def setup_bad_run_config(root: Path, d: Path) -> None:
    out = finished_run(d, root, run_args(root, d))
    (out / "config.yaml").write_text("task: [unclosed\n  bc: {\n")


def setup_eval_text_ckpt(root: Path, d: Path) -> None:
    out = finished_run(d, root, run_args(root, d))
    (out / "best.pt").write_text("a text file, not a checkpoint\n")


def setup_eval_foreign_ckpt(root: Path, d: Path) -> None:
    out = finished_run(d, root, run_args(root, d))
    policy_checkpoint(out / "best.pt", run_args(root, d), grid=(7, 7), token_dim=1280)  # an EfficientNet run's


def setup_failed_seeds(root: Path, d: Path) -> None:
    parts = d / "demos" / "metaworld" / "drawer-open.hdf5.parts"
    parts.mkdir(parents=True)
    (parts / "failed_seeds.json").write_text("[54321, 543")  # cut short by a kill


def setup_distill_run(root: Path, d: Path) -> None:
    from omegaconf import OmegaConf

    from theia_eval.config import compose

    cfg = compose("distill", [f"run_dir={d / 'run'}", "train.base_lr=0.002"], paths=False)
    (d / "run").mkdir(parents=True)
    (d / "run" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def setup_damaged_plan(root: Path, d: Path) -> None:
    (d / "sw").mkdir(parents=True)
    (d / "sw" / "plan.json").write_text('{"name": "smoke", "sto')  # cut short by a kill


def setup_adroit_without_pen_model(root: Path, d: Path) -> None:
    """{case}/site: a gymnasium-robotics install (first on PYTHONPATH) whose Adroit folder lacks adroit_pen.xml."""
    import gymnasium_robotics

    real = Path(os.path.realpath(gymnasium_robotics.__file__)).parent / "envs" / "assets" / "adroit_hand"
    assets = d / "site" / "gymnasium_robotics" / "envs" / "assets" / "adroit_hand"
    assets.mkdir(parents=True)
    (d / "site" / "gymnasium_robotics" / "__init__.py").write_text("")
    for name in ("adroit_relocate.xml", "adroit_assets.xml", "adroit_model.xml"):
        shutil.copy(real / name, assets / name)
    (assets / "resources").mkdir()


def setup_file(root: Path, d: Path) -> None:
    d.mkdir(parents=True)
    (d / "a file").write_text("x\n")


def make_readonly(folder: Path) -> Callable[[], None] | None:
    """Make a folder unwritable even for root (chattr +i); None when this machine cannot."""
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    return None


# --- the table -------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    argv: list[str]  # {root} and {case} are replaced by the fixture root and this case's folder
    match: str  # regex the error message must match
    setup: Callable[[Path, Path], None] | None = None
    readonly: bool = False  # {case}/ro is made unwritable
    env: dict[str, str] = field(default_factory=dict)  # extra environment ({case} replaced)
    verb: str = field(init=False)

    def __post_init__(self) -> None:
        self.verb = self.argv[0]


D, DW, NAN, CORNER = ("{root}/demos/metaworld/drawer-open.hdf5", "{root}/demos/metaworld/window-open.hdf5",
                      "{root}/demos/nan.hdf5", "{root}/demos/corner.hdf5")
DMC = "{root}/demos/dmc/walker-stand.hdf5"
TRAIN = ["train", *RUN, f"demos={D}", "out_dir={case}/runs", "cache_dir={case}/cache"]
EMBED = ["embed", "encoder=pixels", f"demos={D}", "cache_dir={case}/cache"]
DEMOS = ["demos", f"task={TASK}", "out_dir={case}/demos", "workers=0", "progress=false"]
DISTILL = ["distill", "teachers=[pixels]", "student=nano", "data=folder:{root}/images", "run_dir={case}/run",
           "cache_dir={case}/targets", "train.progress=false"]
EVAL = ["evaluate", "run={case}/runs/metaworld_drawer-open/pixels/conv/seed100", "progress=false"]

CASES = [
    # tasks / encoders
    Case("tasks-unknown-suite", ["tasks", "suite=cortexbench-metawrld"], r"unknown suite 'cortexbench-metawrld'.*Did you mean"),
    Case("tasks-pattern-list", ["tasks", "pattern=[a,b]"], r"pattern=\['a', 'b'\] \(a list\) is not allowed: pattern must be a text"),
    Case("encoders-text-image", ["encoders", "pixels", "--image", "{root}/notes.txt"], r"notes.txt is not an image file"),
    Case("encoders-missing-image", ["encoders", "pixels", "--image", "{root}/no such.png"], r"image file not found: .*no such.png"),
    Case("encoders-text-weights", ["encoders", "efficientnet-lite0", "weights={root}/notes.txt"],
         r"could not read .*notes.txt as a torch checkpoint.*not a checkpoint"),
    Case("encoders-unknown-key", ["encoders", "nosuchkey=1"], r"bad config for 'encoders'.*nosuchkey"),
    Case("leaderboard-added-unknown-key", ["leaderboard", "+bogus=1", "results={root}/no.sqlite"],
         r"unknown key 'bogus' for `theia-eval leaderboard`: `\+bogus=1` adds a key .* nothing would read it"),
    Case("demos-added-misspelt-key", [*DEMOS, "+num_demoz=3"],
         r"unknown key 'num_demoz' for `theia-eval demos`.*Did you mean: num_demos"),
    # demos
    Case("demos-fraction-count", [*DEMOS, "num_demos=1.5"], r"num_demos=1.5 \(a fraction\) is not allowed: num_demos must be an integer >= 1"),
    Case("demos-text-count", [*DEMOS, "num_demos=abc"], r"num_demos='abc' \(a text\) is not allowed"),
    Case("demos-zero-count", [*DEMOS, "num_demos=0"], r"num_demos=0 is not allowed: num_demos must be an integer >= 1"),
    Case("demos-valid-fraction", [*DEMOS, "valid_fraction=1.0"], r"valid_fraction=1.0 .*must be a number >= 0 and < 1"),
    Case("demos-crop-too-big", [*DEMOS, "crop=300"], r"crop=300 is larger than resolution=256"),
    Case("demos-compression", [*DEMOS, "compression=zip"], r"compression='zip' \(a text\) is not allowed: .*one of gzip, lzf"),
    Case("demos-negative-workers", [*DEMOS, "workers=-1"], r"workers=-1 is not allowed: workers must be an integer >= 0"),
    Case("demos-adroit-model-missing", [*DEMOS[:1], "task=adroit/pen", *DEMOS[2:]],
         r"the Adroit model of AdroitHandPen-v1 is incomplete: adroit_pen.xml missing from .*site.*"
         r"reinstall it: `pip install --force-reinstall gymnasium-robotics`",
         setup=setup_adroit_without_pen_model, env={"PYTHONPATH": "{case}/site"}),
    Case("experts-episode-past-horizon", ["experts", "task=dmc/walker-stand", "episode_steps=600", "out_dir={case}/experts"],
         r"episode_steps=600 is longer than a dmc/walker-stand episode \(500 policy steps.*use episode_steps <= 500"),
    Case("experts-metaworld-task", ["experts", f"task={TASK}", "out_dir={case}/experts"],
         r"distilled experts are trained for DMC tasks only .*got task=.metaworld/drawer-open."),
    Case("experts-negative-rounds", ["experts", "task=dmc/reacher-easy", "rounds=-1", "out_dir={case}/experts"],
         r"rounds=-1 is not allowed: rounds must be an integer >= 1"),
    Case("demos-out-dir-is-file", ["demos", f"task={TASK}", "out_dir={case}/a file"], r"out_dir=.*a file is a file, not a folder",
         setup=setup_file),
    Case("demos-out-dir-read-only", ["demos", f"task={TASK}", "out_dir={case}/ro/demos"], r"out_dir=.*ro/demos is not writable",
         readonly=True),
    Case("demos-info-text-file", ["demos", "--info", "{root}/notes.txt"], r"notes.txt is not a readable HDF5 file"),
    Case("demos-info-check-nan", ["demos", "--info", NAN, "--check"], r"demo_1/actions has 1 non-finite value\(s\) \(NaN/inf\)"),
    Case("demos-corrupt-json-in-output", [*DEMOS, "num_demos=1", "out_dir={case}/demos"],
         r"failed-seeds record .*failed_seeds.json is not valid JSON.*Delete it", setup=setup_failed_seeds),
    Case("demos-non-ascii-task", ["demos", "task=metaworld/tiroir-ouvert-é"], r"cannot read the setting .*quoted for Hydra.*\"task='metaworld/tiroir-ouvert-é'\""),
    Case("demos-import-text-pickle", ["demos", "--import", "{root}/notes.txt", f"task={TASK}", "out={case}/x.hdf5"],
         r"notes.txt is not a readable pickle"),
    Case("demos-import-without-out", ["demos", "--import", "{root}/notes.txt", f"task={TASK}"], r"--import needs task=.* and out=PATH"),
    # embed
    Case("embed-zero-chunk", [*EMBED, "chunk_size=0"], r"chunk_size=0 is not allowed: chunk_size must be an integer >= 1"),
    Case("embed-bad-kind", [*EMBED, "kind=pixels"], r"kind='pixels' .*one of tokens, summary"),
    Case("embed-missing-demos", ["embed", "encoder=pixels", "demos={root}/demos/missing, really=1.hdf5", "cache_dir={case}/c"],
         r"demos=.*missing, really=1.hdf5 does not exist"),
    Case("embed-text-demos", ["embed", "encoder=pixels", "demos={root}/notes.txt", "cache_dir={case}/c"], r"notes.txt is not a readable HDF5 file"),
    Case("embed-other-task-demos", ["embed", "encoder=pixels", f"demos={DW}", f"task={TASK}", "cache_dir={case}/c"],
         r"holds demos of metaworld/window-open .*not of metaworld/drawer-open"),
    Case("embed-dmc-demos", ["embed", "encoder=pixels", f"demos={DMC}", f"task={TASK}", "cache_dir={case}/c"],
         r"holds demos of dmc/walker-stand .*not of metaworld/drawer-open"),
    Case("embed-cache-dir-is-file", ["embed", "encoder=pixels", f"demos={D}", "cache_dir={case}/a file"], r"cache_dir=.* is a file, not a folder",
         setup=setup_file),
    Case("embed-zero-threads", [*EMBED, "threads=0"], r"threads=0 is not allowed: threads must be an integer >= 1, or null"),
    # train
    Case("train-zero-horizon", [*TRAIN, "eval.horizon=0"], r"eval.horizon=0 is not allowed: eval.horizon must be an integer >= 1, or null"),
    Case("train-text-epochs", [*TRAIN, "bc.epochs=abc"], r"bc.epochs='abc' \(a text\) is not allowed"),
    Case("train-batch-of-one", [*TRAIN, "bc.batch_size=1"], r"bc.batch_size=1 is not allowed: .*integer >= 2"),
    Case("train-negative-lr", [*TRAIN, "bc.lr=-0.1"], r"bc.lr=-0.1 is not allowed: bc.lr must be a number > 0"),
    Case("train-groups-over-envs", [*TRAIN, "eval.groups=3"], r"eval.groups=3 is more than eval.num_envs=2"),
    Case("train-negative-seed", [*TRAIN, "seed=-1"], r"seed=-1 is not allowed: seed must be an integer >= 0"),
    Case("train-other-task-demos", ["train", *RUN, f"demos={DW}", "out_dir={case}/runs", "cache_dir={case}/cache"],
         r"window-open.hdf5 holds demos of metaworld/window-open .*not of metaworld/drawer-open"),
    Case("train-dmc-demos", ["train", *RUN, f"demos={DMC}", "out_dir={case}/runs", "cache_dir={case}/cache"],
         r"walker-stand.hdf5 holds demos of dmc/walker-stand .*not of metaworld/drawer-open"),
    Case("train-other-render-demos", [*TRAIN, "eval.resolution=128"],
         r"rendered with preset=fast resolution=64 crop=56, but preset=fast resolution=128 crop=56 was requested.*force=true"),
    Case("train-other-camera-demos", ["train", *RUN, f"demos={CORNER}", "out_dir={case}/runs", "cache_dir={case}/cache"],
         r"rendered from camera 'corner' but metaworld/drawer-open is evaluated from 'top_cap2'.*force=true"),
    Case("train-unknown-split", [*TRAIN, "split=validd"], r"has no mask/validd; available splits: \['train', 'valid'\] "
         r"\(split=null, the default, uses all demos\)"),
    Case("train-unknown-head", [*TRAIN, "head=convv"], r"unknown policy head 'convv'.*Did you mean: conv"),
    Case("train-unknown-fusion", [*TRAIN, "bc.fusion=flair"], r"unknown .*fusion.*'flair'"),
    Case("train-unknown-preset", [*TRAIN, "eval.preset=fastest"], r"unknown render preset 'fastest'"),
    Case("train-task-and-suite", [*TRAIN, "suite=cortexbench-metaworld"], r"name exactly one of suite=NAME or task=NAME"),
    Case("train-out-dir-is-file", ["train", *RUN, f"demos={D}", "out_dir={case}/a file"], r"out_dir=.*a file is a file, not a folder",
         setup=setup_file),
    Case("train-finished-run-other-settings", [*TRAIN, "eval.episodes=5"],
         r"holds a finished run with other settings \(eval.episodes: 2 -> 5\).*new out_dir=DIR, or force=true",
         setup=setup_finished),
    Case("train-checkpoint-of-another-run", TRAIN, r"last.pt was trained with other settings or for another run "
         r"\(task: 'metaworld/window-open' -> 'metaworld/drawer-open'\)", setup=setup_foreign_last),
    Case("train-damaged-run-config", TRAIN, r"the run config .*config.yaml cannot be read .*the run directory is damaged.*or force=true",
         setup=setup_bad_run_config),
    Case("train-text-weights", [*TRAIN, "encoder=efficientnet-lite0", "weights={root}/notes.txt"],
         r"efficientnet-lite0: could not read .*notes.txt as a torch checkpoint"),
    # evaluate
    Case("evaluate-missing-run", ["evaluate", "run={case}/no run"], r"run=.*no run does not exist"),
    Case("evaluate-not-a-run", ["evaluate", "run={root}/demos"], r"is not a run directory \(no config.yaml\)"),
    Case("evaluate-bad-checkpoint-name", [*EVAL, "checkpoint=middle"], r"checkpoint='middle' .*one of best, last",
         setup=setup_finished),
    Case("evaluate-zero-episodes", [*EVAL, "episodes=0"], r"episodes=0 is not allowed", setup=setup_finished),
    Case("evaluate-text-checkpoint", EVAL, r"best.pt cannot be read as a theia-eval policy checkpoint", setup=setup_eval_text_ckpt),
    Case("evaluate-checkpoint-of-another-run", EVAL,
         r"best.pt does not belong to the run .*grid: checkpoint \(7, 7\), run \(16, 16\)", setup=setup_eval_foreign_ckpt),
    # distill / frames
    Case("distill-negative-steps", [*DISTILL, "train.steps=-1"], r"train.steps=-1 is not allowed: train.steps must be an integer >= 1, or null"),
    Case("distill-zero-batch", [*DISTILL, "train.batch_size=0"], r"train.batch_size=0 is not allowed"),
    Case("distill-val-fraction", [*DISTILL, "val_fraction=1.5"], r"val_fraction=1.5 .*must be a number >= 0 and < 1"),
    Case("distill-bad-amp", [*DISTILL, "train.amp=fp8"], r"train.amp='fp8' .*one of auto, bf16, fp16, off"),
    Case("distill-truncated-tar", [*DISTILL[:3], "data=tar:{root}/cut.tar", *DISTILL[4:]], r"tar shard .*cut.tar is truncated"),
    Case("distill-run-other-settings", [*DISTILL, "train.base_lr=0.01"],
         r"holds a started run with other settings \(.*train.base_lr: 0.002 -> 0.01.*resume=false", setup=setup_distill_run),
    Case("distill-non-image-in-worker", [*DISTILL, "image_size=64", "targets=online", "train.num_workers=1", "extract_batch=1"],
         r"images/b.png is not an image file .*\(raised in DataLoader worker process 0\)"),
    Case("distill-unknown-lr-decay", [*DISTILL, "train.lr_decay=linear"], r"train.lr_decay='linear' .*one of none, cosine"),
    Case("distill-text-lr-final-factor", [*DISTILL, "train.lr_final_factor=abc"],
         r"train.lr_final_factor='abc' \(a text\) is not allowed: .*a number >= 0 and <= 1"),
    Case("frames-text-task-block", ["frames", "task_block=abc", "out={case}/frames"], r"task_block='abc' \(a text\) is not allowed"),
    Case("frames-zero-frames", ["frames", "num_frames=0", "out={case}/frames"], r"num_frames=0 is not allowed"),
    Case("frames-expert-fraction", ["frames", "expert_fraction=2", "out={case}/frames"], r"expert_fraction=2 is not allowed: .*>= 0 and <= 1"),
    # decode
    Case("decode-text-batch", ["decode", "media={root}/images", "batch_size=abc", "out={case}/dec"],
         r"batch_size='abc' \(a text\) is not allowed: batch_size must be an integer >= 1"),
    Case("decode-zero-every", ["decode", "media={root}/images", "every=0", "out={case}/dec"], r"every=0 is not allowed"),
    Case("decode-fraction-top-k", ["decode", "media={root}/images", "top_k=1.5", "out={case}/dec"],
         r"top_k=1.5 \(a fraction\) is not allowed"),
    Case("decode-out-is-file", ["decode", "media={root}/images", "out={case}/a file"], r"out=.*a file is a file, not a folder",
         setup=setup_file),
    Case("decode-missing-media", ["decode", "media={root}/no such.png", "out={case}/dec"], r"media=.*no such.png does not exist"),
    # publish / ablation
    Case("publish-damaged-plan", ["publish", "sweep_dir={case}/sw", "dest={case}/pub"],
         r"sweep plan .*plan.json is not valid JSON .*Delete it", setup=setup_damaged_plan),
    Case("publish-without-dest", ["publish", "sweep_dir={case}/sw"], r"pass sweep_dir=DIR .* and dest=DIR"),
    Case("publish-not-a-sweep", ["publish", "sweep_dir={root}/demos", "dest={case}/pub"], r"is not a sweep's out_dir"),
    Case("ablation-damaged-plan", ["ablation", "sweep_dir={case}/sw"], r"sweep plan .*plan.json is not valid JSON",
         setup=setup_damaged_plan),
    Case("ablation-not-a-sweep", ["ablation", "sweep_dir={root}/demos"], r"has no plan.json"),
    Case("ablation-few-resamples", ["ablation", "sweep_dir={root}/demos", "uncertainty.resamples=5"],
         r"uncertainty.resamples=5 is not allowed: .*>= 100"),
    # sweep / analysis / quickstart
    Case("sweep-unknown-grid", ["sweep", "sweep=smok"], r"Could not find 'sweep/smok'"),
    Case("sweep-zero-jobs", ["sweep", "sweep=smoke", "jobs=0", "out_dir={case}/sw"], r"jobs=0 is not allowed"),
    Case("sweep-bad-launcher", ["sweep", "sweep=smoke", "launcher=slurm", "out_dir={case}/sw"], r"launcher='slurm' .*one of sequential"),
    Case("sweep-bad-train-block", ["sweep", "sweep=smoke", "sweep.train.bc.epochs=0", "out_dir={case}/sw", "--dry-run"],
         r"in the sweep's train block .*bc.epochs=0 is not allowed"),
    Case("leaderboard-missing-results", ["leaderboard", "results={case}/none.sqlite"], r"results=.*none.sqlite does not exist"),
    Case("leaderboard-text-results", ["leaderboard", "results={root}/notes.txt", "out_dir={case}/lb"], r"is not a theia-eval results store"),
    Case("leaderboard-zero-resamples", ["leaderboard", "results={root}/notes.txt", "uncertainty.resamples=0"], r"uncertainty.resamples=0 is not allowed"),
    Case("entropy-one-bin", ["entropy", "encoders=[pixels]", "bins=1", "out_dir={case}/e"], r"bins=1 is not allowed: bins must be an integer >= 2"),
    Case("entropy-non-image-in-folder", ["entropy", "encoders=[pixels]", "images=folder:{root}/images", "out_dir={case}/e"],
         r"images/b.png is not an image file"),
    Case("quickstart-zero-threads", ["quickstart", "threads=0", "out_dir={case}/qs"], r"threads=0 is not allowed"),
]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root; files with (size, mtime) so a rewritten file shows."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else ("dir",)
            for p in root.rglob("*")}


def run_cli(argv: list[str], root: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(root / "home"), "THEIA_EVAL_DATA": str(root / "data root"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl", "PYTHONWARNINGS": "ignore",
           **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "theia_eval.cli", *argv], cwd=root / "cwd", env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, root: Path):
    case_dir = root / "cases" / case.id
    undo = None
    if case.setup is not None:
        case.setup(root, case_dir)
    if case.readonly:
        undo = make_readonly(case_dir / "ro")
        if undo is None:
            pytest.skip("cannot make a read-only folder here (root without chattr)")
    argv = [a.replace("{root}", str(root)).replace("{case}", str(case_dir)) for a in case.argv]
    env = {k: v.replace("{case}", str(case_dir)) for k, v in case.env.items()}
    before = snapshot(root)
    try:
        result = run_cli(argv, root, env)
    finally:
        if undo is not None:
            undo()
    errors = [line for line in re.split(r"[\r\n]", result.stderr) if line.startswith(f"theia-eval {case.verb}: error: ")]
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1, result.stderr[-3000:]
    assert re.search(case.match, errors[0]), errors[0]
    after = snapshot(root)
    assert sorted(set(after) - set(before)) == [], "files left behind"
    assert {k: v for k, v in after.items() if v != before.get(k) and v != ("dir",)} == {}, "files changed"


def test_table_covers_every_verb():
    from theia_eval.cli import VERBS

    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    assert {c.verb for c in CASES} == set(VERBS), f"verbs without a bad-input case: {set(VERBS) - {c.verb for c in CASES}}"


# --- paths that must work --------------------------------------------------------------------------
def test_paths_with_spaces_non_ascii_commas_and_equals_work(root: Path, tmp_path: Path):
    """A demo file and a cache folder whose names hold every awkward character are used as given."""
    odd = tmp_path / "dé mo, x=1 [a]"
    odd.mkdir()
    shutil.copy(root / "demos/metaworld/drawer-open.hdf5", odd / "démos, v=2.hdf5")
    result = run_cli(["embed", "encoder=pixels", f"demos={odd / 'démos, v=2.hdf5'}", f"task={TASK}",
                      f"cache_dir={odd / 'cache=x, é'}"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((odd / "cache=x, é" / "pixels").glob("*/manifest.json"))
    result = run_cli(["demos", "--info", str(odd / "démos, v=2.hdf5"), "--check"], root)
    assert result.returncode == 0 and "all readable, every number finite" in result.stdout, result.stderr[-3000:]
    image = odd / "im, é=1.png"
    write_png16(image, np.full((32, 32, 3), 40000, np.uint16))
    result = run_cli(["encoders", "pixels", "--image", str(image), "--json"], root)
    assert result.returncode == 0, result.stderr[-3000:]


def test_sixteen_bit_pngs_are_scaled_not_wrapped(tmp_path: Path):
    from theia_eval.io import read_image

    grey, rgb = tmp_path / "grey16.png", tmp_path / "rgb16.png"
    write_png16(grey, np.full((4, 5), 40000, np.uint16))
    write_png16(rgb, np.stack([np.full((4, 5), v, np.uint16) for v in (65535, 40000, 300)], -1))
    assert read_image(grey).shape == (4, 5, 3) and (read_image(grey) == 156).all()  # 40000 / 65535 * 255
    np.testing.assert_array_equal(read_image(rgb)[0, 0], [255, 156, 1])


def test_a_killed_embed_leaves_nothing_the_next_run_keeps(root: Path, tmp_path: Path):
    """The temporary folder of a build killed mid-way is removed by the next `embed` of that cache."""
    cache = tmp_path / "cache"
    args = ["embed", "encoder=pixels", f"demos={root / 'demos/metaworld/drawer-open.hdf5'}", f"cache_dir={cache}"]
    assert run_cli(args, root).returncode == 0
    built = next((cache / "pixels").glob("*/manifest.json")).parent
    stale = built.parent / f".{built.name}.tmp-999999-0123abcd"
    stale.mkdir()
    (stale / "embeddings.npy").write_bytes(b"\0" * 4096)
    result = run_cli([*args, "rebuild=true"], root)
    assert result.returncode == 0 and not stale.exists(), result.stderr[-2000:]
    assert sorted(p.name for p in (cache / "pixels").iterdir()) == sorted([built.name, f"{built.name}.lock"])


def test_leftovers_of_killed_writers_are_removed_by_the_next_writer(tmp_path: Path):
    """Partial frame sets, target-cache shards and exports of a killed process of this machine are removed by the
    next writer of that folder; those of live processes and of other machines stay."""
    import torch

    from theia_eval.distill.framesets import FrameSetWriter
    from theia_eval.encoders.theia_format import write_export_dir
    from theia_eval.io import HOST_TAG, remove_stale_temp_files, temp_sibling

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    other_host = "0" * 8 if HOST_TAG != "0" * 8 else "1" * 8
    frames = tmp_path / "frames"
    frames.mkdir()
    killed = [frames / f".metaworld.tmp-{HOST_TAG}-{gone.pid}-0123abcd", frames / f".metaworld.old-{HOST_TAG}-{gone.pid}-4567cdef"]
    for folder in killed:
        folder.mkdir()
        (folder / "shard-00000.h5").write_bytes(b"\0" * 4096)
    shard = frames / f".shard-00000.safetensors.tmp-{HOST_TAG}-{gone.pid}-89abcdef"
    shard.write_bytes(b"\0" * 4096)
    live, elsewhere = temp_sibling(frames / "metaworld"), frames / f".metaworld.tmp-{other_host}-{gone.pid}-0123abcd"
    live.mkdir()
    elsewhere.mkdir()
    writer = FrameSetWriter(frames / "metaworld", shard_size=4)
    writer.add("k0", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8))
    writer.close({})
    assert sorted(p.name for p in frames.iterdir()) == sorted(["metaworld", live.name, elsewhere.name])

    run = tmp_path / "run"
    run.mkdir()
    stale_export = run / f".export.tmp-{HOST_TAG}-{gone.pid}-0123abcd"
    stale_export.mkdir()
    write_export_dir(run / "export", {"w": torch.zeros(2)}, {"architectures": ["x"]}, {})
    assert sorted(p.name for p in run.iterdir()) == ["export"]
    for name in (f".last.pt.tmp-{gone.pid}", f".metrics.json.{gone.pid}.tmp", f".a.hdf5.{gone.pid}.0123abcd.tmp"):
        (run / name).write_bytes(b"\0")  # the per-file names of checkpoints, JSON and demo files
    (run / f".eval.json.{os.getpid()}.tmp").write_bytes(b"\0")  # this process's: alive
    assert len(remove_stale_temp_files(run)) == 3
    assert sorted(p.name for p in run.iterdir()) == sorted(["export", f".eval.json.{os.getpid()}.tmp"])


def test_worker_message_keeps_the_original_text():
    from theia_eval.cli import error_message
    from theia_eval.errors import InputError

    wrapped = InputError("Caught InputError in DataLoader worker process 1.\nOriginal Traceback (most recent call "
                         "last):\n  File \"x.py\", line 1, in f\n    g()\ntheia_eval.errors.InputError: x.png is not "
                         "an image file: remove it.\n")
    assert error_message(wrapped) == "x.png is not an image file: remove it. (raised in DataLoader worker process 1)"
    env = InputError("env worker 1 of metaworld/x failed:\nTraceback (most recent call last):\n  File \"w.py\", line 3, "
                     "in run\n    step()\nValueError: action has NaN")
    assert error_message(env) == "env worker 1 of metaworld/x failed: ValueError: action has NaN"
    assert error_message(PermissionError(13, "Permission denied", "/out/x")) == (
        "Permission denied: /out/x; fix its permissions or choose another path.")


def test_run_dir_check_accepts_its_own_run_and_force_starts_over(root: Path, tmp_path: Path):
    """The same settings (or only display/parallelism/epochs changed) resume; force=true discards another run."""
    from theia_eval.config import compose
    from theia_eval.envs.tasks import get_task
    from theia_eval.policies.runs import check_run_dir, discard_run, run_dir

    args = run_args(root, tmp_path)
    out = finished_run(tmp_path, root, args)
    spec, demos = get_task(TASK), root / "demos/metaworld/drawer-open.hdf5"
    same = compose("train", [*args, "eval.num_envs=1", "threads=1", "bc.epochs=200", "device=cpu"], paths=False)
    assert check_run_dir(same, spec, demos) is False
    other = compose("train", [*args, "bc.lr=0.01"], paths=False)
    with pytest.raises(Exception, match=r"finished run with other settings \(bc.lr: 0.001 -> 0.01\)"):
        check_run_dir(other, spec, demos)
    forced = compose("train", [*args, "bc.lr=0.01", "force=true"], paths=False)
    assert check_run_dir(forced, spec, demos) is True
    (out / "eval").mkdir()
    (out / "eval" / "epoch_001.json").write_text("{}")
    (out / "notes.md").write_text("mine")
    discard_run(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.md"] and run_dir(forced, spec) == out


def test_added_keys_land_only_in_free_form_mappings():
    """`+key=value` is how Hydra adds a key; only mappings meant to take any key (a `{}` in the shipped YAML, a
    schema mapping) accept one, and a misspelt nested key is named with the keys that exist there."""
    from theia_eval.config import compose
    from theia_eval.errors import InputError

    assert compose("train", ["+bc.head_config.channels=16"], paths=False).bc.head_config.channels == 16
    assert compose("decode", ["+decoder_weights.sam-vit-h=/w/sam"], paths=False).decoder_weights["sam-vit-h"] == "/w/sam"
    assert list(compose("leaderboard", ["+pools.study=[a,b]"], paths=False).pools.study) == ["a", "b"]
    assert compose("train", ["++bc.fusion=flare", "++bc.epochs=3"], paths=False).bc.epochs == 3  # forced, not added
    with pytest.raises(InputError, match=r"unknown key 'bc.epochz'.*under 'bc'.*Did you mean: epochs\?.*batch_size"):
        compose("train", ["++bc.epochz=3"], paths=False)
    with pytest.raises(InputError, match=r"unknown key 'score.headz'.*Did you mean: head\?"):
        compose("entropy", ["+score.headz=conv"], paths=False)
