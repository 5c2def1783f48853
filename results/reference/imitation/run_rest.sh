#!/bin/bash
# Issue 4, second part, strictly one CPU job at a time (2-core VM): embed then train each remaining task.
# efficientnet-lite0 + conv, full-horizon demos; bin-picking with the protocol's 25 evaluation episodes and the
# proprio-only control; the other tasks with fewer epochs/episodes (CPU budget; labelled in RESULTS.md).
source "$(dirname "$0")/common.sh"
while [ ! -f $OUT/metaworld_drawer-open/blind/mlp/seed100/metrics.json ]; do sleep 5; done
embed bin-picking
run encoder=efficientnet-lite0 head=conv task=metaworld/bin-picking demos=data/demos_full/metaworld/bin-picking.hdf5 bc.epochs=30 bc.eval_every=30
run encoder=blind head=mlp task=metaworld/bin-picking demos=data/demos_full/metaworld/bin-picking.hdf5 bc.epochs=30 bc.eval_every=30
embed button-press-topdown
run encoder=efficientnet-lite0 head=conv task=metaworld/button-press-topdown demos=data/demos_full/metaworld/button-press-topdown.hdf5 bc.epochs=20 bc.eval_every=20 eval.episodes=10
# (as run: the assembly embedding, paused earlier as process 8035, was resumed and awaited here)
embed assembly
run encoder=efficientnet-lite0 head=conv task=metaworld/assembly demos=data/demos_full/metaworld/assembly.hdf5 bc.epochs=20 bc.eval_every=20 eval.episodes=10
embed hammer
run encoder=efficientnet-lite0 head=conv task=metaworld/hammer demos=data/demos_full/metaworld/hammer.hdf5 bc.epochs=20 bc.eval_every=20 eval.episodes=10
echo "=== all done $(date +%T)"
