#!/bin/bash
# Issue 4, third session: hammer (efficientnet-lite0 + conv, 30 epochs, 25 episodes) and proprio-only controls
# on the tasks that lacked one. Strictly one CPU job at a time (2-core VM).
cd /work/main
OUT=results/issue4b/runs
COMMON="seed=100 out_dir=$OUT threads=2 bc.precision=bf16 bc.progress=false eval.progress=false eval.num_envs=2"
run() { echo "=== $(date +%T) train $*"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval train $COMMON "$@" 2>&1 | grep -v "it/s\]" ; }
embed() { echo "=== $(date +%T) embed $1"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval embed encoder=efficientnet-lite0 \
  demos=data/demos_full/metaworld/$1.hdf5 kind=tokens 2>&1 | tr "\r" "\n" | tail -2; }
D=data/demos_full/metaworld
embed hammer
run encoder=efficientnet-lite0 head=conv task=metaworld/hammer demos=$D/hammer.hdf5 bc.epochs=30 bc.eval_every=30
for t in hammer button-press-topdown assembly; do
  run encoder=blind head=mlp task=metaworld/$t demos=$D/$t.hdf5 bc.epochs=30 bc.eval_every=30
done
echo "=== all done $(date +%T)"
