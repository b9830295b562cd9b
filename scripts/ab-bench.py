#!/usr/bin/env python3
"""Interleaved A/B of two ddpm-bench command lines: A B A B ... for PAIRS pairs, then per key the
median of the pairwise ratios (value_B / value_A for rates, A / B for times: > 1 means B is
faster) with its min and max. The machine drifts 20-30 % between blocks of minutes, so only
pairwise ratios taken seconds apart are compared.

usage: scripts/ab-bench.py PAIRS 'ENV=.. cmd A' 'ENV=.. cmd B'   (each prints ddpm-bench JSON)
"""
import json, statistics, subprocess, sys

def run(cmd):
    out = subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["figures"]

pairs, a_cmd, b_cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ratios = {}
for i in range(pairs):
    a, b = run(a_cmd), run(b_cmd)
    for key, fa in a.items():
        fb = b.get(key)
        if not fb or "median_s" not in fa:
            continue
        r = fa["median_s"] / fb["median_s"]   # time A / time B: > 1 when B is faster
        ratios.setdefault(key, []).append(r)
    print(f"pair {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in ratios.items()), file=sys.stderr)
print(f"{'key':28s} median(time A / time B)  min..max  ({pairs} pairs)")
for key, v in ratios.items():
    print(f"{key:28s} {statistics.median(v):.3f}x  {min(v):.3f}..{max(v):.3f}")
