#!/usr/bin/env bash
# The CPU generation comparisons of issues 15 and 16 in one go: PaliGemma-3B-224 (batch 1 and 8, 16
# new tokens) or BLIP-2 OPT-2.7b (batch 1, 32 new tokens), random weights made once by transformers
# and loaded by both stacks from the same safetensors, on the same inputs; transformers'
# generate() (bench/lm_reference.py, fp32) side by side with Loupe's (loupe-bench-paligemma /
# loupe-bench-blip2, fp32 and bf16), each run in its own process, one after the other (fp32 weights:
# 12 GB / 15 GB per process), all physical cores. Writes bench/results/cpu-paligemma-3b.json or
# bench/results/cpu-blip2-opt-2.7b.json: machine, versions, raw figures, speedup (transformers time /
# Loupe time), peak memory, whether the generated ids match, and the distance between the two stacks'
# logits at every step of batch 1 (each run ends with an untimed generate() that keeps them). Scratch
# (weights, ~12 / 15 GB, and each run's JSON, logits and log) in $LOUPE_BENCH_WORK (default
# build/bench-lm, git-ignored).
#
# Needs: a build with the bench targets (loupe-bench-paligemma, loupe-bench-blip2), Debian's
# python3-torch, python3-sentencepiece, and transformers' source in .ref/transformers/src (see
# tests/fixtures/gen/README.md).
#   bench/lm_compare.sh paligemma|blip2 [STEP ...]
# STEPs (default: make ref-fp32 loupe-fp32 loupe-bf16 combine): make (the weights and inputs, once),
# ref-fp32, ref-bf16 (transformers in bf16: not by default), loupe-fp32, loupe-bf16, combine (of
# every run present). Every step but combine runs under flock $LOUPE_BENCH_LOCK (default
# /tmp/loupe-heavy.lock): on a shared machine, one heavy thing at a time.
#   (LOUPE_BUILD_DIR, LOUPE_NUM_THREADS, LOUPE_BENCH_WORK, LOUPE_BENCH_LOCK)
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: bench/lm_compare.sh paligemma|blip2 [STEP ...]}
shift
steps=${*:-make ref-fp32 loupe-fp32 loupe-bf16 combine}
build=${LOUPE_BUILD_DIR:-build}
work=${LOUPE_BENCH_WORK:-$build/bench-lm}
lock=${LOUPE_BENCH_LOCK:-/tmp/loupe-heavy.lock}
threads=${LOUPE_NUM_THREADS:-$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)}
export PYTHONPATH=.ref/transformers/src:tests/fixtures/gen/shims:bench LOUPE_REF_SHIM=tfshim
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
py=/usr/bin/python3
case $family in
  paligemma) model=paligemma-3b-224 result=bench/results/cpu-paligemma-3b.json
             ref_args="--tokens 16 --batches 1,8 --runs 3,2"
             loupe_bin=$build/bin/loupe-bench-paligemma
             loupe_args="--weights $work/$model --inputs $work/$model-inputs.safetensors --tokens 16 --batches 1,8 --runs 3,2" ;;
  blip2)     model=blip2-opt-2.7b result=bench/results/cpu-blip2-opt-2.7b.json
             ref_args="--tokens 32 --batches 1 --runs 3"
             loupe_bin=$build/bin/loupe-bench-blip2
             loupe_args="--size opt-2.7b --weights $work/$model --inputs $work/$model-inputs.safetensors --tokens 32 --runs 3" ;;
  *) echo "lm_compare: paligemma or blip2, not $family" >&2; exit 2 ;;
esac
[ -d .ref/transformers/src/transformers ] || { echo "lm_compare: .ref/transformers/src is missing (tests/fixtures/gen/README.md)" >&2; exit 1; }
mkdir -p "$work"

step() {  # name, command...: under the lock, output in $work/$family-NAME.log
  local name=$1; shift
  echo "== $family $name ($(date +%T))" >&2
  # the load average as the step starts and ends, in its log: was anything else running?
  flock "$lock" sh -c 'echo "loadavg at start: $(cat /proc/loadavg)"; "$@"; rc=$?; echo "loadavg at end: $(cat /proc/loadavg)"; exit $rc' \
    step "$@" > "$work/$family-$name.log" 2>&1 || { tail -30 "$work/$family-$name.log" >&2; exit 1; }
}
for s in $steps; do
  case $s in
    make) step make $py bench/lm_reference.py make "$family" "$work" ;;
    ref-fp32|ref-bf16)
      step "$s" $py bench/lm_reference.py run "$family" "$work" "$work/$family-$s.json" --dtype "${s#ref-}" \
        --threads "$threads" $ref_args --logits "$work/$family-$s.logits.safetensors" ;;
    loupe-fp32|loupe-bf16)
      [ -x "$loupe_bin" ] || { echo "lm_compare: build $loupe_bin first" >&2; exit 1; }
      step "$s" "$loupe_bin" $loupe_args --dtype "${s#loupe-}" --threads "$threads" --out "$work/$family-$s.json" \
        --logits "$work/$family-$s.logits.safetensors" ;;
    combine)
      refs=() loupes=()
      for d in fp32 bf16; do
        [ -f "$work/$family-ref-$d.json" ] && refs+=("$work/$family-ref-$d.json")
        [ -f "$work/$family-loupe-$d.json" ] && loupes+=("$work/$family-loupe-$d.json")
      done
      notes=()  # a run that failed: its last line, under "not_run"
      for r in ref-fp32 ref-bf16 loupe-fp32 loupe-bf16; do
        if [ -f "$work/$family-$r.log" ] && [ ! -f "$work/$family-$r.json" ]; then
          notes+=(--not-run "$r=$(grep -v '^loadavg' "$work/$family-$r.log" | tail -1)")
        fi
      done
      $py bench/lm_reference.py combine "$family" "$result" "${refs[@]}" -- "${loupes[@]}" "${notes[@]}" ;;
    *) echo "lm_compare: unknown step $s" >&2; exit 2 ;;
  esac
done
