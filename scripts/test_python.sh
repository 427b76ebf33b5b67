#!/usr/bin/env bash
# The Python module and the diffusers adapters (called by scripts/test.sh; CI has
# no GPU). Everything runs in a virtual environment, build-venv/ (git-ignored;
# MODDIT_VENV names another), made from python3 (PYTHON names another) with
# --system-site-packages, so packages the machine already has (torch above all)
# are used as they are and only what is missing is installed from PyPI. The venv,
# pip's download cache and the module's build tree (build-py/) are kept, so a
# second run installs and recompiles nothing that did not change. Then the module
# is built and installed (CPU-only: the CUDA backend is compiled by the C++ build
# already and cannot run here) and tests/python runs. GPU tests skip themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
base_py="${PYTHON:-python3}"
venv="${MODDIT_VENV:-build-venv}"

fail() { echo "test_python: FAILED: $*" >&2; exit 1; }

command -v "$base_py" >/dev/null || fail "no '$base_py' (scripts/bootstrap.sh installs python3)"
if ! "$venv/bin/python" -c "import sys" 2>/dev/null; then
  echo "== virtual environment $venv (from $base_py)"
  rm -rf "$venv"
  "$base_py" -m venv --system-site-packages "$venv" ||
    fail "cannot make a virtual environment with '$base_py -m venv'" \
         "(Debian package python3-venv; scripts/bootstrap.sh installs it)"
fi
py="$venv/bin/python"

# pip retries each request itself; the loop covers an index or mirror that is
# down for a minute.
pip_install() {
  local attempt
  for attempt in 1 2 3; do
    "$py" -m pip install --quiet --disable-pip-version-check --retries 5 --timeout 60 "$@" &&
      return 0
    ((attempt < 3)) && { echo "test_python: pip install failed (attempt $attempt of 3); retrying" >&2
                         sleep $((attempt * 20)); }
  done
  return 1
}

# moddit.tiny (tests/python/test_tiny.py): scikit-image (the photographs), Pillow and
# matplotlib (pictures), accelerate (diffusers loads Wan model folders through it).
# xfuser and yunchang (xDiT): the sequence-parallel pipeline tests run xDiT's
# transformers on gloo processes (tests/python/test_parallel_pipelines.py).
reqs=(nanobind scikit-build-core numpy pytest safetensors torch "diffusers>=0.35" transformers
      accelerate scikit-image pillow matplotlib xfuser==0.7.0 yunchang==0.6.4)
echo "== Python requirements (PyPI, into $venv/)"
# torch from PyPI is the CUDA build (~0.9 GB wheel + ~2.5 GB of CUDA libraries,
# 2-3 minutes the first time); PyPI has no CPU-only torch. Its CPU code path is
# what the tests use.
pip_install "${reqs[@]}" || fail "could not install ${reqs[*]} from PyPI into $venv (see pip above)"

echo "== build and install the module (into $venv/)"
MODDIT_CUDA=OFF "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation . ||
  fail "building or installing the module failed (Python headers: python3-dev, from scripts/bootstrap.sh)"

echo "== pytest tests/python"
MODDIT_TEST_THREADS="${MODDIT_JOBS:-$(nproc)}" "$py" -m pytest -q -p no:cacheprovider tests/python
