#!/usr/bin/env bash
# Writes the ABI baseline of libloupe (tests/abi/libloupe.abi) from a build. Run this only when an
# ABI change is intended (a new major version); appending functions does not need it.
#   tools/update-abi-baseline.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
abidw --headers-dir "$root/sdk/include" --no-corpus-path --drop-private-types --exported-interfaces-only --no-show-locs --no-comp-dir-path --out-file "$root/tests/abi/libloupe.abi" \
  "$build/lib/libloupe.so"
echo "wrote tests/abi/libloupe.abi"
