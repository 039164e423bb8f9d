#!/usr/bin/env python3
"""Sums the per-executable "N passed, M failed" lines from meson's test logs
into one closing line, and fails if any case or any test executable failed
(a crash counts even when it printed nothing)."""
import json
import re
import sys

total_pass = total_fail = 0
bad_runs = []
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"missing test log {path}: {e}")
        total_fail += 1
        continue
    for line in lines:
        t = json.loads(line)
        label = f"{path.split('/')[0]}:{t['name']}"
        m = re.findall(r"^(\d+) passed, (\d+) failed(?:, \d+ skipped)?$", t.get("stdout", ""), re.M)
        if m:
            p, f = map(int, m[-1])
            total_pass += p
            total_fail += f
            print(f"  {label:32s} {p} passed, {f} failed")
        if t["result"] != "OK":
            bad_runs.append(f"{label} ({t['result']})")
if bad_runs:
    print("test executables that did not finish cleanly: " + ", ".join(bad_runs))
    total_fail += len(bad_runs) if total_fail == 0 else 0
print(f"total: {total_pass} passed, {total_fail} failed")
sys.exit(1 if total_fail or bad_runs else 0)
