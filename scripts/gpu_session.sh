#!/usr/bin/env bash
# The device tool's one prepared call: encoders for the evidence store first (scripts/gpu_store.py: trained
# and scored on the GPU, their new store files packed into $OUT/store_batches.tar), then the GPU check
# (scripts/gpu_check.sh) in the time left. At most 8 files under $OUT: gpu_store.json, gpu_store.log,
# store_batches.tar and gpu_check's five.
#
#   run(command="GPU_CHECK_COMMIT=<commit> scripts/gpu_session.sh", carry=[".whl", ".fmnist"], timeout_s=580)
#
# Environment: GPU_SESSION_S (seconds for both, default 540), GPU_STORE_S (the store part's budget, default
# 270), GPU_STORE_EXPERIMENT (default arch-size), GPU_STORE_PRESET (default cpu), MEMLIB_GPU_WORKERS
# (processes sharing the GPU, default 16); GPU_STORE_DIR (default results) and GPU_STORE_DEVICE (default
# cuda) to rehearse on a CPU into a copy of a store. Afterwards, here: tar xf store_batches.tar -C results &&
# memlib-evidence verify.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
OUT=${OUT:-$ROOT/runs/gpu_session}
mkdir -p "$OUT"
TOTAL=${GPU_SESSION_S:-540}
STORE_S=${GPU_STORE_S:-270}
T0=$(date +%s)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || PY=python
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu_site .whl/*.whl \
    && export PYTHONPATH=/tmp/gpu_site
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z ${MEMLIB_FASHION_MNIST_DIR:-} && ! -d /usr/share/datasets/fashion-mnist && -d $ROOT/.fmnist ]]; then
  export MEMLIB_FASHION_MNIST_DIR=$ROOT/.fmnist
fi
export MEMLIB_GPU_WORKERS=${MEMLIB_GPU_WORKERS:-16} MEMLIB_CACHE=${MEMLIB_CACHE:-/tmp/gpu_store_cache}
timeout $((STORE_S + 45)) "$PY" scripts/gpu_store.py "${GPU_STORE_EXPERIMENT:-arch-size}" \
  --preset "${GPU_STORE_PRESET:-cpu}" --store "${GPU_STORE_DIR:-results}" --device "${GPU_STORE_DEVICE:-cuda}" \
  --out "$OUT" --budget-s "$STORE_S" 2>&1 | tee "$OUT/gpu_store.log"
store_rc=${PIPESTATUS[0]}
echo "[gpu_session] store part: exit $store_rc after $(($(date +%s) - T0)) s"
left=$((TOTAL - ($(date +%s) - T0)))
if ((left > 60)); then
  GPU_CHECK_BUDGET_S=$left scripts/gpu_check.sh "$OUT"
  check_rc=$?
else
  echo "[gpu_session] no time left for scripts/gpu_check.sh ($left s)"
  check_rc=1
fi
echo "[gpu_session] store exit $store_rc, gpu_check exit $check_rc, $(($(date +%s) - T0)) s in all"
exit $((store_rc || check_rc))
