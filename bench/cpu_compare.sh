#!/usr/bin/env bash
# The CPU comparison in one go (issues 11 and 14): random weights of Stable Diffusion 1.5 sizes (512 x
# 512) or SDXL base 1.0 sizes (1024 x 1024, or the largest of the resolutions given that every stack
# finishes), one UNet step with guidance (batch 2) and the VAE decode, Loupe (fp32 and bf16) side by
# side with diffusers (fp32; for sd15 bf16 too, for reference) on the very same weights. Each stack,
# case and resolution runs in its own process, which loads only the model its case needs, on all
# physical cores. Writes bench/results/cpu-SIZE.json: the machine, the versions, every raw figure, the
# resolution of each case, a "speedup" (diffusers fp32 time / Loupe time) per case, peak memory, how
# far each output is from diffusers', and under not_run each run that did not finish and why (out of
# memory, out of time).
#
# Needs: a build (scripts/test.sh or cmake --build build), Debian's python3-torch and diffusers'
# source in .ref/src (see tests/fixtures/gen/README.md: fetch huggingface/diffusers, git archive
# src/diffusers). stable-diffusion.cpp is not part of it: its source arrives here without the ggml
# submodule it builds with, so it cannot be built on this machine (see not_run in the JSON).
#   bench/cpu_compare.sh [--size sd15|sdxl] [--resolutions "1024 768 512"] [OUT_JSON]
#     --resolutions: tried largest first, per case, until diffusers fp32, Loupe fp32 and Loupe bf16 all
#     finish (default: sd15 512; sdxl 1024 768 512).
#   Environment: LOUPE_BUILD_DIR, LOUPE_NUM_THREADS, LOUPE_BENCH_WORK (weights and runs; default
#   build/bench-cpu), LOUPE_BENCH_CASE_TIMEOUT (seconds per process, default 7200),
#   LOUPE_BENCH_LOCK (a lock file each process takes with flock(1): a shared machine),
#   LOUPE_BENCH_RESUME=1 (keep the runs already finished), LOUPE_BENCH_SKIP_DIFFUSERS_BF16=1,
#   LOUPE_BENCH_STACKS (default "diffusers-fp32 loupe-fp32 loupe-bf16", sd15 adds diffusers-bf16).
set -euo pipefail
cd "$(dirname "$0")/.."
size=sd15 resolutions= out=
while [ $# -gt 0 ]; do
  case $1 in
    --size) size=$2; shift 2 ;;
    --resolutions|--resolution) resolutions=$2; shift 2 ;;
    -*) echo "cpu_compare: unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
case $size in
  sd15) resolutions=${resolutions:-512} ;;
  sdxl) resolutions=${resolutions:-1024 768 512} ;;
  *) echo "cpu_compare: --size sd15 or sdxl" >&2; exit 2 ;;
esac
build=${LOUPE_BUILD_DIR:-build}
out=${out:-bench/results/cpu-$size.json}
work=${LOUPE_BENCH_WORK:-$build/bench-cpu}
weights=$work/$size runs=$work/$size-runs
timeout_s=${LOUPE_BENCH_CASE_TIMEOUT:-7200}
threads=${LOUPE_NUM_THREADS:-$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)}
stacks="diffusers-fp32 loupe-fp32 loupe-bf16"
[ "$size" = sd15 ] && [ -z "${LOUPE_BENCH_SKIP_DIFFUSERS_BF16:-}" ] && stacks="$stacks diffusers-bf16"
stacks=${LOUPE_BENCH_STACKS:-$stacks}
lock=(); [ -n "${LOUPE_BENCH_LOCK:-}" ] && lock=(flock "$LOUPE_BENCH_LOCK")
mkdir -p "$runs" "$(dirname "$out")"
export PYTHONPATH=.ref/src:tests/fixtures/gen/shims:bench LOUPE_REF_SHIM=refshim
py=/usr/bin/python3
[ -d .ref/src/diffusers ] || { echo "cpu_compare: .ref/src/diffusers is missing (tests/fixtures/gen/README.md)"; exit 1; }
[ -x "$build/bin/loupe-bench-sd" ] || { echo "cpu_compare: build $build/bin/loupe-bench-sd first"; exit 1; }
# A copy of the benchmark: every Loupe run of this invocation runs the same binary even if the build
# is relinked meanwhile; each run's .binary names it (a resumed run counts only with the same binary).
bin=$runs/loupe-bench-sd
cp "$build/bin/loupe-bench-sd" "$bin.tmp" && mv "$bin.tmp" "$bin"
binary=$($py -c 'import hashlib, json, os, subprocess, sys, time
git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
print(json.dumps({"sha256": hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:16],
                  "built": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(os.path.getmtime(sys.argv[2]))),
                  "git_head": git("rev-parse", "--short", "HEAD"),
                  "sdk_uncommitted_changes": bool(git("status", "--porcelain", "sdk"))}))' "$bin" "$build/bin/loupe-bench-sd")

