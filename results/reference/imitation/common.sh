# Shared by the run_*.sh scripts here (source it): repo root, run directory, common train settings, helpers.
# Jobs run strictly one at a time (2-core VM); tqdm lines are dropped from the logs.
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."  # the repository root
OUT=results/issue4b/runs
D=data/demos_full/metaworld
COMMON="seed=100 out_dir=$OUT threads=2 bc.precision=bf16 bc.progress=false eval.progress=false eval.num_envs=2"
run() { echo "=== $(date +%T) train $*"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval train $COMMON "$@" 2>&1 | grep -v "it/s\]" ; }
embed() { echo "=== $(date +%T) embed $1"; /usr/bin/time -f "wall %e s" .venv/bin/theia-eval embed encoder=efficientnet-lite0 \
  demos=$D/$1.hdf5 kind=tokens 2>&1 | tr "\r" "\n" | tail -2; }
