#!/usr/bin/env bash
# Sets up everything on a fresh Debian 12 machine, builds, and opens the editor on the bundled
# sample image with the demo models (tiny random-weight models: they show the workflow, not real
# results; see README for installing real weights).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-deps.sh
build=${LOUPE_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)" --target loupe-editor loupe-cli
[ -x "$build/lib/loupe-plugins/libloupe_qt_editor.so" ] || cmake --build "$build" -j"$(nproc)"
export LOUPE_MODELS_DIR=${LOUPE_MODELS_DIR:-$PWD/resources/demo-models}
# The demo Florence-2 (tiny, random weights: it shows the workflow, not real answers).
export LOUPE_OPEN_MODEL=${LOUPE_OPEN_MODEL:-$PWD/resources/demo-models/demo-florence2}
exec "$build/bin/loupe-editor" resources/images/sample.jpg "$@"
