#!/usr/bin/env bash
# One FP8 campaign on the GPU machine (Hopper): builds test_gpu (scripts/gpu_build.sh)
# and the Python module (scripts/gpu_test_python.sh, which then runs the FP8 and
# GPU pytest files) at once, runs the FP8 GPU tests (also under compute-sanitizer
# memcheck) and the rest of test_gpu, then, alone on the GPU, scripts/bench_fp8.py.
# Needs .carry (gpu_build.sh) and .whl with sageattention 1.0.6 (gpu_test_python.sh).
# Logs: $OUT/{timeline.txt,cpp.log,test_gpu_fp8.log,py.log,bench_fp8.txt,bench_fp8.json,ncu.txt,clocks.txt}
# (memcheck's summary goes to cpp.log).
# BENCH_ARGS are passed to bench_fp8.py, which gets what is left of BUDGET (default 465 s);
# BENCH=0 skips it, TESTS=0 the C++ tests. PROFILE=1 then runs Nsight Compute on the
# attention kernels (PROFILE_SHAPE, default wan, dense and random 0.15) and on the
# quantization kernel, while BUDGET allows: $OUT/ncu.txt. The SM clock and power
# are sampled during the bench: $OUT/clocks.txt.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/gpu_fp8}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
T0=$(date +%s)
mark() { echo "$(date -u +%FT%TZ) +$(( $(date +%s) - T0 ))s $*" | tee -a "$OUT/timeline.txt"; }
mark "start on $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader)"

mkdir -p /tmp/pylogs
( OUT=/tmp/pylogs BUILD=/tmp/build-gpu-py TESTS="tests/python/test_fp8.py tests/python/test_gpu.py" \
    timeout 420 bash scripts/gpu_test_python.sh >/tmp/pylogs/run.log 2>&1
  echo "gpu_test_python.sh exit: $?" >>/tmp/pylogs/run.log ) &
PY_PID=$!
TARGETS=test_gpu bash scripts/gpu_build.sh /tmp/build-gpu >/tmp/cpp_build.log 2>&1
rc=$?
{ echo "== C++ build exit $rc"; grep -E "error|spill" /tmp/cpp_build.log | head -20; tail -3 /tmp/cpp_build.log; } >"$OUT/cpp.log"
mark "C++ build exit $rc"
FILTER='^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|actual|fp8 case|error'
if [ $rc = 0 ] && [ "${TESTS:-1}" = 1 ]; then
  timeout 150 /tmp/build-gpu/tests/test_gpu --gtest_filter='*Fp8*' >"$OUT/test_gpu_fp8.log" 2>&1
  echo "== test_gpu FP8 exit $?" >>"$OUT/cpp.log"
  grep -E "$FILTER" "$OUT/test_gpu_fp8.log" | head -60 >>"$OUT/cpp.log"
  mark "test_gpu FP8 done"
  timeout 150 /tmp/build-gpu/tests/test_gpu --gtest_filter='-*Fp8*' >/tmp/test_gpu.log 2>&1
  echo "== test_gpu (the rest) exit $?" >>"$OUT/cpp.log"
  grep -E '^\[  (FAILED|PASSED) |Failure' /tmp/test_gpu.log | head -20 >>"$OUT/cpp.log"
  mark "test_gpu done"
  timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 /tmp/build-gpu/tests/test_gpu \
    --gtest_filter='Fp8Fixture.DenseDim128PartialBlock:Fp8Fixture.TextAfterPaddedHeadSubsetF16Dim64:Fp8Fixture.TextBeforePaddedSparseBatch2' \
    >/tmp/memcheck.log 2>&1
  echo "== memcheck (3 FP8 tests) exit $?" >>"$OUT/cpp.log"
  grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" /tmp/memcheck.log | head -10 >>"$OUT/cpp.log"
  mark "memcheck done"
fi
wait "$PY_PID"
{ tail -5 /tmp/pylogs/py_build.log 2>/dev/null; cat /tmp/pylogs/run.log; echo "== pytest log";
  cat /tmp/pylogs/pytest_python.log 2>/dev/null; } >"$OUT/py.log"
mark "python tests done"
if [ "${BENCH:-1}" = 1 ] && [ -f /tmp/build-gpu-py/pkg/moddit/__init__.py ]; then
  export PYTHONPATH=/tmp/site:/tmp/build-gpu-py/pkg:${PYTHONPATH:-}
  left=$(( ${BUDGET:-465} - ($(date +%s) - T0) ))  # the device call's limit, less a margin
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active \
    --format=csv,noheader -lms 500 >/tmp/clocks.txt 2>&1 &
  SMI=$!
  timeout "$left" python3 scripts/bench_fp8.py ${BENCH_ARGS:-} --json "$OUT/bench_fp8.json" \
    2>&1 | grep -v Warning >"$OUT/bench_fp8.txt"
  mark "bench exit ${PIPESTATUS[0]}"
  kill $SMI 2>/dev/null
  awk -F', ' 'NR % 4 == 1' /tmp/clocks.txt >"$OUT/clocks.txt"  # every 2 s
fi
if [ "${PROFILE:-0}" = 1 ] && [ -f /tmp/build-gpu-py/pkg/moddit/__init__.py ]; then
  export PYTHONPATH=/tmp/site:/tmp/build-gpu-py/pkg:${PYTHONPATH:-}
  KEEP='gpu__time_duration.sum|sm__cycles_elapsed.avg.per_second|pipe_.*(pct|active)|warps_issue_stalled_.*per_issue_active|smsp__issue_active.avg.pct|smsp__inst_executed.sum |dram__throughput.avg.pct|lts__t_sector_hit_rate.pct'
  # Launch order per config: exact; fp8 (quantize, forward); exact+map (forward, map);
  # fp8+map (quantize, forward, map): the 7 attention kernels of wan dense, then
  # the sparse config's exact and fp8 forwards (twice each).
  left=$(( ${BUDGET:-465} - ($(date +%s) - T0) - 10 ))
  if [ $left -gt 30 ]; then
    timeout $left ncu --clock-control none --kernel-name-base function --kernel-name attention_kernel_sm90 -c 12 \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --page raw \
      python3 scripts/bench_fp8.py --shapes ${PROFILE_SHAPE:-wan} --densities 1,0.15 --layouts random --calls-only \
      --no-flex --no-sage >/tmp/ncu_k.txt 2>&1
    { echo "== ncu attention kernels"; grep -E "attention_kernel_sm90|$KEEP" /tmp/ncu_k.txt | awk '{$1=$1; print}'; } >>"$OUT/ncu.txt"
    mark "ncu kernels done"
  fi
  left=$(( ${BUDGET:-465} - ($(date +%s) - T0) - 10 ))
  if [ $left -gt 30 ]; then
    timeout $left ncu --clock-control none --kernel-name-base demangled --kernel-name "regex:quantize_fp8" -c 2 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --page raw \
      python3 scripts/bench_fp8.py --shapes wan,cog --densities 1 --calls-only --no-flex --no-sage >/tmp/ncu_q.txt 2>&1
    { echo "== ncu quantize"; grep -E "quantize_fp8|gpu__time_duration.sum|dram__throughput.avg.pct|dram__bytes_read.sum |dram__bytes_write.sum |lts__t_sector_hit_rate.pct" \
      /tmp/ncu_q.txt | awk '{$1=$1; print}'; } >>"$OUT/ncu.txt"
    mark "ncu quantize done"
  fi
fi
