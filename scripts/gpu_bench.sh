#!/usr/bin/env bash
# On the GPU machine: build, then `moddit bench` and scripts/bench_gpu.py (moddit vs
# SDPA cuDNN/flash vs FlexAttention). Results (text and JSON) go to $OUT when set.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOG=${OUT:-/tmp}
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
bash "$ROOT/scripts/gpu_build.sh" "$BUILD" >"$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; exit 1; }
echo "== moddit bench ($(date -u +%FT%TZ))"
"$BUILD/cli/moddit" bench ${BENCH_ARGS:-} --json "$LOG/bench_cli.json" 2>&1 | tee "$LOG/bench_cli.txt"
echo "== bench_gpu.py ($(date -u +%FT%TZ))"
python3 "$ROOT/scripts/bench_gpu.py" --lib "$BUILD/src/cuda/libmoddit_capi.so" ${PY_ARGS:-} \
  --json "$LOG/bench_torch.json" 2>&1 | grep -v Warning | tee "$LOG/bench_torch.txt"
