#!/usr/bin/env bash
# One GPU call of the end-to-end benchmark (scripts/e2e_timing.py): builds the
# Python module with the CUDA backend (scripts/gpu_test_python.sh; incremental, so
# a warm machine that kept build-gpu-py/ rebuilds nothing), then runs the timing
# with --budget set to what is left of BUDGET seconds (default 560: a 600 s call,
# less the time to send the results back), so runs that would not finish are
# skipped, with a note, instead of being killed. Results: $OUT/e2e_<model>_<compile>.json
# and .md (written after every run), $OUT/e2e.log.
#
# Usage (the `run` tool, carry [".whl", ".carry"], timeout_s 600):
#   bash scripts/gpu_e2e.sh --model wan-480p --blocks 12
#   bash scripts/gpu_e2e.sh --model wan-480p --blocks 12 --compile on
#   TESTS=tests/python/test_gpu_compile.py bash scripts/gpu_e2e.sh ...   # those tests first
# Any scripts/e2e_timing.py option passes through (--modes, --best-warmup, ...).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-/tmp/e2e-out}
BUDGET=${BUDGET:-560}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
T0=$(date +%s)

# The carried Debian headers and libraries travel packed (.carry/root.tar.xz).
if [ ! -d .carry/root ] && [ -f .carry/root.tar.xz ]; then
  mkdir -p .carry && tar xJf .carry/root.tar.xz -C .carry || exit 1
fi
echo "== build the module (tests: ${TESTS:-none})"
mkdir -p /tmp/e2e-build
OUT=/tmp/e2e-build TESTS=${TESTS:-none} E2E=0 bash scripts/gpu_test_python.sh 2>&1 \
  | tail -45 | tee "$OUT/build.log"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "gpu_e2e: build or tests failed"; exit 1; }
export LD_LIBRARY_PATH=$ROOT/.carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONPATH=/tmp/site:${BUILD:-$ROOT/build-gpu-py}/pkg:${PYTHONPATH:-}

left=$(( BUDGET - ($(date +%s) - T0) ))
extra=()
case " $* " in *" --budget "*) ;; *) extra+=(--budget "$left") ;; esac
case " $* " in
  *" --out "*) ;;
  *) model=wan-480p; compile=off; prev=
     for a in "$@"; do
       [ "$prev" = --model ] && model=$a
       [ "$prev" = --compile ] && compile=$a
       prev=$a
     done
     extra+=(--out "$OUT/e2e_${model}_${compile}.json") ;;
esac
echo "== scripts/e2e_timing.py $* ${extra[*]} (${left} s left of ${BUDGET})"
# The hard stop leaves the results of the finished runs (written after each).
timeout $(( left + 30 )) "$PY" scripts/e2e_timing.py "$@" "${extra[@]}" 2>&1 | tee "$OUT/e2e.log"
rc=${PIPESTATUS[0]}
echo "== exit $rc after $(( $(date +%s) - T0 )) s"
exit "$rc"
