#!/usr/bin/env bash
# Run (or resume) the reference study on the 2-core machine as two lanes, one core each:
#   lane 0: part 1 (Meta-World) pieces, part 3's graded encoders (no distillation needed), part 1's extra seeds,
#           then it joins lane 1
#   lane 1: part 1 pieces, part 3's teacher-ablation students (distilled here) and their cells
# then both lanes run part 2 (DMC and Adroit) side by side, and the reports follow. Two lanes over one grid never
# do one job twice: a student or cell the other lane is working on is "busy" and left to it (its cells wait for
# the next run of that sweep, which each lane makes once more). Every step resumes: finished cells are
# skipped, killed cells continue from last.pt, killed distillations from their last checkpoint; demos and caches
# are rebuilt when missing (data/ is not committed). The bundled student theia-offline and the graded exports come
# from scripts/theia_offline.sh (data/students/theia-offline-v2; its teacher-target cache is reused by the
# ablation students, so the teachers are not run again).
#   bash results/reference/study/run_study.sh          # or: lane0 | lane1 | rest
# Publish (and commit) after cells land (`nohup bash scripts/publish_study_loop.sh &` does it every 10 minutes):
#   theia-eval publish sweep_dir=results/study/metaworld dest=results/reference/study/metaworld claims=offline-study-metaworld grid=config
#   theia-eval publish sweep_dir=results/study/entropy dest=results/reference/study/entropy grid=config
#   theia-eval publish sweep_dir=results/study/dmc-adroit dest=results/reference/study/dmc-adroit grid=config
set -euo pipefail
cd "$(dirname "$0")/../../.."
TE=.venv/bin/theia-eval
export OMP_NUM_THREADS=1
mkdir -p results/study/metaworld results/study/entropy results/study/dmc-adroit

piece() {  # piece CORE ENCODER HEAD: one encoder x head of part 1 on one core
  taskset -c "$1" nice -n 5 $TE sweep sweep=offline-study-metaworld out_dir=results/study/metaworld threads=1 \
    "sweep.encoders=[{name:$2,heads:[$3]}]" "sweep.extra_seeds=[]" >> "results/study/metaworld/sweep-$2-$3.log" 2>&1
}
part3() {  # part3 CORE NAME OVERRIDE: one half of part 3 (issue 14) on one core, reusing part 1's cells via its store
  taskset -c "$1" nice -n 5 $TE sweep sweep=offline-study-entropy out_dir=results/study/entropy \
    store=results/study/metaworld/results.sqlite threads=1 "$3" >> "results/study/entropy/sweep-$2.log" 2>&1
}
# the ablation students distill from the same frames as theia-offline-v2: reuse its teacher targets
# (the cache checks that its data fingerprint matches before use)
V2_TARGETS=data/theia-offline-v2/targets/63e37757af3409e2
if [ -d "$V2_TARGETS" ] && [ ! -e data/students/targets ]; then
  mkdir -p data/students && ln -s "../../$V2_TARGETS" data/students/targets
fi
part2() {  # part2 CORE: part 2 (issue 13) on one core; the other lane trains the cells this one finds busy
  taskset -c "$1" nice -n 5 $TE sweep sweep=offline-study-dmc-adroit out_dir=results/study/dmc-adroit threads=1 \
    >> "results/study/dmc-adroit/sweep-lane$1.log" 2>&1
}
part1() {  # part1 CORE: the whole part-1 grid on one core (what is finished is skipped)
  taskset -c "$1" nice -n 5 $TE sweep sweep=offline-study-metaworld out_dir=results/study/metaworld threads=1 \
    >> "results/study/metaworld/sweep-lane$1.log" 2>&1
}
lane0() {  # efficientnet-lite0 conv cells need no new embedding (token caches); its mlp ones a summary cache
  piece 0 blind mlp; piece 0 efficientnet-lite0 conv; piece 0 efficientnet-lite0 mlp; piece 0 pixels conv
  part3 0 graded "sweep.students=[]"
  part1 0  # part 1's extra seeds (extra_seeds in its config: the seed-100 cells are done and skipped)
  part3 0 ablation "sweep.encoders=[]"; part3 0 ablation "sweep.encoders=[]"
  part2 0; part2 0
}
lane1() {  # a cell one lane trains, the other skips ("busy")
  piece 1 theia-offline mlp; piece 1 theia-offline conv; piece 1 pixels conv
  part3 1 ablation "sweep.encoders=[]"; part3 1 ablation "sweep.encoders=[]"
  part2 1; part2 1
}
reports_and_part2() {  # after both lanes: whatever is left (nothing, normally), then the reports
  $TE publish sweep_dir=results/study/metaworld dest=results/reference/study/metaworld claims=offline-study-metaworld grid=config
  # part 3 reports (issue 14): the whole plan (both halves; every part-3 cell is in part 1's store), then the
  # entropy report and the teacher-ablation table
  $TE sweep sweep=offline-study-entropy out_dir=results/study/entropy store=results/study/metaworld/results.sqlite \
    threads=2 >> results/study/entropy/sweep-all.log 2>&1
  $TE publish sweep_dir=results/study/entropy dest=results/reference/study/entropy grid=config
  $TE entropy sweep_dir=results/study/entropy out_dir=results/reference/study/entropy/entropy
  $TE ablation sweep_dir=results/study/entropy out_dir=results/reference/study/entropy/ablation
  # part 2 (issue 13): DMC and Adroit
  nice -n 5 $TE sweep sweep=offline-study-dmc-adroit out_dir=results/study/dmc-adroit threads=2 \
    >> results/study/dmc-adroit/sweep-all.log 2>&1
  $TE publish sweep_dir=results/study/dmc-adroit dest=results/reference/study/dmc-adroit grid=config
}
case "${1:-all}" in  # one lane alone (e.g. on two machines sharing the folder), or the rest after both lanes
  all) lane0 & l0=$!; lane1 & l1=$!; wait $l0 $l1; reports_and_part2 ;;
  lane0) lane0 ;;
  lane1) lane1 ;;
  rest) reports_and_part2 ;;
  *) echo "usage: bash $0 [all|lane0|lane1|rest]" >&2; exit 2 ;;
esac
