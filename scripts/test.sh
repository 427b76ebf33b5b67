#!/usr/bin/env bash
# The test command of the README (and of CI): installs the build dependencies,
# builds moddit (the CUDA backend too when nvcc is found: compile-only without a
# GPU), runs every test, then builds and runs the tests again under
# AddressSanitizer + UBSan. GPU tests skip themselves when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${MODDIT_JOBS:-$(nproc)}"
step() { echo "== $* ($SECONDS s so far)"; }

bash scripts/bootstrap.sh

step "build (Release, CUDA ${MODDIT_CUDA:-AUTO})"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMODDIT_CUDA="${MODDIT_CUDA:-AUTO}" >/dev/null
cmake --build build -j "$jobs"
step "tests"
ctest --test-dir build --output-on-failure -j "$jobs"

step "tests under AddressSanitizer + UBSan (CPU code)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMODDIT_SANITIZE=ON -DMODDIT_CUDA=OFF \
  -DMODDIT_NATIVE=OFF >/dev/null
cmake --build build-asan -j "$jobs"
# Tests named *Slow* (over ~5 s in Release, or over ~30 s under ASan: the
# numeric evaluations on larger grids, whose code the fast tests cover) run in the
# Release pass only.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E 'Slow|slow'

if [ -f pyproject.toml ] && [ "${MODDIT_SKIP_PYTHON:-0}" != 1 ]; then
  step "Python module and adapters"
  bash scripts/test_python.sh
fi
echo "== all tests passed ($SECONDS s)"
