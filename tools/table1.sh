#!/usr/bin/env bash
# Table 1, row by row: each row's QFQL and FQL runs with `--recipe cpu` (3 seeds of the small preset, for a
# 2-core CPU) or `--recipe gpu` (the paper's budget: 8 seeds x 1M updates of the paper preset on the full
# data), one after another, into RUNS (default ~/qfql-runs, outside the checkout, which survives between
# sessions more often). Rerun the same command after any interruption: finished runs are skipped and cut
# ones continue with --resume. Each run prints its cost plan per stage before it starts (harness/costs.py).
#
#   bash tools/table1.sh cpu [RUNS] [TASK ...]     # default tasks: cube-double puzzle-3x3 scene
#   bash tools/table1.sh gpu [RUNS] [TASK ...]     # default tasks: all eight rows of the paper's Table 1
#   HORIZON=5 bash tools/table1.sh cpu [RUNS] [TASK ...]   # the same rows with action chunks (runs named *-h5)
set -u
cd "$(dirname "$0")/.."
RECIPE=${1:-}
case "$RECIPE" in
  cpu) DEFAULT_TASKS="cube-double puzzle-3x3 scene" ;;
  gpu) DEFAULT_TASKS="antmaze antsoccer cube-double scene puzzle-3x3 antmaze-umaze-diverse antmaze-medium-diverse antmaze-large-diverse" ;;
  *) echo "usage: bash tools/table1.sh cpu|gpu [RUNS] [TASK ...]" >&2; exit 2 ;;
esac
shift
RUNS=${1:-$HOME/qfql-runs}
shift || true
TASKS=${*:-$DEFAULT_TASKS}
HORIZON=${HORIZON:-1}
SUFFIX=""
[ "$HORIZON" = 1 ] || SUFFIX="-h$HORIZON"
[ "$RECIPE" = gpu ] && SUFFIX="$SUFFIX-gpu"
mkdir -p "$RUNS"
for task in $TASKS; do
  for agent in qfql fql; do
    out="$RUNS/$task-$agent$SUFFIX"
    if [ -f "$out/summary.json" ]; then
      echo "== $task $agent: done ($out)"
    elif [ -f "$out/config.json" ]; then
      echo "== $task $agent: resuming $(date)"
      python -m harness.run --resume "$out" >> "$out.log" 2>&1 || { echo "== $task $agent failed: see $out.log"; exit 1; }
    else
      echo "== $task $agent: starting $(date)"
      python -m harness.run --task "$task" --agent "$agent" --recipe "$RECIPE" --horizon "$HORIZON" --out "$out" > "$out.log" 2>&1 ||
        { echo "== $task $agent failed: see $out.log"; exit 1; }
    fi
    grep -m1 '^plan on' "$out.log" || true
  done
done
echo "== all done $(date)"
