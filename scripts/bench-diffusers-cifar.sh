#!/usr/bin/env bash
# bench-diffusers-cifar.sh -- the full-width google/ddpm-cifar10-32 network (35.7 M parameters,
# random weights, diffusers layout) forward on the CPU, diffusers and ours back to back, 2 threads.
# Ours: `denoise --model DIR --sampler ddim` at K1 and K2 steps, the difference / (K2 - K1) = one
# forward of the batch (load time and sampler setup cancel). diffusers: the median of timed forwards.
#   PY=/tmp/dvenv/bin/python scripts/bench-diffusers-cifar.sh [BATCHES (default "16 64")]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
BIN=$(cd "${BIN:-.build/release}" && pwd)
export PATH="$BIN:$PATH"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
BATCHES=${1:-16 64}
"$PY" - "$W" $BATCHES <<'EOF'
import statistics, sys, time
import torch
from diffusers import UNet2DModel
torch.set_num_threads(2)
w, batches = sys.argv[1], [int(b) for b in sys.argv[2:]]
torch.manual_seed(0)
m = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), layers_per_block=2,
                downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, attention_head_dim=None).eval()
m.save_pretrained(f"{w}/cifar", safe_serialization=True)
print(f"ddpm-cifar10-32: {sum(p.numel() for p in m.parameters())} parameters; torch {torch.__version__}, 2 threads", file=sys.stderr)
for b in batches:
    x, t = torch.randn(b, 3, 32, 32), torch.full((b,), 500)
    with torch.inference_mode():
        m(x, t)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter(); m(x, t); runs.append(time.perf_counter() - t0)
    s = statistics.median(runs)
    print(f"diffusers forward batch {b}: {s:.3f} s = {b / s:.1f} img/s")
EOF
for b in $BATCHES; do
  t() { local s=$(date +%s.%N); denoise --model "$W/cifar" --sampler ddim --steps "$1" -n "$b" --seed 1 --quiet > /dev/null; echo "$(date +%s.%N) - $s" | bc; }
  a=$(t 1); c=$(t 4)
  echo "ours forward batch $b: $(echo "($c - $a) / 3" | bc -l | cut -c1-6) s = $(echo "$b * 3 / ($c - $a)" | bc -l | cut -c1-6) img/s"
done
