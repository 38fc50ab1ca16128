#!/usr/bin/env bash
# The CPU comparison in one go (issue 11): Stable Diffusion 1.5 sizes with random weights, 512 x 512,
# one UNet step with guidance (batch 2) and the VAE decode, Loupe (fp32 and bf16) side by side with
# diffusers (fp32, and bf16 for reference) on the very same weights, each stack in its own process,
# all physical cores. Writes bench/results/cpu-sd15.json: the machine, the versions, every raw figure,
# a "speedup" (diffusers fp32 time / Loupe time) per case and how far each output is from diffusers'.
#
# Needs: a build (scripts/test.sh or cmake --build build), Debian's python3-torch and diffusers'
# source in .ref/src (see tests/fixtures/gen/README.md: fetch huggingface/diffusers, git archive
# src/diffusers). stable-diffusion.cpp is not part of it: its source arrives here without the ggml
# submodule it builds with, so it cannot be built on this machine (see bench/README note in the JSON).
#   bench/cpu_compare.sh [OUT_JSON]      (LOUPE_BUILD_DIR, LOUPE_NUM_THREADS, LOUPE_BENCH_WORK)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LOUPE_BUILD_DIR:-build}
out=${1:-bench/results/cpu-sd15.json}
work=${LOUPE_BENCH_WORK:-$build/bench-cpu}
threads=${LOUPE_NUM_THREADS:-$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)}
mkdir -p "$work" "$(dirname "$out")"
export PYTHONPATH=.ref/src:tests/fixtures/gen/shims:bench LOUPE_REF_SHIM=refshim
py=/usr/bin/python3
[ -d .ref/src/diffusers ] || { echo "cpu_compare: .ref/src/diffusers is missing (tests/fixtures/gen/README.md)"; exit 1; }
[ -x "$build/bin/loupe-bench-sd" ] || { echo "cpu_compare: build $build/bin/loupe-bench-sd first"; exit 1; }

run() {  # name, command...: one process per case, its JSON in $work/NAME.json
  local name=$1; shift
  echo "== $name" >&2
  "$@" > "$work/$name.log" 2>&1 || { tail -20 "$work/$name.log" >&2; exit 1; }
}
# diffusers first: it makes the weights (once) that every later run loads
run diffusers-fp32 $py bench/sd_reference.py run "$work/sd15" "$work/diffusers-fp32.json" --device cpu --dtype fp32 --threads "$threads" --steps 0
run loupe-fp32 sh -c "$build/bin/loupe-bench-sd --size sd15 --device cpu --dtype fp32 --steps 0 --threads $threads --weights $work/sd15 --outputs $work/loupe-fp32.safetensors > $work/loupe-fp32.json"
run loupe-bf16 sh -c "$build/bin/loupe-bench-sd --size sd15 --device cpu --dtype bf16 --steps 0 --threads $threads --weights $work/sd15 --outputs $work/loupe-bf16.safetensors > $work/loupe-bf16.json"
if [ -z "${LOUPE_BENCH_SKIP_DIFFUSERS_BF16:-}" ]; then
  run diffusers-bf16 $py bench/sd_reference.py run "$work/sd15" "$work/diffusers-bf16.json" --device cpu --dtype bf16 --threads "$threads" --steps 0
fi
$py bench/sd_reference.py combine-cpu "$work" "$out"
