#!/usr/bin/python3
"""Throughput of loupe-batch (tools/loupe-batch): items/s for one task over generated images with 1
and 2 local Dask workers (or --workers-list). JSON on stdout; with --out, the file is written only if
the machine was quiet (1-minute load average at most --max-load before each run, waiting up to
--settle seconds for it to fall), since other work on the cores distorts the scaling. The load
averages before and after (which includes the run itself) are in the JSON.

    LOUPE_LIBRARY=build/lib/libloupe.so.0 bench/batch_bench.py --model tests/fixtures/florence2/tiny \
        --set max_new_tokens=16 --items 48 --out bench/results/batch-florence2-tiny.json
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(os.path.dirname(HERE), "tools", "loupe-batch", "loupe-batch")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--task", default="caption")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--size", type=int, default=256, help="generated images are SIZE x SIZE")
    ap.add_argument("--workers-list", default="1,2", help="runs: N workers, or N:T for T CPU threads each "
                    "(default threads: cores / workers)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    ap.add_argument("--max-load", type=float, default=max(0.5, 0.25 * (os.cpu_count() or 1)))
    ap.add_argument("--settle", type=float, default=240, help="seconds to wait for the load to fall before each run")
    a = ap.parse_args()

    import numpy as np
    from PIL import Image

    tmp = tempfile.mkdtemp(prefix="loupe-batch-bench-")
    try:
        images = os.path.join(tmp, "images")
        os.makedirs(images)
        rng = np.random.RandomState(0)
        for i in range(a.items):
            Image.fromarray((rng.rand(a.size, a.size, 3) * 255).astype(np.uint8)).save(
                os.path.join(images, "img%04d.png" % i))
        runs, quiet = [], True
        for spec in a.workers_list.split(","):
            n, _, threads = spec.partition(":")
            n, threads = int(n), int(threads) if threads else max(1, (os.cpu_count() or 1) // int(n))
            out = os.path.join(tmp, "out-%s" % spec.replace(":", "x"))
            # the 1-minute load average falls slowly after earlier work (a previous run included):
            # wait up to --settle seconds for it to come down before each run
            deadline = time.time() + a.settle
            while os.getloadavg()[0] > a.max_load and time.time() < deadline:
                time.sleep(5)
            load_before = os.getloadavg()
            t = time.time()
            cmd = [sys.executable, TOOL, a.task, "--model", a.model, "--input", images, "--output", out,
                   "--workers", str(n), "--threads", str(threads), "--device", a.device, "--quiet"]
            for kv in a.set:
                cmd += ["--set", kv]
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            wall = time.time() - t
            load_after = os.getloadavg()
            if p.returncode != 0:
                sys.exit("loupe-batch failed (%d):\n%s" % (p.returncode, p.stdout))
            with open(os.path.join(out, "summary.json")) as f:
                s = json.load(f)
            with open(os.path.join(out, "results.jsonl")) as f:
                secs = [json.loads(line)["seconds"] for line in f]
            secs.sort()
            # the load after includes the run's own processes: recorded, not judged
            quiet = quiet and load_before[0] <= a.max_load
            runs.append({"workers": n, "threads_per_worker": threads,
                         "items": s["processed"], "items_per_second": s["items_per_second"],
                         "startup_seconds": s["startup_seconds"], "wall_seconds": round(wall, 3),
                         "item_seconds_median": secs[len(secs) // 2], "item_seconds_max": secs[-1],
                         "load_average_before": [round(v, 2) for v in load_before],
                         "load_average_after": [round(v, 2) for v in load_after]})
        base = runs[0]["items_per_second"]
        for r in runs:
            r["speedup_vs_%d_worker" % runs[0]["workers"]] = round(r["items_per_second"] / base, 3) if base else None
        result = {"benchmark": "loupe-batch", "task": a.task, "model": os.path.abspath(a.model),
                  "parameters": a.set, "image_size": a.size, "device": a.device, "cpu_count": os.cpu_count(),
                  "machine": platform.machine(), "python": platform.python_version(), "runs": runs,
                  "quiet": quiet, "max_load": a.max_load,
                  "note": "items/s from the workers being up (includes each worker's first model open and "
                          "warm-up); local cluster, 1 Dask thread per worker process, CPU threads = cores / "
                          "workers unless given as N:T"}
        print(json.dumps(result, indent=1))
        if a.out:
            if quiet:
                os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
                with open(a.out, "w") as f:
                    json.dump(result, f, indent=1)
                    f.write("\n")
                print("written: %s" % a.out, file=sys.stderr)
            else:
                print("not written: the machine was busy (load average above %.2f)" % a.max_load, file=sys.stderr)
                return 3
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
