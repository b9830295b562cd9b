#!/usr/bin/env python3
"""Table of peer vs project figures under the same keys: compare-peer.py PEER1.json OURS.json [PEER2.json]."""
import json, sys

peers = [json.load(open(p))["figures"] for p in (sys.argv[1], *sys.argv[3:])]
ours = json.load(open(sys.argv[2]))["figures"]
rate_units = {"img/s", "steps/s"}
print(f"| key | unit | peer | ours | ratio |")
print(f"|---|---|---:|---:|---:|")
for key in sorted(ours):
    vals = [p[key]["value"] for p in peers if key in p]
    if not vals:
        continue
    peer = sum(vals) / len(vals)
    mine = ours[key]["value"]
    unit = ours[key]["unit"]
    ratio = mine / peer if unit in rate_units else peer / mine
    spread = f" ({min(vals):.3g}..{max(vals):.3g})" if len(vals) > 1 else ""
    print(f"| `{key}` | {unit} | {peer:.4g}{spread} | {mine:.4g} | **{ratio:.2f}x** |")
