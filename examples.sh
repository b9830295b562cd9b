#!/usr/bin/env bash
# examples.sh -- the main job: build the toolkit, then walk the DDPM pipeline and leave the
# pictures in out/ (OUT=dir to change). Each step prints its commands and where its picture is.
# Budget: under 10 minutes on 2 cores (measured figures in docs/RESULTS.md).
#
#   ./examples.sh                   # everything
#   MNIST_STEPS=500 ./examples.sh   # a quicker, rougher digit model
#
# docs/img/ holds the pictures of one run of this script.
set -euo pipefail
cd "$(dirname "$0")"

OUT=${OUT:-out}
BIN=.build/release
MNIST_STEPS=${MNIST_STEPS:-1000}   # U-Net optimizer steps on data/mnist-10k, batch 32
ROLL_STEPS=${ROLL_STEPS:-15000}    # MLP optimizer steps on the swiss roll, batch 256
SEED=${SEED:-1}
IMAGES=data/mnist-10k/train-images-idx3-ubyte.gz
LABELS=data/mnist-10k/train-labels-idx1-ubyte.gz

START=$(date +%s)
say() { printf '\n== [%3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
# run 'CMD': print CMD, then run it (variables are expanded when it runs).
run() { printf '   $ %s\n' "$1"; eval "$1"; }
picture() { printf '   -> %s (%s bytes): %s\n' "$1" "$(wc -c < "$1" | tr -d ' ')" "$2"; }

say "build: swift build -c release"
scripts/need-libs.sh   # OpenBLAS, libpng, zlib, pkg-config: installed as root, else the apt-get line and stop
swift build -c release 2>&1 | tail -1
mkdir -p "$OUT"
export PATH="$PWD/$BIN:$PATH"

# ---------------------------------------------------------------------------------------------
say "(a) the schedule: beta_t and alpha_bar_t = prod_{s<=t} (1 - beta_s), linear vs cosine"
table() {  # every 100th row of t, beta, alpha_bar for both schedules, side by side
    paste <(schedule --text | cut -f1,2,4) <(schedule --cosine --text | cut -f2,4) | awk -F'\t' '
      NR == 1 { printf "   %5s  %-10s %-10s | %-10s %-10s\n", "t", "beta lin", "abar lin", "beta cos", "abar cos"; next }
      (NR - 2) % 100 == 0 || NR == 1001 { printf "   %5d  %-10.4g %-10.4g | %-10.4g %-10.4g\n", $1, $2, $3, $4, $5 }'
}
echo '   $ paste <(schedule --text | cut -f1,2,4) <(schedule --cosine --text | cut -f2,4) | awk ...'
table

# ---------------------------------------------------------------------------------------------
say "(b) the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)"
run 'tensor from-idx $IMAGES $LABELS --limit 4 --batch 1 \
  | noise -t 0,100,200,300,400,500,600,700,800,900,999 --seed $SEED \
  | tensor to-png --grid 11x4 --scale 2 -o $OUT/forward.png'
picture "$OUT/forward.png" "four digits (rows) at t = 0, 100, ..., 900, 999 (columns), one eps per row"

# ---------------------------------------------------------------------------------------------
say "(c) 2-D swiss roll: train an MLP noise predictor ($ROLL_STEPS steps), sample, plot"
run 'tensor toy swissroll -n 10000 --seed $SEED > $OUT/roll.st'
run 'train --data $OUT/roll.st --arch mlp --width 128 --depth 4 --fourier 6 --steps $ROLL_STEPS --batch 256 \
  --lr 1e-3 --ema 0.999 --seed $SEED --quiet -o $OUT/roll-model.st'
run 'denoise --model $OUT/roll-model.st -n 2000 --seed $SEED --quiet > $OUT/roll-samples.st'
run 'tensor scatter $OUT/roll.st $OUT/roll-samples.st --size 320 -o $OUT/swissroll.png'
picture "$OUT/swissroll.png" "data (blue) | 2000 samples, DDPM ancestral sampling, 1000 steps (orange)"

# ---------------------------------------------------------------------------------------------
say "(d) digits: a class-conditional U-Net on data/mnist-10k ($MNIST_STEPS steps of batch 32)"
run 'tensor from-idx $IMAGES $LABELS > $OUT/mnist.st'
run 'train --data $OUT/mnist.st --channels 16 --mults 1,2,2 --res-blocks 1 --attn "" --dropout 0 \
  --batch 32 --lr 1e-3 --warmup 100 --ema 0.995 --p-uncond 0.1 --steps $MNIST_STEPS --seed $SEED \
  --log $OUT/mnist-loss.csv -o $OUT/mnist-model.st'
echo "   last logged step,loss: $(tail -1 "$OUT/mnist-loss.csv")"

say "(d) 10 samples per class: DDIM 50 steps, classifier-free guidance W = 3, x_0 clipped"
run 'for y in 0 1 2 3 4 5 6 7 8 9; do
    denoise --model $OUT/mnist-model.st --label $y --guidance 3 --sampler ddim --steps 50 --clip \
      -n 10 --seed $SEED --quiet
  done > $OUT/mnist-samples.st'
run 'tensor to-png --grid 10x10 -o $OUT/mnist-samples.png < $OUT/mnist-samples.st'
picture "$OUT/mnist-samples.png" "row k: ten samples of label k"

say "(d) forward and reverse: x_0 -> x_T (noise) -> x_0 (a new digit of the same label)"
run 'tensor from-idx $IMAGES $LABELS --limit 6 > $OUT/digits6.st'
run '{ cat $OUT/digits6.st
    noise -t 250,500,750 --seed $SEED < $OUT/digits6.st
    noise -t 999 --seed $SEED < $OUT/digits6.st \
      | denoise --model $OUT/mnist-model.st --from 999 --sampler ddim --steps 50 --spacing trailing \
          --every 10 --guidance 3 --clip --seed $SEED --quiet
  } | tensor to-png --grid 6x10 -o $OUT/mnist-forward-reverse.png'
picture "$OUT/mnist-forward-reverse.png" "columns: six digits; rows: x_0; x_250, x_500, x_750 (forward); x_999, x_799, ..., x_199 (reverse, DDIM 50, W = 3); the new x_0"

say "(d) SDEdit: noise eight digits to t = 500, then denoise (conditional on their labels)"
run 'tensor from-idx $IMAGES $LABELS --limit 8 > $OUT/digits8.st'
run '{ cat $OUT/digits8.st
    noise -t 500 --seed $SEED < $OUT/digits8.st | denoise --model $OUT/mnist-model.st --from 500 \
      --sampler ddim --steps 50 --spacing trailing --every 10 --clip --seed $SEED --quiet
  } | tensor to-png --grid 8x7 --scale 2 -o $OUT/mnist-sdedit.png'
picture "$OUT/mnist-sdedit.png" "SDEdit: row 1 eight digits x_0; rows 2-6 their x_t from t = 500 down; row 7 the edited x_0"

say "done: $(($(date +%s) - START)) s in all; pictures:"
ls -1 "$OUT"/*.png | sed 's/^/   /'
