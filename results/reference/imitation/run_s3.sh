#!/bin/bash
# Issue 4, third session: hammer (efficientnet-lite0 + conv, 30 epochs, 25 episodes) and proprio-only controls
# on the tasks that lacked one. Strictly one CPU job at a time (2-core VM).
source "$(dirname "$0")/common.sh"
embed hammer
run encoder=efficientnet-lite0 head=conv task=metaworld/hammer demos=$D/hammer.hdf5 bc.epochs=30 bc.eval_every=30
for t in hammer button-press-topdown assembly; do
  run encoder=blind head=mlp task=metaworld/$t demos=$D/$t.hdf5 bc.epochs=30 bc.eval_every=30
done
echo "=== all done $(date +%T)"
