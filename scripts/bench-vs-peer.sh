#!/usr/bin/env bash
# Side by side with the PyTorch peer (../shared/peers), interleaved: PAIRS rounds of (peer, ours),
# each round one run of every key of the sections on both, so each pair of figures is taken
# minutes apart at most; the table gives per key the median of the pairwise ratios (ours / peer
# for rates, peer / ours for times) with their min and max, and both medians.
# Usage: scripts/bench-vs-peer.sh [sections (unet,cond,mlp)] [pairs (5)] [repeats per run (1)]
# Needs the peer's virtual environment: PEER=/path/to/python (default ~/venvs/ddpm-peer/bin/python),
# made as ../shared/peers/README.md says. Run it on a quiet machine: both use the 2 cores.
# The environment is passed through unchanged (OPENBLAS_CORETYPE, DDPM_GEMM): state it with the figures.
# OURS=path/to/ddpm-bench runs another build of ours (default: build and run .build/release's);
# PEER_ENV="VAR=value ..." is added to the peer's environment (bench-isa-matrix.sh uses both).
set -euo pipefail
cd "$(dirname "$0")/.."
sections=${1:-unet,cond,mlp}
pairs=${2:-5}
repeats=${3:-1}
PEER=${PEER:-$HOME/venvs/ddpm-peer/bin/python}
peerdir=${PEERDIR:-../shared/peers}
out=${OUTDIR:-.build/vs-peer}
mkdir -p "$out"
if [ -z "${OURS:-}" ]; then swift build -c release --product ddpm-bench >/dev/null; OURS=.build/release/ddpm-bench; fi
echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; DDPM_GEMM=${DDPM_GEMM:-auto}" >&2
for p in $(seq "$pairs"); do
  echo "pair $p/$pairs: peer" >&2
  env ${PEER_ENV:-} "$PEER" "$peerdir/bench_torch.py" --sections "$sections" --repeats "$repeats" --threads 2 --out "$out/peer-$p.json"
  echo "pair $p/$pairs: ours" >&2
  "$OURS" --sections "$sections" --repeats "$repeats" --threads 2 > "$out/ours-$p.json"
done
python3 scripts/compare-peer.py "$out" "$pairs"
