#!/usr/bin/env bash
# Run (or resume) the reference study on the 2-core machine: part 1 (Meta-World) as two lanes, one core each,
# then part 3 (entropy and the teacher ablation, reusing part 1's cells through its store), then part 2
# (DMC and Adroit). Every step resumes: finished cells are skipped, killed cells continue from last.pt;
# demos and caches are rebuilt when missing (data/ is not committed). The bundled student theia-offline is
# re-created by scripts/theia_offline.sh (not needed to run this: it ships in the package).
#   bash results/reference/study/run_study.sh
# Publish (and commit) after cells land:
#   theia-eval publish sweep_dir=results/study/metaworld dest=results/reference/study/metaworld claims=offline-study-metaworld grid=config
set -euo pipefail
cd "$(dirname "$0")/../../.."
TE=.venv/bin/theia-eval
export OMP_NUM_THREADS=1
mkdir -p results/study/metaworld

piece() {  # piece CORE ENCODER HEAD: one encoder x head of part 1 on one core
  taskset -c "$1" nice -n 5 $TE sweep sweep=offline-study-metaworld out_dir=results/study/metaworld threads=1 \
    "sweep.encoders=[{name:$2,heads:[$3]}]" >> "results/study/metaworld/sweep-$2-$3.log" 2>&1
}
# part 1: the efficientnet-lite0 conv cells need no new embedding (token caches); the mlp ones a summary cache,
# computed in seconds from those token caches. Both lanes share one out_dir and store: each piece reads its own
# plans/plan-<hash>.json, and a cell being trained by one lane is skipped ("busy") by the other.
( piece 0 blind mlp; piece 0 efficientnet-lite0 conv; piece 0 efficientnet-lite0 mlp; piece 0 pixels conv ) &
lane0=$!
( piece 1 theia-offline mlp; piece 1 theia-offline conv; piece 1 pixels conv ) &  # a cell one lane trains, the other skips
lane1=$!
wait $lane0 $lane1
$TE publish sweep_dir=results/study/metaworld dest=results/reference/study/metaworld claims=offline-study-metaworld grid=config

# part 3 (issue 14): graded exports and the teacher ablation, reusing part 1's cells through its store
nice -n 5 $TE sweep sweep=offline-study-entropy out_dir=results/study/entropy \
  store=results/study/metaworld/results.sqlite threads=2
$TE ablation sweep_dir=results/study/entropy

# part 2 (issue 13): DMC and Adroit
nice -n 5 $TE sweep sweep=offline-study-dmc-adroit out_dir=results/study/dmc-adroit threads=2
