# Device call 2: a paper-preset run, 8 seeds vmapped, as many updates as fit before its β sweep, which
# is sized from the evaluation rate seen on an H200 (≈ 12 episodes/s in 50-env waves on 16 cores).
# Knobs: TASK, SEEDS, BETAS, EPISODES (selection and held-out each), STEPS (else from /tmp/gpu-rate,
# which bench.sh writes), LIMIT (seconds for the whole call).
set -u; LIMIT=${LIMIT:-560}; source tools/gpu/setup.sh
TASK=${TASK:-cube-single}; SEEDS=${SEEDS:-11-18}; BETAS=${BETAS:-0,0.03,0.1,0.3}; EPISODES=${EPISODES:-50}
RATE=$(cat /tmp/gpu-rate 2>/dev/null); RATE=${RATE:-620}
NUM_SEEDS=$(python3 -c "a, _, b = '$SEEDS'.partition('-'); print(int(b) - int(a) + 1 if b else len('$SEEDS'.split(',')))")
NUM_BETAS=$(python3 -c "print(len('$BETAS'.split(',')))")
EVAL_S=$(( NUM_SEEDS * NUM_BETAS * 2 * EPISODES / 12 + 30 ))
TRAIN_S=$(( $(left) - EVAL_S - 90 ))
STEPS=${STEPS:-$(python3 -c "print(max(10000, min(1000000, int($RATE * $TRAIN_S * 0.9) // 10000 * 10000)))")}
echo "== $TASK, paper preset, seeds $SEEDS, $STEPS updates at ~$RATE/s per seed; β sweep $BETAS budgeted ${EVAL_S} s"
RUN=/tmp/gpurun; rm -rf $RUN
timeout $(( $(left) - 15 )) python3 -m harness.run --task "$TASK" --preset paper --steps "$STEPS" --seeds "$SEEDS" \
  --betas "$BETAS" --eval-every 0 --eval-episodes "$EPISODES" --selection-episodes "$EPISODES" --eval-envs 50 \
  --video-episodes 0 --checkpoint-every 50000 --data-dir .gpu/data --out "$RUN" > "$OUT/run.log" 2>&1
echo "harness exit $? after $(( $(date +%s) - T0 )) s"
python3 - "$RUN/eval.jsonl" <<'PY'
import collections, json, sys
from harness.report import summarize_beta
groups = collections.defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    groups[row['phase'], row['beta']].append(row)
for (phase, beta), rows in sorted(groups.items()):
    s = summarize_beta(beta, rows)
    print(f"{phase:9} β={beta:<5} episodes {len(rows):4}  IQM {s['iqm']:.3f} {s['iqm_ci95']}  mean {s['success_rate']:.3f}")
PY
tar --exclude=checkpoints -czf "$OUT/run.tgz" -C /tmp gpurun 2>/dev/null
echo "train call done in $(( $(date +%s) - T0 )) s"
