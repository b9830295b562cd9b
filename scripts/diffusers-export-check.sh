#!/usr/bin/env bash
# diffusers-export-check.sh -- train -> tensor to-diffusers -> diffusers' UNet2DModel.from_pretrained
# and DDPMScheduler.from_pretrained: the exported network's output equals ours (denoise score,
# eps = -score sqrt(1 - abar_t)) to about 1e-5 of its scale. Needs a Python with torch, diffusers,
# safetensors (PY=...; default python3), e.g.
#   python3 -m venv /tmp/dvenv && /tmp/dvenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
#   /tmp/dvenv/bin/pip install diffusers safetensors
#   PY=/tmp/dvenv/bin/python scripts/diffusers-export-check.sh
# BIN=dir picks the tools (default .build/release). A class-conditional, attention-at-14x14 model
# with a learned variance, trained for 50 steps on the MNIST digits of data/ (a minute on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
BIN=$(cd "${BIN:-.build/release}" && pwd)
export PATH="$BIN:$PATH"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
tensor from-idx data/mnist-10k/train-images-idx3-ubyte.gz data/mnist-10k/train-labels-idx1-ubyte.gz > "$W/mnist.st"
train --data "$W/mnist.st" --steps 50 --batch 32 --attn 14 --loss hybrid --classes 10 --seed 7 --quiet -o "$W/model.st"
tensor to-diffusers "$W/model.st" "$W/exported"
"$PY" - "$W" <<'EOF'
import json, subprocess, sys
import numpy as np, torch
from safetensors.numpy import save as st_save
from diffusers import DDPMScheduler, UNet2DModel
w = sys.argv[1]
unet = UNet2DModel.from_pretrained(f"{w}/exported/unet").eval()
sched = DDPMScheduler.from_pretrained(f"{w}/exported/scheduler")
c, s = unet.config.in_channels, unet.config.sample_size
g = torch.Generator().manual_seed(1)
x = torch.randn((4, c, s, s), generator=g)
t = torch.tensor([999, 500, 100, 0])
kw = {}
tensors = {"x": x.numpy(), "t": t.numpy().astype(np.int64)}
if unet.config.num_class_embeds:
    y = torch.tensor([0, 3, 9, unet.config.num_class_embeds - 1])
    kw["class_labels"] = y
    tensors["y"] = y.numpy().astype(np.int64)
with torch.no_grad():
    ref = unet(x, t, **kw).sample[:, :c]          # eps (the learned-variance half dropped)
frame = st_save(tensors, metadata={"kind": "batch"})
out = subprocess.run(["denoise", "score", "--model", f"{w}/model.st", "--quiet"], input=frame, capture_output=True, check=True).stdout
n = int.from_bytes(out[:8], "little")
header = json.loads(out[8:8 + n])
e = header["score"]
score = np.frombuffer(out[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]], dtype=np.float32).reshape(e["shape"])
# abar in double from the exported config (diffusers' own alphas_cumprod is float32: at t = 0,
# 1 - abar = 1e-4 would carry a relative error of 6e-4)
assert sched.config.beta_schedule == "linear" and sched.config.trained_betas is None
betas = np.linspace(sched.config.beta_start, sched.config.beta_end, sched.config.num_train_timesteps, dtype=np.float64)
abar = np.cumprod(1 - betas)[t.numpy()]
eps = -score * np.sqrt(1 - abar)[:, None, None, None]
rel = np.abs(eps - ref.numpy()).max() / np.abs(ref.numpy()).max()
per_t = [float(np.abs(eps[i] - ref.numpy()[i]).max() / np.abs(ref.numpy()).max()) for i in range(len(t))]
print("per timestep " + ", ".join(f"t={int(a)}: {b:.1e}" for a, b in zip(t, per_t)))
print(f"exported {sum(p.numel() for p in unet.parameters())} parameters; diffusers vs denoise score: relative error {rel:.2e}")
sys.exit(0 if rel < 1e-5 else 1)
EOF
