#!/usr/bin/env bash
# README's decode picture and the "Decoding" section of the bundled student's card, with one command:
#
#   scripts/theia_offline_decode.sh                 # after re-creating the asset (scripts/theia_offline.sh)
#   MODEL=runs/distill/RUN CARD=none scripts/theia_offline_decode.sh   # any student with simulator teachers
#
# 1. renders Meta-World frames the student never trained on: new episodes (seed 7) of the CortexBench
#    evaluation tasks, which scripts/theia_offline.sh also holds out of the training frames;
# 2. decodes them with the student (`theia-eval decode`): PNG rows (input, efficientnet-lite0 PCA + ImageNet
#    top-5, decoded depth, simulator depth, decoded labels, simulator labels) and fidelity.json (depth abs-rel,
#    segmentation mIoU against the simulator's exact channels);
# 3. copies the first row to docs/images/theia-offline-decode.png and writes the numbers into CARD's
#    "## Decoding" section (python -m theia_eval.decoding.card).
# Outputs besides those two files go to $DATA (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data/decode-check}
MODEL=${MODEL:-theia-offline}
CARD=${CARD:-theia_eval/assets/theia-offline/CARD.md}
FIGURE=${FIGURE:-docs/images/theia-offline-decode.png}
FRAMES_ARGS=${FRAMES_ARGS:-suite=cortexbench-metaworld num_frames=200 frames_per_episode=2 seed=7}
TE=${TE:-.venv/bin/theia-eval}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

FRAMES=$DATA/frames-unseen
[ -f "$FRAMES/frameset.json" ] || "$TE" frames out="$FRAMES" $FRAMES_ARGS
rm -rf "$DATA/decoded"
"$TE" decode model="$MODEL" media="frames:$FRAMES" out="$DATA/decoded" max_images=4
mkdir -p "$(dirname "$FIGURE")"
cp "$(ls "$DATA"/decoded/*.png | head -1)" "$FIGURE"
if [ "$CARD" != none ]; then
  .venv/bin/python -m theia_eval.decoding.card "$CARD" "$DATA/decoded/fidelity.json" \
    --frames "theia-eval frames $FRAMES_ARGS: new episodes of the CortexBench Meta-World evaluation tasks" \
    --command "scripts/theia_offline_decode.sh  (theia-eval decode model=$MODEL media=frames:FRAMES)" \
    --figure "$FIGURE"
fi
echo "figure: $FIGURE"
