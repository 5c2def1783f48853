#!/bin/bash
# Issue 4, third session: the epoch-20 checkpoints (best.pt) of button-press-topdown and assembly on the protocol's
# 25 episodes (their training-time evaluation had 10), to compare with epoch 30 on the same seeds.
source "$(dirname "$0")/common.sh"
for t in button-press-topdown assembly; do
  echo "=== $(date +%T) evaluate $t best"
  /usr/bin/time -f "wall %e s" .venv/bin/theia-eval evaluate run=$OUT/metaworld_$t/efficientnet-lite0/conv/seed100 checkpoint=best episodes=25 2>&1 | grep -v "it/s\]"
done
echo "=== all done $(date +%T)"
