#!/usr/bin/env python3
"""Sums a Chrome trace written by loupe-bench-sd --profile (libtorch's legacy profiler) per operator:
self time (the op's time minus the ops it called), share of the total, calls.
  bench/profile_summary.py TRACE.json [TOP]"""
import json, sys
from collections import defaultdict

events = json.load(open(sys.argv[1]))
events = [e for e in (events["traceEvents"] if isinstance(events, dict) else events) if e.get("ph") == "X"]
by_tid = defaultdict(list)
for e in events:
    by_tid[e.get("tid")].append(e)
self_us, calls = defaultdict(float), defaultdict(int)
for evs in by_tid.values():
    evs.sort(key=lambda e: (e["ts"], -e["dur"]))
    stack = []
    for e in evs:
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
            stack.pop()
        if stack:
            self_us[stack[-1]["name"]] -= e["dur"]
        self_us[e["name"]] += e["dur"]
        calls[e["name"]] += 1
        stack.append(e)
total = sum(self_us.values())
print(f"total {total / 1e6:.3f} s")
for name, us in sorted(self_us.items(), key=lambda kv: -kv[1])[: int(sys.argv[2]) if len(sys.argv) > 2 else 20]:
    print(f"{us / 1e6:9.3f} s {100 * us / total:5.1f}%  {calls[name]:6d}  {name}")
