#!/usr/bin/env bash
# On the GPU machine: build, run the GPU tests against the CPU reference, then the
# same tests under compute-sanitizer memcheck. Logs go to $OUT when set.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOG=${OUT:-/tmp}
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
bash "$ROOT/scripts/gpu_build.sh" "$BUILD" >"$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; exit 1; }
grep -E "registers|spill" "$LOG/build.log" | head -20
FILTER='^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|actual|straddl|error'
echo "== test_gpu (default kernels: on Hopper the warp-specialised wgmma kernel)"
"$BUILD/tests/test_gpu" 2>&1 | tee "$LOG/test_gpu.log" | grep -E "$FILTER" | head -60
echo "== test_gpu (MODDIT_CUDA_KERNEL=sm80: the portable kernel)"
MODDIT_CUDA_KERNEL=sm80 "$BUILD/tests/test_gpu" 2>&1 | tee "$LOG/test_gpu_sm80.log" | grep -E "$FILTER" | head -30
if [ "${SANITIZE:-1}" = 1 ]; then
  compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/tests/test_gpu" >"$LOG/memcheck.log" 2>&1
  echo "memcheck exit: $?"; grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$LOG/memcheck.log" | head -20
fi
