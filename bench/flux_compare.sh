#!/usr/bin/env bash
# FLUX.1 schnell on the CPU, Loupe side by side with diffusers (issue 17): one transformer step and a
# whole 4-step image from a prompt, on the very same random weights at FLUX.1's width (fewer blocks and
# T5 layers, so that both stacks fit and run here), each run in its own process, one after the other,
# all physical cores. Writes bench/results/cpu-flux.json: the machine, the versions, the sizes, every raw
# figure, a "speedup" (diffusers time / Loupe time) per case, peak memory of both, how far Loupe's
# transformer output and image are from diffusers', and where Loupe put the transformer.
#
# Needs: a build with loupe-bench-flux (ninja -C build loupe-bench-flux), Debian's python3-torch,
# python3-sentencepiece, python3-pil, and diffusers' and transformers' source in .ref/ (see
# tests/fixtures/gen/README.md, make_flux_pipeline_tiny.py's row).
#   bench/flux_compare.sh [OUT_JSON]
# Environment: LOUPE_BUILD_DIR (build), LOUPE_BENCH_WORK (build/bench-flux), LOUPE_NUM_THREADS (physical
# cores), LOUPE_FLUX_SIZE (512), LOUPE_FLUX_BLOCKS ("2 4": double and single blocks; FLUX.1 has 19 38),
# LOUPE_FLUX_T5_LAYERS (2; T5-XXL has 24), LOUPE_FLUX_STORE (bf16, as FLUX.1 is published; or fp32),
# LOUPE_FLUX_LOUPE_DTYPES ("fp32 bf16"), LOUPE_FLUX_DIFFUSERS_DTYPES (fp32), LOUPE_FLUX_CASES ("step image"),
# LOUPE_FLUX_STEP_RUNS (3), LOUPE_FLUX_WARM_STEPS (1),
# LOUPE_BENCH_LOCK (a lock file each run takes on its own, e.g. /tmp/loupe-heavy.lock on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LOUPE_BUILD_DIR:-build}
out=${1:-bench/results/cpu-flux.json}
work=${LOUPE_BENCH_WORK:-$build/bench-flux}
threads=${LOUPE_NUM_THREADS:-$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)}
size=${LOUPE_FLUX_SIZE:-512}
read -r double single <<< "${LOUPE_FLUX_BLOCKS:-2 4}"
t5_layers=${LOUPE_FLUX_T5_LAYERS:-2}
store=${LOUPE_FLUX_STORE:-bf16}
n=${LOUPE_FLUX_STEP_RUNS:-3}              # timed transformer steps (after one warm-up step)
warm_steps=${LOUPE_FLUX_WARM_STEPS:-1}    # the warm-up image's steps before the timed image (0: none)
weights=$work/flux-schnell-random-${double}d${single}s-t5x${t5_layers}-$store
runs=$work/runs-$size
lock=${LOUPE_BENCH_LOCK:-}
export PYTHONPATH=.ref/src:.ref/transformers/src:tests/fixtures/gen/shims:bench LOUPE_REF_SHIM=fluxshim
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
py=/usr/bin/python3
[ -d .ref/src/diffusers ] && [ -d .ref/transformers/src/transformers ] ||
  { echo "flux_compare: .ref/src/diffusers or .ref/transformers/src is missing (tests/fixtures/gen/README.md)"; exit 1; }
[ -x "$build/bin/loupe-bench-flux" ] || { echo "flux_compare: build $build/bin/loupe-bench-flux first"; exit 1; }
mkdir -p "$work" "$runs" "$(dirname "$out")"

run() {  # name, command...: one process per run, its log in $runs/NAME.log
  local name=$1; shift
  echo "== $name ($(date +%T))" >&2
  if [ -n "$lock" ]; then set -- flock "$lock" "$@"; fi
  "$@" > "$runs/$name.log" 2>&1 || { tail -30 "$runs/$name.log" >&2; exit 1; }
}
# the weights, once (diffusers and transformers make them; both stacks load the same files)
[ -f "$weights/bench_info.json" ] ||
  run make $py bench/flux_reference.py make "$weights" --double "$double" --single "$single" --t5-layers "$t5_layers" --store "$store"
for c in ${LOUPE_FLUX_CASES:-step image}; do
  for dt in ${LOUPE_FLUX_DIFFUSERS_DTYPES:-fp32}; do
    run "diffusers-$c-$dt" $py bench/flux_reference.py "$c" "$weights" "$runs/diffusers-$c-$dt.json" --size "$size" --dtype "$dt" \
      --threads "$threads" --n "$n" --warm-steps "$warm_steps"
  done
  for dt in ${LOUPE_FLUX_LOUPE_DTYPES:-fp32 bf16}; do
    run "loupe-$c-$dt" "$build/bin/loupe-bench-flux" --case "$c" --weights "$weights" --size "$size" --dtype "$dt" \
      --threads "$threads" --n "$n" --warm-steps "$warm_steps" --out "$runs/loupe-$c-$dt.json" --outputs "$runs/loupe-$c-$dt.safetensors"
  done
done
$py bench/flux_reference.py combine "$runs" "$weights" "$out"
