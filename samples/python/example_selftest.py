#!/usr/bin/env python3
"""Runs the device self-test and prints the diagnostics' problems: the first thing to try when
Loupe misbehaves. Usage: LOUPE_LIBRARY=build/lib/libloupe.so.0 python3 example_selftest.py [device]"""
import sys

import loupe

device = sys.argv[1] if len(sys.argv) > 1 else "auto"
with loupe.Runtime(device=device) as rt:
    print("Loupe", loupe.version(), "on", rt.device)
    res = rt.selftest(progress=lambda step, total, stage, _: print(f"  {stage} {step}/{total}"))
    print(res.text)
    for p in rt.diagnostics()["problems"]:
        print(f"[{p['severity']}] {p['message']} -> {p['remedy']}")
