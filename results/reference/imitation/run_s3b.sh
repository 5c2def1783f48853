#!/bin/bash
# Issue 4, third session: extend button-press-topdown and assembly from 20 to 30 epochs (resume: bit-identical
# to an uninterrupted 30-epoch run) and evaluate on the protocol's 25 episodes. One CPU job at a time.
cd /work/main
OUT=results/issue4b/runs
COMMON="seed=100 out_dir=$OUT threads=2 bc.precision=bf16 bc.progress=false eval.progress=false eval.num_envs=2"
run() { echo "=== $(date +%T) train $*"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval train $COMMON "$@" 2>&1 | grep -v "it/s\]" ; }
D=data/demos_full/metaworld
for t in button-press-topdown assembly; do
  run encoder=efficientnet-lite0 head=conv task=metaworld/$t demos=$D/$t.hdf5 bc.epochs=30 bc.eval_every=30
done
echo "=== all done $(date +%T)"
