#!/bin/bash
# Issue 4, third session: extend button-press-topdown and assembly from 20 to 30 epochs (resume: bit-identical
# to an uninterrupted 30-epoch run) and evaluate on the protocol's 25 episodes. One CPU job at a time.
source "$(dirname "$0")/common.sh"
for t in button-press-topdown assembly; do
  run encoder=efficientnet-lite0 head=conv task=metaworld/$t demos=$D/$t.hdf5 bc.epochs=30 bc.eval_every=30
done
echo "=== all done $(date +%T)"
