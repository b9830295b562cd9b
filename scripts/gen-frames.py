#!/usr/bin/env python3
"""Writes a stream of F32 image frames (x [N,C,H,W] uniform in [-1,1]) to stdout,
for benchmarking `noise`: gen-frames.py --frames 341 --n 64 > x0.st (about 1 GiB)."""
import argparse, sys
import numpy as np
from safetensors.numpy import save

ap = argparse.ArgumentParser()
ap.add_argument("--frames", type=int, default=341)
ap.add_argument("--n", type=int, default=64)
ap.add_argument("--shape", default="3,64,64")
a = ap.parse_args()
shape = [a.n] + [int(s) for s in a.shape.split(",")]
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, size=shape).astype(np.float32)
y = np.arange(a.n, dtype=np.int64)
out = sys.stdout.buffer
for i in range(a.frames):
    out.write(save({"x": x, "y": y}, metadata={"kind": "batch", "tool": "gen-frames", "frame": str(i)}))
