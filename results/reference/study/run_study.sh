#!/usr/bin/env bash
# Run (or resume) the reference study on the 2-core machine: the bundled student's distillation on core 1, the
# Meta-World sweep on core 0, then the theia-offline cells once the retrained student is bundled, then part 3.
# Every step resumes: finished cells are skipped, killed cells continue from last.pt, the student from its last
# checkpoint; demos, caches and frame sets are rebuilt when missing (data/ is not committed).
#   bash results/reference/study/run_study.sh
# Publish (and commit) after cells land:
#   theia-eval publish sweep_dir=results/study/metaworld dest=results/reference/study/metaworld claims=offline-study-metaworld grid=config
set -euo pipefail
cd "$(dirname "$0")/../../.."
TE=.venv/bin/theia-eval
export OMP_NUM_THREADS=1
mkdir -p results/study
publish() { $TE publish sweep_dir=results/study/$1 dest=results/reference/study/$1 claims=offline-study-metaworld grid=config; }

# 1. the student (scripts/theia_offline.sh resumes and bundles theia-offline when it ends), in the background
(taskset -c 1 nice -n 5 scripts/theia_offline.sh > results/study/student.log 2>&1) &
student=$!

# 2. the Meta-World cells that do not need the new student
taskset -c 0 nice -n 5 $TE sweep sweep=offline-study-metaworld out_dir=results/study/metaworld threads=1 \
  'sweep.encoders=[{name:blind,heads:[mlp]},{name:pixels,heads:[conv]},{name:efficientnet-lite0,heads:[conv,mlp]}]'
publish metaworld

# 3. the whole grid once the student is bundled (its cells are keyed by the new weights' hash)
wait $student
nice -n 5 $TE sweep sweep=offline-study-metaworld out_dir=results/study/metaworld threads=2
publish metaworld

# 4. part 3 (issue 14): graded exports and the teacher ablation, reusing part 1's cells through its store
nice -n 5 $TE sweep sweep=offline-study-entropy out_dir=results/study/entropy \
  store=results/study/metaworld/results.sqlite threads=2
