#!/usr/bin/env bash
# make.sh -- how these fixtures were written: model, checkpoint and classifier files from the
# tools of main aa8822e (before NetworkConfig), and what those tools made of them (samples,
# classified frames, a resumed run). ConfigTests loads them with the current code and reruns the
# same commands: files of older versions must keep loading and giving the same numbers.
# img8.st: 32 labelled 8x8 images (4 classes: bright top / bottom / left / right half, 8-bit
# values scaled to [-1, 1]), written by a few lines of Python (struct + json).
# Do not regenerate unless the format changes on purpose: BIN=dir ./make.sh
set -euo pipefail
cd "$(dirname "$0")"
B=${BIN:?BIN=directory of the old tools}
$B/tensor toy swissroll -n 500 --seed 1 > roll500.st
$B/train --data roll500.st --arch mlp --width 16 --depth 2 --steps 5 --batch 32 --seed 1 --checkpoint mlp-ck.st --quiet -o mlp.st
$B/train --data roll500.st --resume mlp-ck.st --steps 8 --quiet -o mlp-resumed.st
$B/train --data img8.st --channels 4 --mults 1,2 --res-blocks 1 --attn 4 --heads 2 --groups 2 --loss hybrid --batch 8 --steps 3 --seed 1 --quiet -o unet8.st
$B/train --data img8.st --classifier --channels 4 --mults 1,2 --groups 2 --batch 8 --steps 3 --seed 2 --quiet -o clf8-unet.st
$B/train --data img8.st --classifier --arch mlp --width 16 --batch 8 --steps 3 --seed 3 --quiet -o clf8-mlp.st
$B/denoise --model mlp.st -n 16 --steps 10 --seed 1 --quiet > mlp.samples.st
$B/denoise --model unet8.st -n 2 --label 1 --steps 5 --seed 1 --quiet > unet8.samples.st
$B/classify --classifier clf8-unet.st --quiet < img8.st > clf8-unet.classified.st
$B/classify --classifier clf8-mlp.st --quiet < img8.st > clf8-mlp.classified.st
