#!/bin/bash
# Issue 4 real runs (reduced epochs, labelled): efficientnet-lite0 + conv on the five CortexBench Meta-World tasks,
# full-horizon demos (25 per task), each followed by the proprio-only control (blind + mlp) on the same schedule.
source "$(dirname "$0")/common.sh"
for t in drawer-open bin-picking assembly button-press-topdown hammer; do
  if [ $t = drawer-open ]; then SCHED="bc.epochs=30 bc.eval_every=15"; else SCHED="bc.epochs=10 bc.eval_every=10"; fi
  run encoder=efficientnet-lite0 head=conv task=metaworld/$t demos=data/demos_full/metaworld/$t.hdf5 $SCHED
  run encoder=blind head=mlp task=metaworld/$t demos=data/demos_full/metaworld/$t.hdf5 $SCHED
done
echo "=== all done $(date +%T)"
