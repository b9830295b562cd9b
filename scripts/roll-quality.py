#!/usr/bin/env python3
"""roll-quality.py -- how well 2-D samples lie on the swiss roll (docs/RESULTS.md, section 3a).

    python3 scripts/roll-quality.py REFERENCE.st SAMPLES.st...

For each SAMPLES stream (frames with 'x' [N, 2], the output of `denoise`), prints the fraction of
its first 2000 points farther than 0.06 (3 sigma of `tensor toy swissroll`'s jitter) from the
noiseless roll t (cos t, sin t) / (4.5 pi), t in [1.5 pi, 4.5 pi], their median distance to it,
and the sliced W2 distance (2000 random directions) to the first 2000 points of REFERENCE.
Needs numpy only; not part of the test suite.
"""
import json, struct, sys
import numpy as np


def frames(path):
    data = open(path, "rb").read()
    o = 0
    while o < len(data):
        n = struct.unpack("<Q", data[o:o + 8])[0]
        header = json.loads(data[o + 8:o + 8 + n])
        base = end = o + 8 + n
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            s, e = v["data_offsets"]
            end = max(end, base + e)
            if v["dtype"] == "F32":
                out[k] = np.frombuffer(data[base + s:base + e], dtype="<f4").reshape(v["shape"])
        yield out
        o = end


def points(path, n=2000):
    x = np.concatenate([f["x"] for f in frames(path) if "x" in f and f["x"].ndim == 2])
    return x[:n].astype(np.float64)


def sliced_w2(a, b, directions=2000, seed=0):
    theta = np.random.default_rng(seed).uniform(0, 2 * np.pi, directions)
    d = np.stack([np.cos(theta), np.sin(theta)])
    return float(np.sqrt(np.mean((np.sort(a @ d, axis=0) - np.sort(b @ d, axis=0)) ** 2)))


def curve_distance(a):
    t = np.linspace(1.5 * np.pi, 4.5 * np.pi, 200001)
    c = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (4.5 * np.pi)
    out = np.empty(len(a))
    for i in range(0, len(a), 200):
        q = a[i:i + 200]
        coarse = ((q[:, None, :] - c[None, ::20, :]) ** 2).sum(-1).argmin(1) * 20
        best = np.full(len(q), np.inf)
        for o in range(-20, 21):   # refine around the nearest coarse point
            j = np.clip(coarse + o, 0, len(c) - 1)
            best = np.minimum(best, ((q - c[j]) ** 2).sum(-1))
        out[i:i + 200] = np.sqrt(best)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ref = points(sys.argv[1])
    print("file  off-roll(>0.06)  median-distance  sliced-W2")
    for p in sys.argv[2:]:
        x = points(p)
        d = curve_distance(x)
        print(f"{p}  {(d > 0.06).mean():.4f}  {np.median(d):.4f}  {sliced_w2(x, ref):.4f}")
