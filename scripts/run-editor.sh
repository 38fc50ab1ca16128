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
if [ -z "${LOUPE_MODELS_DIR:-}" ]; then
  # The demo models, and the demo Florence-2 opened (tiny, random weights: the workflow, not real
  # answers). With LOUPE_MODELS_DIR set, the editor uses that folder and reopens the last model.
  export LOUPE_MODELS_DIR=$PWD/resources/demo-models
  export LOUPE_OPEN_MODEL=${LOUPE_OPEN_MODEL:-$PWD/resources/demo-models/demo-florence2}
fi
exec "$build/bin/loupe-editor" resources/images/sample.jpg "$@"
