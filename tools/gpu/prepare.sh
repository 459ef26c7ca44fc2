# Run HERE (the CPU machine) before a lent-GPU session: packs what the GPU image lacks so the device
# scripts need no network. The GPU image has jax (CUDA), flax, optax, orbax and numpy, but not MuJoCo,
# gymnasium or OGBench; the device copies the working tree (64 MiB at most), so dm_control is
# carried without its suite and locomotion assets (OGBench only needs dm_control.mjcf).
# Usage: [DATASET_EPISODES=N] bash tools/gpu/prepare.sh [DATASET ...]   (default: cube-single-play-v0, from ~/.ogbench/data)
set -eu
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
mkdir -p .whl .gpu/site .gpu/data
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
for name in mujoco mujoco-core gymnasium farama-notifications ogbench glfw pyopengl dm-env dm-tree; do
  version=$(python -m pip show "$name" | awk '/^Version:/{print $2}')
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl "$name==$version"
done
rm -rf .gpu/site/dm_control
cp -r "$(python -c 'import dm_control, os; print(os.path.dirname(dm_control.__file__))')" .gpu/site/
(cd .gpu/site/dm_control && rm -rf locomotion suite blender manipulation composer entities \
  && find . -name __pycache__ -prune -exec rm -rf {} + && find . -name '*_test.py' -delete)
# DATASET_EPISODES=N carries only the first N train (and N // 10 val) episodes, without qvel, compressed: a full
# locomotion dataset (1000 episodes, ≈ 320 MB compressed) is far over what a device call carries.
for dataset in "${@:-cube-single-play-v0}"; do
  if [ -z "${DATASET_EPISODES:-}" ]; then cp ~/.ogbench/data/"$dataset"{,-val}.{npz,card.json} .gpu/data/; continue; fi
  python - "$dataset" "$DATASET_EPISODES" <<'PY'
import json, os, sys
import numpy as np
name, episodes = sys.argv[1], int(sys.argv[2])
for suffix, n in (('', episodes), ('-val', max(1, episodes // 10))):
    source = os.path.expanduser(f'~/.ogbench/data/{name}{suffix}')
    card = json.load(open(f'{source}.card.json'))
    with np.load(f'{source}.npz') as full:
        ends = np.flatnonzero(full['terminals'])
        if n > len(ends):
            sys.exit(f'error: {name}{suffix} has {len(ends)} episodes, fewer than the {n} asked for; lower DATASET_EPISODES')
        rows = int(ends[n - 1]) + 1
        arrays = {k: full[k][:rows] for k in full.files if k != 'qvel'}
    np.savez_compressed(f'.gpu/data/{name}{suffix}.npz', **arrays)
    card.update(episodes=n, rows=rows, transitions=rows - n, sha256=None,
                subset=f'first {n} of {card["episodes"]} episodes, qvel dropped (tools/gpu/prepare.sh)')
    json.dump(card, open(f'.gpu/data/{name}{suffix}.card.json', 'w'), indent=2)
PY
done
du -sh .whl .gpu
echo "carry [\".whl\", \".gpu\"]; the device commands: bash tools/gpu/bench.sh, then bash tools/gpu/train.sh"
