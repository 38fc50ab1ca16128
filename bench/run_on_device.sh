#!/usr/bin/env bash
# One call on the CUDA machine does everything that needs it (device time is short):
# build against PyTorch's libtorch, run the test suite, the self-test, the Florence-2 parity
# fixture generator (transformers) and the benchmarks side by side with the reference.
# Prepare here first:  ../shared/device/prepare-deps.sh
# and copy the reference run beside the code (../shared does not travel to the device):
#   mkdir -p .ref && cp ../shared/device/reference_baseline.py .ref/   (.ref/ is git-ignored)
# Then run with the device tool, carrying .devdeps, .ref and tests/fixtures/gen/node_modules:
#   source .devdeps/env.sh; bench/run_on_device.sh
# For the diffusion benchmark also bring diffusers' source: git archive its src/diffusers into .ref/src
# (carry .ref). Results land in $OUT (logs, selftest.json, bench JSON, florence2-h100.json and
# sd15-h100.json to commit under bench/results/, tiny-expected.safetensors).
set -uo pipefail
OUT=${OUT:-/tmp/loupe-out}
mkdir -p "$OUT"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOUPE_BUILD_EDITOR=OFF > "$OUT/configure.log" 2>&1 \
  || { tail -50 "$OUT/configure.log"; exit 1; }
if ! cmake --build build-gpu -j"$(nproc)" > "$OUT/build.log" 2>&1; then
  # CUDA graph capture (StaticDecoder) is the one piece never compiled before a GPU run: without it
  # the rest still builds and runs (decoding eagerly).
  grep -E "error" "$OUT/build.log" | head -40
  echo "retrying with -DLOUPE_CUDA_GRAPHS=OFF"
  cmake -S . -B build-gpu -DLOUPE_CUDA_GRAPHS=OFF >> "$OUT/configure.log" 2>&1
  cmake --build build-gpu -j"$(nproc)" > "$OUT/build2.log" 2>&1 || { grep -E "error" "$OUT/build2.log" | head -40; exit 1; }
fi
ctest --test-dir build-gpu --output-on-failure -j4 --timeout 600 > "$OUT/ctest.log" 2>&1
grep -E "tests passed|tests failed|\*\*\*Failed" "$OUT/ctest.log"
build-gpu/bin/loupe-cli selftest > "$OUT/selftest.json" 2>/dev/null; cat "$OUT/selftest.json"
build-gpu/bin/loupe-cli info > "$OUT/info.json" 2>/dev/null
python3 tests/fixtures/gen/florence2_reference.py > "$OUT/florence2_reference.log" 2>&1 \
  && cp tests/fixtures/florence2/tiny-expected.safetensors "$OUT/" ; tail -3 "$OUT/florence2_reference.log"
# Florence-2 base and large: transformers and Loupe on the same random weights, each stack in its own
# process (so that one's cached memory does not count for the other), then one combined JSON.
pairs=()
for size in base large; do
  python3 bench/florence2_reference.py run "$size" "$OUT/fl2-$size-weights" "$OUT/bench_florence2_${size}_transformers.json" \
    > "$OUT/bench_florence2_${size}_transformers.log" 2>&1; tail -2 "$OUT/bench_florence2_${size}_transformers.log"
  build-gpu/bin/loupe-bench-florence2 --size "$size" --device cuda --dtype fp16 --weights "$OUT/fl2-$size-weights" \
    > "$OUT/bench_florence2_${size}_loupe.json" 2> "$OUT/bench_florence2_${size}_loupe.log"; tail -2 "$OUT/bench_florence2_${size}_loupe.log"
  # the same weights with CUDA-graph decoding, merged into Loupe's JSON as "<case>_graphs"
  build-gpu/bin/loupe-bench-florence2 --size "$size" --device cuda --dtype fp16 --weights "$OUT/fl2-$size-weights" \
    --cuda-graphs > "$OUT/bench_florence2_${size}_loupe_graphs.json" 2> "$OUT/bench_florence2_${size}_loupe_graphs.log" \
    && python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); a["cases"].update(json.load(open(sys.argv[2]))["cases"]); json.dump(a, open(sys.argv[1], "w"), indent=1)' \
       "$OUT/bench_florence2_${size}_loupe.json" "$OUT/bench_florence2_${size}_loupe_graphs.json"
  tail -2 "$OUT/bench_florence2_${size}_loupe_graphs.log"
  pairs+=("$OUT/bench_florence2_${size}_transformers.json" "$OUT/bench_florence2_${size}_loupe.json")
  rm -rf "$OUT/fl2-$size-weights"
done
python3 bench/florence2_reference.py combine "$OUT/florence2-h100.json" "${pairs[@]}"
# Stable Diffusion 1.5: diffusers and Loupe on the same random weights, same process order, same GPU.
# Each stack runs in its own process so that one's cached memory does not count for the other.
if [ -d .ref/src/diffusers ]; then
  PYTHONPATH=.ref/src python3 bench/sd_reference.py run "$OUT/sd15-weights" "$OUT/bench_sd15_diffusers.json" \
    > "$OUT/bench_sd15_diffusers.log" 2>&1; tail -3 "$OUT/bench_sd15_diffusers.log"
  build-gpu/bin/loupe-bench-sd --size sd15 --device cuda --dtype fp16 --weights "$OUT/sd15-weights" \
    > "$OUT/bench_sd15_loupe.json" 2> "$OUT/bench_sd15_loupe.log"; tail -2 "$OUT/bench_sd15_loupe.log"
  python3 bench/sd_reference.py combine "$OUT/bench_sd15_diffusers.json" "$OUT/bench_sd15_loupe.json" \
    "$OUT/sd15-h100.json"
  rm -rf "$OUT/sd15-weights"
fi
if [ -f .ref/reference_baseline.py ]; then
  SKIP_SD=1 python3 .ref/reference_baseline.py > "$OUT/reference.log" 2>&1; tail -3 "$OUT/reference.log"
fi
