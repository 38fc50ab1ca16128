#!/usr/bin/env bash
# Florence-2 on the CPU side by side with the original modules (issue 11): for each size, random
# weights at the published shapes in the original remote-code layout (bench/florence2_reference.py
# make-cpu), the original modeling_florence2.py run on Debian's torch (run-cpu, with the stand-ins of
# bench/florence2_original.py), then Loupe on the very same folder and input (loupe-bench-florence2
# --cases caption); each stack in its own process, on all physical cores. Writes OUT_JSON
# (bench/results/cpu-florence2.json): machine, versions, raw figures of both stacks, per size the
# vision tower (+ projection), encoder, per-token decoding and whole-caption times with a "speedup"
# (reference time / Loupe time) each, peak resident sets, whether the generated ids are equal, and the
# distance of Loupe's image features, encoder states and decoder logits from the reference's.
#
# Needs: a build (loupe-bench-florence2), Debian's python3-torch and the original remote code in
# .ref/florence2_remote/modeling_florence2.py (tests/fixtures/gen/README.md).
#   bench/florence2_cpu_compare.sh [--sizes "base large"] [--dtypes "fp32 bf16"] [--runs 5] [--tokens 64]
#                                  [--ref-coretypes "Haswell SkylakeX"] [OUT_JSON]
#   --ref-coretypes: the reference once per OpenBLAS kernel set (OPENBLAS_CORETYPE), the fastest
#     counting per part (OpenBLAS' choice matters to the reference, whose products all go to it;
#     Loupe runs in the environment as it is). Default: one reference run in the environment as it is.
#   Environment: LOUPE_BUILD_DIR, LOUPE_NUM_THREADS, LOUPE_BENCH_WORK (weights and runs; default
#   build/bench-florence2), LOUPE_BENCH_CASE_TIMEOUT (seconds per process, default 3600),
#   LOUPE_BENCH_LOCK (a lock file each process takes with flock(1): a shared machine),
#   LOUPE_BENCH_RESUME=1 (keep the runs already finished).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="base large" dtypes="fp32 bf16" runs=5 tokens=64 coretypes= out=
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) sizes=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --ref-coretypes) coretypes=$2; shift 2 ;;
    -*) echo "florence2_cpu_compare: unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
build=${LOUPE_BUILD_DIR:-build}
out=${out:-bench/results/cpu-florence2.json}
work=${LOUPE_BENCH_WORK:-$build/bench-florence2}
timeout_s=${LOUPE_BENCH_CASE_TIMEOUT:-3600}
threads=${LOUPE_NUM_THREADS:-$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)}
lock=(); [ -n "${LOUPE_BENCH_LOCK:-}" ] && lock=(flock "$LOUPE_BENCH_LOCK")
py=/usr/bin/python3
export PYTHONPATH=bench
[ -f "${LOUPE_FLORENCE2_REMOTE:-.ref/florence2_remote/modeling_florence2.py}" ] ||
  { echo "florence2_cpu_compare: the original modeling_florence2.py is missing (tests/fixtures/gen/README.md)"; exit 1; }
[ -x "$build/bin/loupe-bench-florence2" ] || { echo "florence2_cpu_compare: build $build/bin/loupe-bench-florence2 first"; exit 1; }
mkdir -p "$work" "$(dirname "$out")"
done_or_resume() { [ -n "${LOUPE_BENCH_RESUME:-}" ] && [ -f "$1" ]; }

for size in $sizes; do
  dir=$work/$size
  if [ ! -f "$dir/pytorch_model.bin" ] || [ ! -f "$dir/inputs.safetensors" ]; then
    echo "== make $size weights in $dir" >&2
    "${lock[@]}" $py bench/florence2_reference.py make-cpu "$size" "$dir"
  fi
  refs=()
  for ct in ${coretypes:-as-is}; do
    ref=$work/$size-reference-fp32.json env=()
    [ "$ct" != as-is ] && ref=$work/$size-reference-fp32-openblas-$ct.json env=(env "OPENBLAS_CORETYPE=$ct")
    if ! done_or_resume "$ref"; then
      echo "== reference (original modules) $size fp32 (OpenBLAS kernels: $ct)" >&2
      "${lock[@]}" timeout "$timeout_s" "${env[@]}" $py bench/florence2_reference.py run-cpu "$dir" "$ref.tmp" \
        --threads "$threads" --runs "$runs" --tokens "$tokens" --outputs "${ref%.json}.outputs.safetensors" \
        > "${ref%.json}.log" 2>&1 && mv "$ref.tmp" "$ref"
    fi
    refs+=("$ref")
  done
  loupe=()
  for dt in $dtypes; do
    lo=$work/$size-loupe-$dt.json
    if ! done_or_resume "$lo"; then
      echo "== loupe $size $dt" >&2
      "${lock[@]}" timeout "$timeout_s" "$build/bin/loupe-bench-florence2" --device cpu --dtype "$dt" --cases caption \
        --weights "$dir" --inputs "$dir/inputs.safetensors" --runs "$runs" --tokens "$tokens" --threads "$threads" \
        --outputs "${lo%.json}.outputs.safetensors" --out "$lo.tmp" > /dev/null 2> "$work/$size-loupe-$dt.log" &&
        mv "$lo.tmp" "$lo"
    fi
    loupe+=("$lo")
  done
  $py bench/florence2_reference.py combine-cpu "$out" "${refs[@]}" "${loupe[@]}"
done
echo "wrote $out" >&2
