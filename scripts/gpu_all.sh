#!/usr/bin/env bash
# One GPU campaign in one call (the lent machine is paid by the minute): builds
# the C++ targets and the Python module at once, runs test_gpu (and the stream
# test under compute-sanitizer memcheck) while pytest runs tests/python, then,
# alone on the GPU, `moddit bench --overhead-only` (MOD-DiT host work vs dense
# attention at wan, whole-model state) and a whole Wan 480p denoising run (dense
# against MOD-DiT, scripts/e2e_timing.py on E2E_BLOCKS blocks).
# Needs .carry (scripts/gpu_build.sh) and .whl (scripts/gpu_test_python.sh).
# Logs: $OUT/{cpp.log,test_gpu.log,bench.txt,py.log,e2e_wan.log,e2e_wan.json,e2e_wan.md,timeline.txt}
# (few files: the device tool returns at most 8). CPP=0 skips the C++ build, tests and bench.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/gpu_all}
mkdir -p "$OUT"
LIB=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
T0=$(date +%s)
mark() { echo "$(date -u +%FT%TZ) +$(( $(date +%s) - T0 ))s $*" | tee -a "$OUT/timeline.txt"; }

mark "start on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
# Python module build + pytest in the background (its own logs in /tmp/pylogs).
mkdir -p /tmp/pylogs
( OUT=/tmp/pylogs E2E=0 timeout 360 bash scripts/gpu_test_python.sh >/tmp/pylogs/run.log 2>&1
  echo "gpu_test_python.sh exit: $?" >>/tmp/pylogs/run.log ) &
PY_PID=$!

if [ "${CPP:-1}" = 1 ]; then
  bash scripts/gpu_build.sh build-gpu >/tmp/cpp_build.log 2>&1
  rc=$?
else
  rc=skipped  # CPP=0: Python tests and e2e only
  echo "C++ build and tests skipped (CPP=0)" >/tmp/cpp_build.log
fi
{ echo "== C++ build exit $rc"; tail -5 /tmp/cpp_build.log; } >"$OUT/cpp.log"
mark "C++ build exit $rc"
if [ $rc = 0 ]; then
  timeout 150 build-gpu/tests/test_gpu >"$OUT/test_gpu.log" 2>&1
  echo "== test_gpu exit $?" >>"$OUT/cpp.log"
  grep -E '^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is' "$OUT/test_gpu.log" | head -40 >>"$OUT/cpp.log"
  mark "test_gpu done"
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 build-gpu/tests/test_gpu \
    --gtest_filter='CudaStream.*:CudaSession.*:Fixture.SparseHndF16WithMap:Fixture.ZeroHeads' >/tmp/memcheck.log 2>&1
  echo "== memcheck (stream and session tests + 2) exit $?" >>"$OUT/cpp.log"
  grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" /tmp/memcheck.log | head -10 >>"$OUT/cpp.log"
  mark "memcheck done"
fi
wait "$PY_PID"
{ tail -3 /tmp/pylogs/py_configure.log 2>/dev/null; tail -5 /tmp/pylogs/py_build.log 2>/dev/null
  cat /tmp/pylogs/run.log; echo "== pytest log"; cat /tmp/pylogs/pytest_python.log 2>/dev/null; } >"$OUT/py.log"
mark "python tests done"
# A crashed pytest (a signal, no Python traceback): the native stack of the first
# crashing GPU test, where gdb is there.
if grep -q "Segmentation fault\|Fatal Python error" "$OUT/py.log" && command -v gdb >/dev/null; then
  ( export PYTHONPATH=/tmp/site:$ROOT/build-gpu-py/pkg:${PYTHONPATH:-}
    timeout 120 gdb -batch -ex run -ex bt -ex "info threads" --args python3 -m pytest -x -q \
      -p no:cacheprovider tests/python/test_gpu.py 2>&1 | tail -80 ) >>"$OUT/py.log"
  mark "gdb backtrace done"
fi

# Alone on the GPU from here.
if [ $rc = 0 ]; then
  timeout 60 build-gpu/cli/moddit bench --overhead-only --iters 5 >"$OUT/bench.txt" 2>&1
  echo "bench exit $?" >>"$OUT/bench.txt"
  mark "bench done"
fi
PY=python3
export PYTHONPATH=/tmp/site:$ROOT/build-gpu-py/pkg:${PYTHONPATH:-}
# The end-to-end check: a whole 50-step Wan 480p run, dense against MOD-DiT's
# paper schedule, on E2E_BLOCKS blocks (the full benchmark is scripts/gpu_e2e.sh).
timeout "${E2E_TIMEOUT:-240}" $PY scripts/e2e_timing.py --model wan-480p --blocks "${E2E_BLOCKS:-4}" \
  --modes dense,paper --budget "${E2E_TIMEOUT:-240}" --out "$OUT/e2e_wan.json" >"$OUT/e2e_wan.log" 2>&1
mark "e2e (wan-480p, ${E2E_BLOCKS:-4} blocks) exit $?"
