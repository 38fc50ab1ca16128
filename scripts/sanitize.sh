#!/usr/bin/env bash
# Issue 19, item 1: an AddressSanitizer + UndefinedBehaviorSanitizer build of the SDK (libloupe),
# its GoogleTest suite (loupe_sdk_tests) and the C ABI tests, run; any report fails the run.
# Builds only what these tests need (no editor, GIMP, samples, benchmarks), at -O1 with line tables
# only (-g1), in ${LOUPE_SANITIZE_BUILD_DIR:-build-asan}. Called by .ci/run after scripts/test.sh
# (which installed the dependencies).
#   LOUPE_JOBS=N       build and test jobs (default: nproc)
#   LOUPE_SANITIZE_FILTER=<gtest filter>  run part of loupe_sdk_tests only (default: all of it)
# libtorch (Debian's libtorch-dev) is not instrumented: ASan still sees every allocation (malloc is
# intercepted), and tests/sanitizers/*.supp suppresses only reports whose frames lie in libtorch
# itself, each with its reason; a frame of ours is never suppressed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${LOUPE_SANITIZE_BUILD_DIR:-build-asan}
jobs=${LOUPE_JOBS:-$(nproc)}
flags="-O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
# allocator_may_return_null: the out-of-memory tests ask libtorch for impossible sizes on purpose and
# check that the failure comes back as a clean status (ASan would abort instead of failing the call).
export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_string_checks=1:abort_on_error=0:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$root/tests/sanitizers/ubsan.supp"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export LOUPE_FIXTURES_DIR="$root/tests/fixtures"

start=$(date +%s)
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Sanitize \
  -DCMAKE_C_FLAGS_SANITIZE="$flags" -DCMAKE_CXX_FLAGS_SANITIZE="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS_SANITIZE="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS_SANITIZE="-fsanitize=address,undefined" \
  -DLOUPE_BUILD_TESTS=ON -DLOUPE_BUILD_EDITOR=OFF -DLOUPE_BUILD_GIMP=OFF -DLOUPE_BUILD_SAMPLES=OFF \
  -DLOUPE_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
targets=(loupe_sdk_tests loupe_abi_test loupe_abi_compat_0_1 loupe_abi_threads loupe_abi_models loupe_abi_edit)
# (the build runs each GoogleTest program to list its tests: no leak check for that listing)
ASAN_OPTIONS=detect_leaks=0 nice cmake --build "$build" -j"$jobs" --target "${targets[@]}"
built=$(date +%s)
echo "sanitize: built in $((built - start)) s"

status=0
logs="$build/sanitize-logs"
rm -rf "$logs" && mkdir -p "$logs"
run() {  # name command...: runs one test program, its output in $logs/name.log
  local name=$1; shift
  if "$@" >"$logs/$name.log" 2>&1; then
    echo "sanitize: $name passed"
  else
    echo "sanitize: $name FAILED (exit $?); the end of $logs/$name.log:"
    tail -60 "$logs/$name.log"
    return 1
  fi
}
# The GoogleTest suite in $jobs shards at once (each a process of its own), then the ABI programs.
pids=()
for ((i = 0; i < jobs; i++)); do
  GTEST_TOTAL_SHARDS=$jobs GTEST_SHARD_INDEX=$i run "sdk_tests.shard$i" "$build/tests/loupe_sdk_tests" \
    --gtest_filter="${LOUPE_SANITIZE_FILTER:-*}" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
for t in loupe_abi_test loupe_abi_compat_0_1 loupe_abi_threads loupe_abi_models loupe_abi_edit; do
  run "$t" "$build/tests/abi/$t" || status=1
done
# A report that did not end its program (a suppressed class, a leak summary) still fails the run.
if grep -l "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$logs"/*.log; then
  echo "sanitize: sanitizer reports in the logs above"
  status=1
fi
echo "sanitize: tests ran in $(($(date +%s) - built)) s"
exit "$status"