run_case() {  # stack case px: $runs/STACK.CASE.rPX.json (and its outputs), or .failed with the reason
  local stack=$1 case=$2 px=$3 rc=0 why
  local name=$runs/$stack.$case.r$px dtype=${stack#*-}
  if [ -n "${LOUPE_BENCH_RESUME:-}" ] && [ -f "$name.json" ]; then
    [[ $stack == diffusers-* ]] && return 0
    [ "$(cat "$name.binary" 2>/dev/null)" = "$binary" ] && return 0
  fi
  rm -f "$name".json "$name".json.tmp "$name".failed "$name".binary
  echo "== $stack $case $px x $px" >&2
  if [[ $stack == diffusers-* ]]; then
    "${lock[@]}" timeout "$timeout_s" $py bench/sd_reference.py run "$weights" "$name.json" --device cpu --dtype "$dtype" \
      --threads "$threads" --steps 0 --size "$size" --resolution "$px" --cases "$case" > "$name.log" 2>&1 || rc=$?
  else
    echo "$binary" > "$name.binary"
    "${lock[@]}" timeout "$timeout_s" "$bin" --size "$size" --device cpu --dtype "$dtype" --steps 0 \
      --threads "$threads" --resolution "$px" --cases "$case" --weights "$weights" --outputs "$name.safetensors" \
      > "$name.json.tmp" 2> "$name.log" && mv "$name.json.tmp" "$name.json" || rc=$?
  fi
  [ "$rc" = 0 ] && return 0
  case $rc in
    124) why="out of time: stopped after $timeout_s s (LOUPE_BENCH_CASE_TIMEOUT)" ;;
    137) why="killed by SIGKILL: out of memory (the kernel's OOM killer; $(free -g | awk '/Mem:/{print $2}') GiB of RAM)" ;;
    *) why="exit status $rc" ;;
  esac
  rc=$rc why=$why log=$name.log $py -c 'import json, os; print(json.dumps({"exit_status": int(os.environ["rc"]),
    "reason": os.environ["why"], "log_tail": open(os.environ["log"], errors="replace").read().splitlines()[-5:]}, indent=2))' \
    > "$name.failed"
  echo "   failed: $why" >&2
  return 1
}

# the weights first (once), then per case the resolutions from the largest until every stack ran
echo "== weights ($size) in $weights" >&2
"${lock[@]}" $py bench/sd_reference.py make "$weights" --size "$size" --threads "$threads" > "$work/$size-make.log" 2>&1 \
  || { tail -20 "$work/$size-make.log" >&2; exit 1; }
for case in unet vae; do
  for px in $resolutions; do
    all=1
    for stack in $stacks; do
      run_case "$stack" "$case" "$px" || { [ "$stack" = diffusers-bf16 ] || all=0; }
    done
    [ $all = 1 ] && break
  done
done
$py bench/sd_reference.py combine-cpu "$runs" "$out" --size "$size"
