#!/usr/bin/env python3
"""Per key: the median of the pairwise ratios of interleaved runs and their spread.
compare-peer.py DIR PAIRS   (DIR/peer-<i>.json and DIR/ours-<i>.json, i = 1..PAIRS)"""
import json, statistics, sys

d, n = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(f"{d}/{name}"))["figures"]
peers = [load(f"peer-{i}.json") for i in range(1, n + 1)]
ours = [load(f"ours-{i}.json") for i in range(1, n + 1)]
rate_units = {"img/s", "steps/s"}
print(f"| key | unit | peer (median) | ours (median) | ratio: median (min..max) of {n} pairs |")
print("|---|---|---:|---:|---:|")
for key in sorted(ours[0]):
    pairs = [(p[key]["value"], o[key]["value"]) for p, o in zip(peers, ours) if key in p and key in o]
    if not pairs:
        continue
    unit = ours[0][key]["unit"]
    ratios = [o / p if unit in rate_units else p / o for p, o in pairs]
    pm, om = statistics.median(p for p, _ in pairs), statistics.median(o for _, o in pairs)
    print(f"| `{key}` | {unit} | {pm:.4g} | {om:.4g} | **{statistics.median(ratios):.2f}x** "
          f"({min(ratios):.2f}..{max(ratios):.2f}) |")
