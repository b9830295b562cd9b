#!/usr/bin/env bash
# bench-diffusers-cifar.sh -- the full-width google/ddpm-cifar10-32 network (35.7 M parameters,
# random weights, diffusers layout) on the CPU, diffusers and ours interleaved A B A B, 2 threads.
#   forward, batch b: diffusers = the median of 3 timed forwards in one process; ours =
#     (time of `denoise --sampler ddim --steps 4` - time of `--steps 1`) / 3, i.e. one forward of
#     the batch (loading and sampler set-up cancel).
#   ddim50 (DDIM=1): 64 images, 50 DDIM steps end to end: diffusers' DDIMScheduler loop against
#     `denoise --sampler ddim --steps 50 -n 64`, each timed whole (process start included for ours).
# Each pair prints both rates and ours / diffusers; the summary is the median of the pairwise
# ratios with their min and max (machine speed drifts between minutes: see docs/BENCHMARKS.md).
#   PY=/work/venv/bin/python scripts/bench-diffusers-cifar.sh [BATCHES (default "16 64")]
#   PAIRS=5 DDIM=1 PY=... scripts/bench-diffusers-cifar.sh "16 64"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
PAIRS=${PAIRS:-3}
DDIM=${DDIM:-0}
BIN=$(cd "${BIN:-.build/release}" && pwd)
export PATH="$BIN:$PATH"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
BATCHES=${1:-16 64}

"$PY" - "$W" <<'EOF'
import sys, torch
from diffusers import UNet2DModel
torch.manual_seed(0)
m = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), layers_per_block=2,
                downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, attention_head_dim=None)
m.save_pretrained(f"{sys.argv[1]}/cifar", safe_serialization=True)
print(f"ddpm-cifar10-32: {sum(p.numel() for p in m.parameters())} parameters; torch {torch.__version__}", file=sys.stderr)
EOF

# diffusers: prints images/s for `forward B` or `ddim50 B`
peer() {
  "$PY" - "$W/cifar" "$1" "$2" <<'EOF'
import statistics, sys, time
import torch
from diffusers import UNet2DModel, DDIMScheduler
torch.set_num_threads(2)
m = UNet2DModel.from_pretrained(sys.argv[1]).eval()
mode, b = sys.argv[2], int(sys.argv[3])
torch.manual_seed(1)
x = torch.randn(b, 3, 32, 32)
with torch.inference_mode():
    if mode == "forward":
        t = torch.full((b,), 500)
        m(x, t)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter(); m(x, t); runs.append(time.perf_counter() - t0)
        print(b / statistics.median(runs))
    else:
        s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
        s.set_timesteps(50)
        t0 = time.perf_counter()
        for t in s.timesteps:
            x = s.step(m(x, t).sample, t, x, eta=0.0).prev_sample
        print(b / (time.perf_counter() - t0))
EOF
}
secs() { local s=$(date +%s.%N); denoise --model "$W/cifar" --sampler ddim --steps "$1" -n "$2" --seed 1 --quiet > /dev/null; echo "$(date +%s.%N) - $s" | bc -l; }
ours() {
  if [ "$1" = forward ]; then local a=$(secs 1 "$2") c=$(secs 4 "$2"); echo "$2 * 3 / ($c - $a)" | bc -l
  else echo "$2 / $(secs 50 "$2")" | bc -l; fi
}
summary() { sort -g | awk '{r[NR]=$1} END {m = NR % 2 ? r[(NR+1)/2] : (r[NR/2] + r[NR/2+1]) / 2; printf "median %.2fx (min %.2fx, max %.2fx, %d pairs)\n", m, r[1], r[NR], NR}'; }

cases=""
for b in $BATCHES; do cases="$cases forward:$b"; done
[ "$DDIM" = 1 ] && cases="$cases ddim50:64"
echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; DDPM_GEMM=${DDPM_GEMM:-auto}"
for c in $cases; do
  mode=${c%%:*} b=${c##*:}
  : > "$W/ratios"
  for p in $(seq "$PAIRS"); do
    d=$(peer "$mode" "$b"); o=$(ours "$mode" "$b")
    r=$(echo "$o / $d" | bc -l)
    printf '%s batch %s pair %d: diffusers %.2f img/s, ours %.2f img/s, ratio %.2fx\n' "$mode" "$b" "$p" "$d" "$o" "$r"
    echo "$r" >> "$W/ratios"
  done
  printf '%s batch %s: ' "$mode" "$b"; summary < "$W/ratios"
done
