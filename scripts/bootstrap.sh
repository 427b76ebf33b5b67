#!/usr/bin/env bash
# Installs, from Debian packages, everything the README's two commands need on a
# fresh Debian 12 machine (idempotent: installs only what is missing):
#   - the build: CMake, Ninja, g++, Eigen, nlohmann-json, CLI11, GoogleTest, libpng;
#   - the Python tests: python3 with venv and its headers (scripts/test_python.sh
#     makes a virtual environment in build-venv/ and installs the PyPI
#     requirements there: the system Python is never pip-installed into, PEP 668)
#     and ca-certificates (pip reaches PyPI over HTTPS).
# `--fuzz` adds clang and its libFuzzer/sanitizer runtime (scripts/fuzz.sh).
# Run as root or with sudo available. Network fetches are retried; a failure
# names the packages that could not be installed.
set -euo pipefail

pkgs=(cmake ninja-build g++ pkg-config libeigen3-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libpng-dev zlib1g-dev
      python3 python3-venv python3-dev ca-certificates)
for arg in "$@"; do
  case "$arg" in
    --fuzz) pkgs+=(clang libclang-rt-dev) ;;
    *) echo "bootstrap: unknown argument '$arg' (known: --fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "bootstrap: all dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || {
    echo "bootstrap: missing Debian packages ${missing[*]}; run this as root or install sudo" >&2
    exit 1
  }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o Acquire::Retries=3 -o Dpkg::Use-Pty=0)
echo "bootstrap: installing ${missing[*]}"
for attempt in 1 2 3; do
  if $SUDO apt-get "${apt_opts[@]}" update -qq &&
     $SUDO apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}"; then
    exit 0
  fi
  if ((attempt < 3)); then
    echo "bootstrap: apt-get failed (attempt $attempt of 3); retrying in $((attempt * 15)) s" >&2
    sleep $((attempt * 15))
  fi
done
echo "bootstrap: FAILED to install Debian packages ${missing[*]} after 3 attempts" \
     "(see apt-get's messages above; check the network and /etc/apt/sources.list*)" >&2
exit 1
