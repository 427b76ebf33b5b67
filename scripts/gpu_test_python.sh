#!/usr/bin/env bash
# On the GPU machine (no internet; CUDA, PyTorch, nanobind and pytest are there,
# diffusers is not): builds the Python module with the CUDA backend by plain
# CMake with the carried Debian packages (as scripts/gpu_build.sh does), then runs
# tests/python (the GPU tests included) and, with E2E=1, the Wan timing script.
#
# Carry diffusers and its one missing dependency as wheels (prepare them here):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 -d .whl \
#     diffusers==0.42.1 importlib_metadata==8.7.0
# (importlib_metadata 10.x needs lazy-importer, which the machine lacks; zipp is there.)
# and name `.whl` and `.carry` in the run's carry list.
# Usage: scripts/gpu_test_python.sh ; E2E=1 (and E2E_ARGS="--model wan-480p --blocks 12")
# for the end-to-end timing (scripts/e2e_timing.py; scripts/gpu_e2e.sh wraps it);
# TESTS="tests/python/test_x.py ..." runs only those, TESTS=none no tests.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu-py}
LOG=${OUT:-/tmp}
CARRY=$ROOT/.carry/root/usr
LIB=$CARRY/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$ROOT"/.whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi

# The module is a shared object: the carried libz.a is not position-independent,
# so link the machine's own libz.so.1 (libpng16.so needs it at run time anyway).
ZLIB=$(ldconfig -p 2>/dev/null | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
[ -n "$ZLIB" ] || ZLIB=$LIB/libz.a
# Link the shared libstdc++ explicitly. On the GPU image the toolchain links
# libstdc++ statically into the module (no libstdc++.so dev link), and a second,
# static libstdc++ next to the shared one PyTorch loads crashes at the first
# formatted number once torch is imported first (locale facets of two runtimes;
# found 2026-11-23 with cuda-gdb: SIGSEGV in std::ostream::operator<<).
STDCXX=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
cmake -S "$ROOT" -B "$BUILD" -G Ninja ${STDCXX:+-DCMAKE_MODULE_LINKER_FLAGS="-Wl,--no-as-needed $STDCXX"} -DCMAKE_BUILD_TYPE=Release -DMODDIT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${ARCHS:-90a}" \
  -DCMAKE_PREFIX_PATH="$CARRY" \
  -DCMAKE_CXX_FLAGS="-I$CARRY/include/eigen3" \
  -DPNG_LIBRARY="$LIB/libpng16.so" -DPNG_PNG_INCLUDE_DIR="$CARRY/include" \
  -DZLIB_LIBRARY="$ZLIB" -DZLIB_INCLUDE_DIR="$CARRY/include" \
  -DMODDIT_BUILD_PYTHON=ON -DMODDIT_BUILD_TESTS=OFF -DMODDIT_BUILD_CLI=OFF \
  -DPython_EXECUTABLE="$(command -v "$PY")" >"$LOG/py_configure.log" 2>&1 \
  || { tail -40 "$LOG/py_configure.log"; exit 1; }
ninja -C "$BUILD" -j"$(nproc)" _moddit >"$LOG/py_build.log" 2>&1 || { tail -40 "$LOG/py_build.log"; exit 1; }

# An importable package: the sources plus the built extension.
PKG=$BUILD/pkg
rm -rf "$PKG" && mkdir -p "$PKG" && cp -r "$ROOT/python/moddit" "$PKG/moddit"
cp "$BUILD"/python/_moddit*.so "$PKG/moddit/"
export PYTHONPATH=$PKG:${PYTHONPATH:-}
"$PY" -c 'import moddit, torch; print("moddit", moddit.__version__, "cuda", moddit.cuda_available(), "torch", torch.__version__)'

# TESTS: which tests (default all of tests/python), e.g. TESTS="tests/python/test_parallel_gpu.py".
rc=0
if [ "${TESTS:-}" != none ]; then
  echo "== pytest ${TESTS:-tests/python}"
  (cd "$ROOT" && "$PY" -m pytest -q -p no:cacheprovider -rs ${TESTS:-tests/python}) 2>&1 \
    | tee "$LOG/pytest_python.log" | tail -40
  rc=${PIPESTATUS[0]}
fi
if [ "${E2E:-0}" = 1 ]; then
  echo "== e2e timing: scripts/e2e_timing.py ${E2E_ARGS:-}"
  (cd "$ROOT" && "$PY" scripts/e2e_timing.py ${E2E_ARGS:-}) 2>&1 | tee "$LOG/e2e.log"
  e2e=${PIPESTATUS[0]}
  [ "$rc" = 0 ] && rc=$e2e
fi
exit "$rc"
