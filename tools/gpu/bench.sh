# Device call 1: environment check and the GPU speed figures (about 3 min). Leaves the per-seed rate in
# /tmp/gpu-rate for train.sh, which only finds it if it runs within the 30 s the machine stays warm.
set -u; LIMIT=${LIMIT:-220}; source tools/gpu/setup.sh
{ nvidia-smi -L; nproc; lscpu | grep -m1 'Model name'
  python3 -c "import jax, flax, optax, orbax.checkpoint, mujoco, ogbench, gymnasium; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'mujoco', mujoco.__version__)"
  python3 -c "from envs.vector import make_task_env; e = make_task_env('cube-single-play-singletask-task2-v0'); print('env ok', e.reset(seed=0)[0].shape)"
} 2>&1 | tee "$OUT/env.txt"
timeout 150 python3 -m tools.bench --quick --figures 6 --dims 37,5 --json "$OUT/bench6.json" 2>&1 | tee "$OUT/bench6.log" | grep -v '^\s*$'
python3 -c "
import json
r = {x['figure']: x for x in json.load(open('$OUT/bench6.json'))['rows']}
print(int(r['6c']['values']['updates/s'] / 8))" > /tmp/gpu-rate && echo "per-seed rate, 8 seeds vmapped: $(cat /tmp/gpu-rate) updates/s"
timeout $(( $(left) - 5 )) python3 -m tools.bench --quick --figures 1,2,3,4 --dims 37,5 --json "$OUT/bench14.json" 2>&1 | tee "$OUT/bench14.log" | grep -v '^\s*$'
echo "bench call done in $(( $(date +%s) - T0 )) s"
