#!/usr/bin/env bash
# The Python module and the diffusers adapters (called by scripts/test.sh; CI has
# no GPU): installs the build and test requirements from PyPI, builds and installs
# the module (CPU-only: the CUDA backend is compiled by the C++ build already and
# cannot run here), then runs tests/python. GPU tests skip themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

echo "== Python requirements (PyPI)"
# torch from PyPI is the CUDA build (~0.5 GB wheel + CUDA libraries, about a minute
# to install); PyPI has no CPU-only torch. Its CPU code path is what the tests use.
# moddit.tiny (tests/python/test_tiny.py): scikit-image (the photographs), Pillow and
# matplotlib (pictures), accelerate (diffusers loads Wan model folders through it).
# xfuser and yunchang (xDiT): the sequence-parallel pipeline tests run xDiT's
# transformers on gloo processes (tests/python/test_parallel_pipelines.py).
"$py" -m pip install --quiet --disable-pip-version-check \
  nanobind scikit-build-core numpy pytest safetensors torch "diffusers>=0.35" transformers \
  accelerate scikit-image pillow matplotlib xfuser==0.7.0 yunchang==0.6.4

echo "== build and install the module"
MODDIT_CUDA=OFF "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation .

echo "== pytest tests/python"
MODDIT_TEST_THREADS="${MODDIT_JOBS:-$(nproc)}" "$py" -m pytest -q -p no:cacheprovider tests/python
