#!/usr/bin/env bash
# results-hashes.sh -- runs a fixed set of commands through the whole toolkit and prints the
# SHA-256 of every output (tensors and metadata apart), one line each. Run it before and after
# a refactor that must keep every result the same; compare with scripts/results-hashes.txt (from
# the last main whose results were accepted):
#
#   scripts/results-hashes.sh > /tmp/now.txt && diff scripts/results-hashes.txt /tmp/now.txt
#
# BIN=dir picks the tools (default .build/release); WORK=dir keeps the outputs (default a temp dir).
# Batched GEMMs round by thread count: compare runs on machines with the same cores. About 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
BIN=$(cd "$BIN" && pwd)
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
export PATH="$BIN:$PATH"
# The data files are copied in so that no path of this machine reaches the outputs' metadata.
cp data/mnist-10k/train-images-idx3-ubyte.gz data/mnist-10k/train-labels-idx1-ubyte.gz "$WORK"/
cd "$WORK"
IMAGES=train-images-idx3-ubyte.gz
LABELS=train-labels-idx1-ubyte.gz
q=--quiet

# Data and the forward process.
schedule > lin.st
schedule --cosine --text > cos.tsv
schedule --sigmoid -T 500 > sig.st
tensor toy swissroll -n 4000 --seed 3 > roll.st
noise -t 0,250,999 --seed 4 < roll.st > roll-noised.st
noise --random-t --seed 5 --schedule sig.st < roll.st > roll-pairs.st
tensor from-idx "$IMAGES" "$LABELS" --limit 512 > digits.st
tensor from-idx "$IMAGES" "$LABELS" --limit 8 > digits8.st

# Training: MLP (simple and hybrid), U-Net (conditional), classifiers.
train --data roll.st --arch mlp --width 64 --depth 2 --steps 300 --batch 128 --seed 1 $q -o mlp.st
train --data roll.st --arch mlp --width 64 --depth 2 --steps 200 --batch 128 --loss hybrid --seed 2 $q -o mlp-hybrid.st
train --data roll.st --arch mlp --width 64 --depth 2 --steps 200 --batch 128 --seed 1 --checkpoint ck.st --every 100 $q -o ck-run.bin
train --data roll.st --resume ck.st --steps 300 $q -o mlp-resumed.st
train --data digits.st --channels 8 --mults 1,2 --res-blocks 1 --attn 14 --dropout 0 --batch 16 --lr 1e-3 --steps 40 --seed 1 $q -o unet.st
train --data digits.st --channels 8 --mults 1,2 --res-blocks 1 --attn "" --loss hybrid --batch 8 --steps 20 --seed 2 $q -o unet-hybrid.st
train --data digits.st --classifier --channels 8 --mults 1,2 --batch 16 --steps 30 --seed 3 $q -o clf.st

# Sampling: DDPM, DDIM, respaced, clipped, guided (both kinds), SDEdit, trajectory, corrector, score, bound.
denoise --model mlp.st -n 300 --seed 1 $q > s-ddpm.st
denoise --model mlp.st -n 300 --seed 1 --sampler ddim --steps 50 $q > s-ddim.st
denoise --model mlp.st -n 300 --seed 1 --sampler ddim --steps 20 --eta 1 --spacing trailing $q > s-ddim-eta.st
denoise --model mlp.st -n 100 --seed 2 --steps 100 --spacing linspace --variance beta --every 25 $q > s-respaced.st
denoise --model mlp-hybrid.st -n 100 --seed 3 --steps 100 $q > s-learned.st
denoise --model mlp.st -n 50 --seed 4 --steps 50 --corrector-steps 1 $q > s-pc.st
denoise --analytic 'mixture mu=-1,1 sigma=0.2' --shape 2 -n 200 --seed 5 --steps 100 $q > s-analytic.st
denoise --analytic 'mixture mu=-1,1 sigma=0.2 null=0,1' --shape 2 -n 100 --label 1 --guidance 2 --guidance-rescale 0.5 --steps 50 --sampler ddim $q > s-analytic-cfg.st
denoise --model unet.st -n 8 --label 3 --guidance 3 --sampler ddim --steps 10 --clip --seed 1 $q > s-unet-cfg.st
denoise --model unet.st -n 4 --sampler ddim --steps 10 --seed 2 $q > s-unet-null.st
denoise --model unet-hybrid.st -n 4 --steps 20 --seed 3 $q > s-unet-learned.st
denoise --model unet.st --classifier clf.st --classifier-scale 2 --label 5 -n 4 --sampler ddim --steps 10 --seed 4 $q > s-unet-clf.st
noise -t 500 --seed 6 < digits8.st | denoise --model unet.st --from 500 --sampler ddim --steps 10 --spacing trailing --every 5 --clip --seed 1 $q > s-sdedit.st
noise -t 300 --seed 7 < roll.st | denoise --model mlp.st --from 300 --score $q > score.st
denoise --predictor "guide --model mlp.st" --shape 2 -n 50 --steps 20 --sampler ddim --seed 8 $q > s-predictor.st
denoise --predictor "guide --model unet.st --scale 2" --label 1 --shape 1,28,28 -n 2 --steps 5 --sampler ddim --seed 9 $q > s-predictor-cfg.st
tensor toy swissroll -n 200 --seed 9 | denoise --model mlp.st --nll --nll-steps 20 --terms $q > nll-mlp.tsv
tensor from-idx "$IMAGES" --limit 16 | denoise --model unet.st --nll --nll-steps 10 $q > nll-unet.txt
tensor from-idx "$IMAGES" "$LABELS" --limit 64 | classify --classifier clf.st $q > classified.st

# Each stream file: one hash of its tensors (every frame's names, dtypes, shapes and bytes, in
# order) and one of its metadata, so that a change of metadata alone (new keys in a model file)
# shows apart from a change of results. Text outputs are hashed whole.
python3 - *.st *.tsv *.txt <<'PY'
import hashlib, json, struct, sys
for path in sys.argv[1:]:
    raw = open(path, 'rb').read()
    if not path.endswith('.st'):
        print(hashlib.sha256(raw).hexdigest()[:16], '-' * 16, path)
        continue
    ht, hm, pos = hashlib.sha256(), hashlib.sha256(), 0
    while pos < len(raw):
        (n,) = struct.unpack_from('<Q', raw, pos)
        header = json.loads(raw[pos + 8:pos + 8 + n])
        body = raw[pos + 8 + n:]
        meta = header.pop('__metadata__', {})
        hm.update(json.dumps(meta, sort_keys=True).encode())
        end = 0
        for name in sorted(header):
            e = header[name]
            a, b = e['data_offsets']
            ht.update(json.dumps([name, e['dtype'], e['shape']]).encode())
            ht.update(body[a:b])
            end = max(end, b)
        pos += 8 + n + end
    print(ht.hexdigest()[:16], hm.hexdigest()[:16], path)
PY
