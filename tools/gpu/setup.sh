# Sourced by tools/gpu/bench.sh and train.sh on the lent GPU machine: installs what the image lacks (the
# wheels in .whl; dm_control comes as a slim folder in .gpu/site) and sets the environment both share.
T0=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -z "${SKIP_INSTALL:-}" ] && [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
# The image has no libEGL: find a MuJoCo GL backend that imports (rendering is not used here).
for gl in '' glfw osmesa disable; do
  if [ -n "$gl" ]; then export MUJOCO_GL=$gl PYOPENGL_PLATFORM=$gl; fi
  python3 -c "import mujoco" 2>/dev/null && break
done
echo "MUJOCO_GL='${MUJOCO_GL:-}'"
