#!/usr/bin/env bash
# Re-create the bundled `theia-offline` student and its intermediate exports with one command:
#
#   scripts/theia_offline.sh                      # frames -> targets -> distill (+ exports) -> asset -> decoding
#   BUNDLE=0 scripts/theia_offline.sh             # the same run without replacing the shipped asset
#   STAGE=frames scripts/theia_offline.sh         # only render the frame sets
#
# Frames from all three suites; the study's evaluation tasks (CortexBench Meta-World, DMC and Adroit) are
# never trained on: training frames exclude them (whole DMC domains: walker, cheetah, reacher, finger) and
# the held-out validation set is exactly their frames (val_tasks). Every stage resumes: rendered frame
# sets are kept, target extraction skips finished shards, training resumes from run_dir/checkpoints.
# Outputs (git-ignored): $DATA (frames, target caches) and $RUN (run dir: exports/step-NNNNNN at each
# export_at step, export/ = the final step, fit_curve.json/.png, metrics.jsonl).
# Made on one core of the shared 2-core VM (taskset -c 1): see the asset's CARD.md for the times.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data/theia-offline-v2}
RUN=${RUN:-data/students/theia-offline-v2}
ASSET=${ASSET:-theia_eval/assets/theia-offline}
STEPS=${STEPS:-7000}
THREADS=${THREADS:-1}
BUNDLE=${BUNDLE:-1}
TE=${TE:-.venv/bin/theia-eval}
export THEIA_EVAL_DATA=$DATA OMP_NUM_THREADS=$THREADS

HELD_OUT="[cortexbench-metaworld,cortexbench-dmc,cortexbench-adroit]"
DMC_HELD_OUT_DOMAINS="[dmc/walker-*,dmc/cheetah-*,dmc/reacher-*,dmc/finger-*]"

frames() {  # frames NAME key=value ...: render $DATA/frames/NAME unless it exists
  local out=$DATA/frames/$1; shift
  [ -f "$out/frameset.json" ] || "$TE" frames out="$out" "$@"
}

# Frame counts are whole rounds over the tasks (every task gets the same number of episodes): an episode
# gives 8 time steps x the task's cameras (Meta-World 4, DMC 2, Adroit 2).
# training frames: every other task of each suite (45 Meta-World tasks x 6 episodes, 38 dm_control tasks of
# 14 domains x 8 episodes, Adroit door and hammer x 62 episodes)
frames metaworld-train suite=metaworld exclude_tasks=[cortexbench-metaworld] num_frames=8640 task_block=3 seed=0
frames dmc-train suite=dmc exclude_tasks="$DMC_HELD_OUT_DOMAINS" num_frames=4864 task_block=4 seed=0
frames adroit-train suite=adroit exclude_tasks=[cortexbench-adroit] num_frames=1984 seed=0
# held-out frames: the study's evaluation tasks (their experts drive 60% of the episodes, as in training)
frames metaworld-heldout suite=cortexbench-metaworld num_frames=480 seed=1
frames dmc-heldout suite=cortexbench-dmc num_frames=240 seed=1
frames adroit-heldout suite=cortexbench-adroit num_frames=160 seed=1
[ "${STAGE:-all}" = frames ] && exit 0

F=frames:$DATA/frames
"$TE" distill teachers=offline student=nano \
  "data=[$F/metaworld-train,$F/dmc-train,$F/adroit-train,$F/metaworld-heldout,$F/dmc-heldout,$F/adroit-heldout]" \
  "val_tasks=$HELD_OUT" run_dir="$RUN" threads="$THREADS" \
  train.steps="$STEPS" train.batch_size=32 train.base_lr=1.6e-2 train.lr_decay=cosine train.lr_final_factor=0.05 \
  "train.export_at=[250,500,1000,2000]" train.num_workers=0 train.log_every=25 train.val_every=250 \
  train.ckpt_every=250 train.val_max_images=4096 train.progress=false

[ "$BUNDLE" = 1 ] || exit 0
# the previously shipped student on the same held-out frames, once (before it is replaced), for the card
PREVIOUS=$DATA/previous_theia_offline_heldout.json
[ -f "$PREVIOUS" ] || .venv/bin/python -m theia_eval.distill.heldout theia-offline "$RUN" --out "$PREVIOUS" \
  --label "theia-offline shipped before (weights sha256 $(sha256sum "$ASSET/model.safetensors" | cut -c1-12))"
.venv/bin/python -m theia_eval.distill.bundle "$RUN" "$ASSET" --name theia-offline --recipe scripts/theia_offline.sh \
  --baseline "$PREVIOUS" --target efficientnet-lite0=0.80
# the card's "Decoding" section and README's picture
[ ! -x scripts/theia_offline_decode.sh ] || scripts/theia_offline_decode.sh
