#!/usr/bin/env bash
# On the GPU machine: build the CLI and the Python module, then `moddit bench` and
# scripts/bench_gpu.py (moddit through the module vs SDPA cuDNN/flash vs
# FlexAttention). Both check their outputs and exit non-zero on a mismatch.
# Results (text and JSON) go to $OUT when set.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
LOG=${OUT:-/tmp}
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
bash "$ROOT/scripts/gpu_build.sh" "$BUILD" >"$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; exit 1; }
echo "== moddit bench ($(date -u +%FT%TZ))"
"$BUILD/cli/moddit" bench ${BENCH_ARGS:-} --json "$LOG/bench_cli.json" 2>&1 | tee "$LOG/bench_cli.txt"
rc=${PIPESTATUS[0]}
PYBUILD=${PYBUILD:-$ROOT/build-gpu-py}
OUT=$LOG BUILD=$PYBUILD TESTS=none bash "$ROOT/scripts/gpu_test_python.sh" >"$LOG/py_module.log" 2>&1 \
  || { tail -20 "$LOG/py_module.log"; exit 1; }
echo "== bench_gpu.py ($(date -u +%FT%TZ))"
PYTHONPATH=$PYBUILD/pkg:${PYTHONPATH:-} python3 "$ROOT/scripts/bench_gpu.py" ${PY_ARGS:-} \
  --json "$LOG/bench_torch.json" 2>&1 | grep -v Warning | tee "$LOG/bench_torch.txt"
py=${PIPESTATUS[0]}
[ "$rc" = 0 ] && rc=$py
exit "$rc"
