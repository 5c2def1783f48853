#!/usr/bin/env bash
# Study helper: publish and commit finished study cells as they land (parts 1 and 3 share the
# Meta-World store; part 2 has its own), checked every 10 minutes, and refresh part 3's teacher-ablation table and
# entropy report as students and cells land. Runs beside `bash results/reference/study/run_study.sh`:
#   nohup bash scripts/publish_study_loop.sh >> results/study/autopublish.log 2>&1 &
# Each commit names only the folder it publishes (git commit -- PATH), so work in progress elsewhere stays out.
cd "$(dirname "$0")/.."
declare -A last
count() { [ -f "$1" ] || { echo 0; return; }; .venv/bin/python -c "
import sqlite3; print(sqlite3.connect('$1', timeout=60).execute('select count(*) from evaluations').fetchone()[0])"; }
pub() {  # pub NAME STORE SWEEP_DIR DEST [claims=...]
  local name=$1 store=$2 sweep=$3 dest=$4; shift 4
  local n; n=$(count "$store")
  [ "$n" = "0" ] && return
  [ "$n" = "${last[$name]:-}" ] && return
  if nice -n 10 .venv/bin/theia-eval publish sweep_dir="$sweep" dest="$dest" grid=config "$@" > "results/study/autopublish-$name.last" 2>&1; then
    git add "$dest"
    git commit -q -m "Study ${name/part/part }: publish finished cells ($n evaluation rows in its store)" -- "$dest" && echo "$(date) $name committed $n"
    last[$name]=$n
  else
    echo "$(date) $name publish failed"; tail -n 5 "results/study/autopublish-$name.last"
  fi
}
while true; do
  pub part1 results/study/metaworld/results.sqlite results/study/metaworld results/reference/study/metaworld claims=offline-study-metaworld
  pub part3 results/study/metaworld/results.sqlite results/study/entropy results/reference/study/entropy
  # the teacher-ablation table so far (needs the whole part-3 plan in plan.json: a dry run writes it)
  sig="$(ls -d data/students/abl-*/export 2>/dev/null | wc -l)-${last[part3]:-}"
  if [ "$sig" != "${abl_done:-}" ]; then
    nice -n 10 .venv/bin/theia-eval sweep sweep=offline-study-entropy out_dir=results/study/entropy store=results/study/metaworld/results.sqlite --dry-run > /dev/null 2>&1 \
      && nice -n 10 .venv/bin/theia-eval ablation sweep_dir=results/study/entropy out_dir=results/reference/study/entropy/ablation > results/study/autopublish-ablation.last 2>&1 \
      && OMP_NUM_THREADS=1 nice -n 10 .venv/bin/theia-eval entropy sweep_dir=results/study/entropy out_dir=results/reference/study/entropy/entropy > results/study/autopublish-entropy.last 2>&1 \
      && git add results/reference/study/entropy/ablation results/reference/study/entropy/entropy \
      && { git commit -q -m "Study part 3: the teacher-ablation table and the entropy report so far" -- results/reference/study/entropy/ablation results/reference/study/entropy/entropy; echo "$(date) ablation table and entropy report refreshed"; }
    abl_done=$sig
  fi
  pub part2 results/study/dmc-adroit/results.sqlite results/study/dmc-adroit results/reference/study/dmc-adroit
  sleep 600
done
