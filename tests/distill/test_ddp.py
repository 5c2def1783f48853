"""torchrun DDP on CPU (2 gloo processes) trains like one process with the same global batch."""
import os
import subprocess
import sys

import pytest
from distill_helpers import distill_cfg
from test_train import assert_same_training

from theia_eval.distill.train import run_distillation

TEACHERS = "teachers=[sim-depth,sim-segmentation]"


# slow (about 2 minutes: two torchrun processes): the default run covers its paths with
# test_cache.py::test_ranks_split_the_shards_and_together_fill_the_cache (rank-split extraction) and
# test_train.py::test_grad_accumulation_matches_full_batch (a global batch split in parts trains like one);
# only the gloo process group itself runs here alone.
@pytest.mark.slow
def test_two_gloo_processes_match_one(frameset, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_distillation(distill_cfg(one, frameset, TEACHERS, "train.steps=3"))
    # the 2-process run extracts its own cache (shards split across ranks) and trains with 4 images per rank
    overrides = [f"{k}={v}" for k, v in distill_cfg(two, frameset, TEACHERS, "train.steps=3").items()
                 if k in ("run_dir", "data", "student", "device", "shard_size", "val_fraction", "extract_batch")]
    overrides += [TEACHERS, "train.amp=off", "train.steps=3", "train.batch_size=8", "train.num_workers=0", "train.progress=false",
                  "train.log_every=1", "train.val_every=100", "train.ckpt_every=100", "train.base_lr=0.25",
                  f"cache_dir={tmp_path / 'cache2'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "theia_eval.cli", "distill", *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size" in (two / "summary.json").read_text() and '"world_size": 2' in (two / "summary.json").read_text()
    assert len(list((tmp_path / "cache2").glob("*/shard-*.safetensors"))) == 6  # 3 shards x 2 teachers
    assert_same_training(one, two)
