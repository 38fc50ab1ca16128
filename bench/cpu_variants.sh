#!/usr/bin/env bash
# One Loupe case on the CPU under several environments (the block cache and Winograd convolutions
# on and off), each run alone in its own process on the weights bench/cpu_compare.sh made, against
# diffusers fp32 on the same weights, run before and after them (a shared machine drifts: the ratios
# use the mean of the two). Writes OUT_JSON: per variant its environment, wall and CPU time, peak
# RSS, cache statistics, and the ratios to diffusers.
#   bench/cpu_variants.sh OUT_JSON [vae|unet]
#   Environment: LOUPE_BUILD_DIR, LOUPE_BENCH_WORK (as cpu_compare.sh), LOUPE_NUM_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 case=${2:-vae}
build=${LOUPE_BUILD_DIR:-build}
weights=${LOUPE_BENCH_WORK:-$build/bench-cpu}/sd15
threads=${LOUPE_NUM_THREADS:-$(lscpu -p=core,socket | grep -v '^#' | sort -u | wc -l)}
variants=("base:LOUPE_CPU_CACHE=0 LOUPE_CONV_WINOGRAD=0" "cache:LOUPE_CONV_WINOGRAD=0"
          "winograd:LOUPE_CPU_CACHE=0" "default:")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -d .ref/src/diffusers ] || { echo "cpu_variants: .ref/src/diffusers is missing (tests/fixtures/gen/README.md)"; exit 1; }
diffusers() {  # diffusers fp32, the same case, weights and threads
  echo "== diffusers fp32 ($1)" >&2
  PYTHONPATH=.ref/src:tests/fixtures/gen/shims:bench LOUPE_REF_SHIM=refshim /usr/bin/python3 bench/sd_reference.py run \
    "$weights" "$tmp/diffusers-$1.json" --device cpu --dtype fp32 --threads "$threads" --steps 0 --size sd15 \
    --resolution 512 --cases "$case" > "$tmp/diffusers-$1.log" 2>&1 || { tail -20 "$tmp/diffusers-$1.log" >&2; exit 1; }
}
diffusers before
for v in "${variants[@]}"; do
  name=${v%%:*} envs=${v#*:}
  echo "== $name ($envs)" >&2
  env $envs "$build/bin/loupe-bench-sd" --size sd15 --device cpu --dtype fp32 --steps 0 --threads "$threads" \
    --resolution 512 --cases "$case" --weights "$weights" > "$tmp/$name.json"
  echo "$envs" > "$tmp/$name.env"
done
diffusers after
/usr/bin/python3 - "$out" "$case" "$tmp" "$threads" "${variants[@]%%:*}" <<'EOF'
import json, os, platform, subprocess, sys
out, case, tmp, threads, names = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
key = {"vae": "vae_decode", "unet": "unet_cfg2_step"}[case]
refs = {w: json.load(open(os.path.join(tmp, f"diffusers-{w}.json"))) for w in ("before", "after")}
ref_ms = sum(r[key + "_ms"] for r in refs.values()) / 2
ref_rss = max(r["process_peak_rss_bytes"] for r in refs.values())
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
cases = {}
for n in names:
    r = json.load(open(os.path.join(tmp, n + ".json")))
    env = open(os.path.join(tmp, n + ".env")).read().strip()
    cases[n] = {"environment": env or "(defaults)", key + "_ms": r[key + "_ms"], key + "_cpu_ms": r[key + "_cpu_ms"],
                "process_peak_rss_bytes": r["process_peak_rss_bytes"],
                "speedup_vs_diffusers": round(ref_ms / r[key + "_ms"], 3),
                "rss_vs_diffusers": round(r["process_peak_rss_bytes"] / ref_rss, 2)}
    if r.get("cpu_block_cache_stats"):
        cases[n]["cpu_block_cache_stats"] = r["cpu_block_cache_stats"]
json.dump({"benchmark": f"SD 1.5 {case} at 512 x 512, fp32: the CPU block cache (core/cpu_cache.h) and Winograd "
                        "convolutions (nn/conv.cpp) on and off, each run alone in its process (bench/cpu_variants.sh), "
                        "against diffusers fp32 on the same random weights run before and after them",
           "machine": {"cpu": cpu, "threads": threads, "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")},
           "environment": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "LOUPE_NUM_THREADS")},
           "versions": refs["before"].get("versions"),
           "git_head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "diffusers-fp32": {w: {key + "_ms": r[key + "_ms"], key + "_cpu_ms": r.get(key + "_cpu_ms"),
                                  "process_peak_rss_bytes": r["process_peak_rss_bytes"]} for w, r in refs.items()},
           "cases": cases},
          open(out, "w"), indent=1)
print(json.dumps(cases, indent=1))
EOF
