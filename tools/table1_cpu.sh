#!/usr/bin/env bash
# Table 1 on a CPU: each row's QFQL and FQL runs with `--recipe cpu`, one after another, into RUNS
# (default ~/qfql-runs, outside the checkout, which survives between sessions more often). Rerun the
# same command after any interruption: finished runs are skipped and cut ones continue with --resume.
#
#   bash tools/table1_cpu.sh [RUNS] [TASK ...]     # default tasks: cube-double puzzle-3x3 scene
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-$HOME/qfql-runs}
shift || true
TASKS=${*:-cube-double puzzle-3x3 scene}
mkdir -p "$RUNS"
for task in $TASKS; do
  for agent in qfql fql; do
    out="$RUNS/$task-$agent"
    if [ -f "$out/summary.json" ]; then
      echo "== $task $agent: done ($out)"
    elif [ -f "$out/config.json" ]; then
      echo "== $task $agent: resuming $(date)"
      python -m harness.run --resume "$out" > "$out.log" 2>&1 || { echo "== $task $agent failed: see $out.log"; exit 1; }
    else
      echo "== $task $agent: starting $(date)"
      python -m harness.run --task "$task" --agent "$agent" --recipe cpu --out "$out" > "$out.log" 2>&1 ||
        { echo "== $task $agent failed: see $out.log"; exit 1; }
    fi
  done
done
echo "== all done $(date)"
