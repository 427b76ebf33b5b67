#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian/Ubuntu machine (idempotent):
# the compiler toolchain and the C++ libraries moddit builds against, all from
# Debian packages. Run as root or with sudo available.
set -euo pipefail

pkgs=(cmake ninja-build g++ pkg-config libeigen3-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libpng-dev zlib1g-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "bootstrap: all build dependencies present"
fi
