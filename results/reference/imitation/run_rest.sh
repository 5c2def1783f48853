#!/bin/bash
# Issue 4, second part, strictly one CPU job at a time (2-core VM): embed then train each remaining task.
# efficientnet-lite0 + conv, full-horizon demos; bin-picking with the protocol's 25 evaluation episodes and the
# proprio-only control; the other tasks with fewer epochs/episodes (CPU budget; labelled in RESULTS.md).
cd /work/main
OUT=results/issue4b/runs
COMMON="seed=100 out_dir=$OUT threads=2 bc.precision=bf16 bc.progress=false eval.progress=false eval.num_envs=2"
run() { echo "=== $(date +%T) train $*"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval train $COMMON "$@" 2>&1 | grep -v "it/s\]" ; }
embed() { echo "=== $(date +%T) embed $1"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval embed encoder=efficientnet-lite0 \
  demos=data/demos_full/metaworld/$1.hdf5 kind=tokens 2>&1 | tr "\r" "\n" | tail -2; }
while [ ! -f $OUT/metaworld_drawer-open/blind/mlp/seed100/metrics.json ]; do sleep 5; done
embed bin-picking
run encoder=efficientnet-lite0 head=conv task=metaworld/bin-picking demos=data/demos_full/metaworld/bin-picking.hdf5 bc.epochs=30 bc.eval_every=30
run encoder=blind head=mlp task=metaworld/bin-picking demos=data/demos_full/metaworld/bin-picking.hdf5 bc.epochs=30 bc.eval_every=30
embed button-press-topdown
run encoder=efficientnet-lite0 head=conv task=metaworld/button-press-topdown demos=data/demos_full/metaworld/button-press-topdown.hdf5 bc.epochs=20 bc.eval_every=20 eval.episodes=10
echo "=== $(date +%T) finish the assembly embedding"; kill -CONT 8035; while kill -0 8035 2>/dev/null; do sleep 5; done
run encoder=efficientnet-lite0 head=conv task=metaworld/assembly demos=data/demos_full/metaworld/assembly.hdf5 bc.epochs=20 bc.eval_every=20 eval.episodes=10
embed hammer
run encoder=efficientnet-lite0 head=conv task=metaworld/hammer demos=data/demos_full/metaworld/hammer.hdf5 bc.epochs=20 bc.eval_every=20 eval.episodes=10
echo "=== all done $(date +%T)"
