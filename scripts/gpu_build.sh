#!/usr/bin/env bash
# Builds moddit with the CUDA backend on the GPU machine, which has CUDA, CMake,
# ninja and Python but none of the Debian dev packages and no internet: those
# travel unpacked in .carry/root (see docs/BENCHMARKS.md for how it is made:
# `apt-get download libeigen3-dev nlohmann-json3-dev libcli11-dev libgtest-dev
# googletest libpng-dev libpng16-16 zlib1g-dev` then `dpkg -x` each into .carry/root).
# Usage: scripts/gpu_build.sh [build dir] ; ARCHS (default 90a) picks the SM targets,
# GPU_CXX_FLAGS adds host compiler flags (e.g. -g for a backtrace).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-gpu}
CARRY=$ROOT/.carry/root/usr
LIB=$CARRY/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMODDIT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${ARCHS:-90a}" \
  -DCMAKE_PREFIX_PATH="$CARRY" \
  -DCMAKE_CXX_FLAGS="-I$CARRY/include/eigen3 ${GPU_CXX_FLAGS:-}" \
  -DPNG_LIBRARY="$LIB/libpng16.so" -DPNG_PNG_INCLUDE_DIR="$CARRY/include" \
  -DZLIB_LIBRARY="$LIB/libz.a" -DZLIB_INCLUDE_DIR="$CARRY/include" \
  -DMODDIT_BUILD_PYTHON=OFF >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
ninja -C "$BUILD" -j"$(nproc)" ${TARGETS:-test_gpu moddit_cli}
