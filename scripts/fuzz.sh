#!/usr/bin/env bash
# Issue 19, item 2: libFuzzer targets for the SDK's readers (tests/fuzz/fuzz_<target>.cpp), each
# built with Debian's clang (-fsanitize=fuzzer,address,undefined) from only the sources it needs,
# then run for a bounded time from its committed seed corpus (tests/fuzz/corpus/<target>/) and
# regression inputs (tests/fuzz/regressions/<target>/). A crash, a sanitizer report or an exception
# other than loupe::Error fails the run; the input that did it is left in
# $build/artifacts/<target>/: fix the code, then commit the input under tests/fuzz/regressions/<target>/
# (replayed by the CTest test fuzz.<target>.replay in every build).
#   scripts/fuzz.sh [target...]        default: every target
#   LOUPE_FUZZ_SECONDS=30              time per target
#   LOUPE_JOBS=N                       targets built and run at once (default: nproc)
#   LOUPE_FUZZ_BUILD_DIR=build-fuzz
#   LOUPE_FUZZ_LIBLOUPE=build/lib/libloupe.so   the library the C ABI target (request) drives
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${LOUPE_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${LOUPE_FUZZ_SECONDS:-30}
jobs=${LOUPE_JOBS:-$(nproc)}
cxx=${LOUPE_FUZZ_CXX:-clang++}
libloupe=$(realpath -m "${LOUPE_FUZZ_LIBLOUPE:-build/lib/libloupe.so}")
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
mkdir -p "$build"
build=$(cd "$build" && pwd)

# target: the SDK sources it needs (sdk/src/...), "torch" when it needs libtorch.
declare -A sources=(
  [bpe_tokenizer]="text/bpe_tokenizer.cpp text/unicode.cpp"
  [sentencepiece_json]="text/sentencepiece.cpp"
  [safetensors]="io/safetensors.cpp io/float8.cpp torch"
  [torch_zip]="io/torch_zip.cpp io/zip.cpp torch"
  [npz]="io/npz.cpp io/zip.cpp torch"
  [prompt]="models/sd/prompt.cpp text/bpe_tokenizer.cpp text/unicode.cpp io/config.cpp models/clip/clip_text.cpp nn/attention.cpp nn/linear.cpp nn/norm.cpp torch"
  [configs]="models/sd/unet.cpp models/sd/vae.cpp models/sd/blocks.cpp schedulers/scheduler.cpp models/clip/clip_text.cpp nn/decoder_lm.cpp models/siglip/siglip.cpp models/florence2/config.cpp models/paligemma/config.cpp models/flux/transformer.cpp nn/t5.cpp models/blip2/config.cpp io/config.cpp nn/attention.cpp nn/linear.cpp nn/conv.cpp nn/norm.cpp torch"
  # The C ABI: the whole library is behind it, so this one links the libloupe.so of the ordinary
  # build (LOUPE_FUZZ_LIBLOUPE, default build/lib/libloupe.so, made by scripts/test.sh before):
  # uninstrumented, so coverage guides only through the harness, and ASan sees what its
  # interceptors see (memcpy, strlen, ... on the caller's buffers) plus any crash.
  [request]="libloupe"
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bpe_tokenizer sentencepiece_json safetensors torch_zip npz prompt configs request)

san="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
common=(-std=gnu++17 -O1 -g1 -fno-omit-frame-pointer -ffunction-sections -fdata-sections
        -I"$root/sdk/include" -I"$root/sdk/src" -DLOUPE_FIXTURES_DIR="\"$root/tests/fixtures\""
        -D_GLIBCXX_USE_CXX11_ABI=1 -DLOUPE_BUILDING=1 -DLOUPE_VERSION_STRING="\"fuzz\""
        -isystem /usr/include/torch/csrc/api/include -w)
torch_libs=(-Wl,--no-as-needed /usr/lib/x86_64-linux-gnu/libtorch.so /usr/lib/x86_64-linux-gnu/libtorch_cpu.so
            /usr/lib/x86_64-linux-gnu/libc10.so -Wl,--as-needed)

# Objects are shared between targets (the same flags): built once, rebuilt when the source is newer.
object() {  # source (relative to the repository) -> object path
  local src=$1 obj="$build/obj/${1//\//_}.o" deps
  # rebuilt when the source or a header it includes (the compiler's dependency list) is newer
  deps=$([ -f "$obj.d" ] && sed -e 's/\\$//' -e 's/^[^:]*://' "$obj.d" | tr -s ' \n' '\n' | grep -v '^$' || true)
  if [ ! -f "$obj" ] || [ -z "$deps" ] || [ -n "$(find $deps -maxdepth 0 -newer "$obj" -print -quit 2>/dev/null)" ]; then
    mkdir -p "$build/obj"
    nice "$cxx" "${common[@]}" $san -MMD -MF "$obj.d" -c "$root/$src" -o "$obj.tmp" >&2 || return 1
    mv "$obj.tmp" "$obj"
  fi
  echo "$obj"
}

build_target() {
  local t=$1 objs=() libs=() s o
  o=$(object "tests/fuzz/fuzz_$t.cpp") || return 1
  objs+=("$o")
  for s in ${sources[$t]}; do
    if [ "$s" = torch ]; then libs+=("${torch_libs[@]}")
    elif [ "$s" = libloupe ]; then
      [ -f "$libloupe" ] || { echo "fuzz: $libloupe not found (build the library first: scripts/test.sh)" >&2; return 1; }
      libs+=("$libloupe" -Wl,-rpath,"$(dirname "$libloupe")")
    else o=$(object "sdk/src/$s") || return 1; objs+=("$o"); fi
  done
  # --gc-sections: code of those sources that the target never reaches (a model's forward next to
  # its config reader) is dropped with what it references.
  nice "$cxx" $san -Wl,--gc-sections "${objs[@]}" -o "$build/fuzz_$t" "${libs[@]}" -lz -ldl -lpthread
}

run_target() {
  local t=$1 corpus="$build/corpus/$t" art="$build/artifacts/$t/"
  rm -rf "$art" && mkdir -p "$corpus" "$art"
  cp -r "$root/tests/fuzz/corpus/$t/." "$corpus/" 2>/dev/null || true
  [ -d "$root/tests/fuzz/regressions/$t" ] && cp -r "$root/tests/fuzz/regressions/$t/." "$corpus/"
  local dict=() 
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  # -rss_limit_mb / -malloc_limit_mb: an input must not make a reader allocate gigabytes.
  OMP_NUM_THREADS=1 LOUPE_FIXTURES_DIR="$root/tests/fixtures" \
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    nice "$build/fuzz_$t" "${dict[@]}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=1024 \
    -max_len=65536 -artifact_prefix="$art" -print_final_stats=1 "$corpus" >"$build/fuzz_$t.log" 2>&1
}

status=0
start=$(date +%s)
for t in "${targets[@]}"; do
  [ -n "${sources[$t]+x}" ] || { echo "fuzz: unknown target $t (known: ${!sources[*]})"; exit 2; }
  if ! build_target "$t"; then echo "fuzz: $t does not build"; status=1; fi
done
echo "fuzz: built in $(($(date +%s) - start)) s"
running=()
finish() {  # waits for the oldest running target
  local entry=${running[0]} t pid
  running=("${running[@]:1}")
  t=${entry%%:*}; pid=${entry##*:}
  if wait "$pid"; then
    echo "fuzz: $t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz_$t.log" | grep -o '[0-9]*$') runs, clean"
  else
    echo "fuzz: $t FAILED; input(s) in $build/artifacts/$t/; the end of $build/fuzz_$t.log:"
    tail -40 "$build/fuzz_$t.log"
    status=1
  fi
}
for t in "${targets[@]}"; do
  [ -x "$build/fuzz_$t" ] || continue
  run_target "$t" & running+=("$t:$!")
  [ ${#running[@]} -lt "$jobs" ] || finish
done
while [ ${#running[@]} -gt 0 ]; do finish; done
exit "$status"
