#!/usr/bin/env python3
"""Sample-quality figures from `classify` output streams (numpy only).

usage: evaluate.py --reference classified-test.st NAME=classified-samples.st ...

Each stream holds frames with 'features' F32 [N,W] (the classifier's penultimate layer),
'logits' F32 [N,K], 'pred' I64 [N] and, when labelled, 'y' I64 [N] (docs/FORMAT.md: 8-byte
little-endian header length, JSON header, tensor bytes; frames back to back).

Prints, for the reference (the test set): the classifier's accuracy; for every sample set:
n, the fraction classified as its intended label (when the set has 'y'), and the Frechet
distance to the reference, FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
(Heusel et al. 2017, eq. 6 with the classifier's features in place of Inception's), on the
features and on the logits. FD from few samples is biased upwards: compare sets of equal n.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_stream(path):
    """All frames of a stream: list of {name: array}."""
    frames = []
    with open(path, "rb") as f:
        data = f.read()
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from("<Q", data, at)
        header = json.loads(data[at + 8 : at + 8 + n])
        base = at + 8 + n
        end = base
        frame = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            lo, hi = info["data_offsets"]
            frame[name] = np.frombuffer(data[base + lo : base + hi], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
            end = max(end, base + hi)
        frames.append(frame)
        at = end
    return frames


def gather(path):
    frames = [f for f in read_stream(path) if "features" in f]
    if not frames:
        sys.exit(f"evaluate.py: {path}: no frames with 'features' (run classify on it)")
    out = {k: np.concatenate([f[k] for f in frames]) for k in ("features", "logits", "pred")}
    if all("y" in f for f in frames):
        out["y"] = np.concatenate([f["y"] for f in frames])
    return out


def sqrtm_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(a, b):
    """FD between Gaussians fitted to the rows of a and b (float64)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r = sqrtm_psd(s1)
    cross = np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(cross).sum())


def main(argv):
    if len(argv) < 3 or argv[1] != "--reference":
        sys.exit(__doc__)
    ref = gather(argv[2])
    print(f"reference {argv[2]}: n = {len(ref['pred'])}", end="")
    if "y" in ref:
        print(f", classifier accuracy = {np.mean(ref['pred'] == ref['y']):.4f}", end="")
    print()
    print(f"{'set':<16} {'n':>6} {'as-labelled':>12} {'FD features':>12} {'FD logits':>10}")
    for spec in argv[3:]:
        name, _, path = spec.partition("=")
        s = gather(path)
        hit = f"{np.mean(s['pred'] == s['y']):.3f}" if "y" in s else "-"
        print(f"{name:<16} {len(s['pred']):>6} {hit:>12} {frechet(s['features'], ref['features']):>12.3f} "
              f"{frechet(s['logits'], ref['logits']):>10.3f}")


if __name__ == "__main__":
    main(sys.argv)
