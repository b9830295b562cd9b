#!/usr/bin/env bash
# The peer and the project both restricted to AVX2, interleaved as bench-vs-peer.sh does
# (PAIRS rounds of (peer, ours), median of the pairwise ratios and their spread), on a machine
# with AVX-512. The peer is held to AVX2 with ATEN_CPU_CAPABILITY=avx2 (ATen's kernels),
# ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's convolutions) and MKL_ENABLE_INSTRUCTIONS=AVX2; ours is built
# with DDPM_ISA=avx2 (Package.swift: haswell code generation, our GEMM's 8 x 16 AVX2 tile) in
# .build-avx2, its GEMM chosen at run time as always (OpenBLAS's core is left as the environment
# sets it). Usage: scripts/bench-isa-matrix.sh [sections (unet,cond,mlp)] [pairs (3)] [repeats (1)]
# Needs PEER (default ~/venvs/ddpm-peer/bin/python), see ../shared/peers/README.md. Quiet machine only.
set -euo pipefail
cd "$(dirname "$0")/.."
sections=${1:-unet,cond,mlp}
pairs=${2:-3}
repeats=${3:-1}
PEER=${PEER:-$HOME/venvs/ddpm-peer/bin/python}
peerdir=${PEERDIR:-../shared/peers}
out=${OUTDIR:-.build/isa-avx2}
mkdir -p "$out"
DDPM_ISA=avx2 swift build -c release --scratch-path .build-avx2 --product ddpm-bench >/dev/null
echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; both AVX2" >&2
for p in $(seq "$pairs"); do
  echo "pair $p/$pairs: peer (AVX2)" >&2
  env ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    "$PEER" "$peerdir/bench_torch.py" --sections "$sections" --repeats "$repeats" --threads 2 --out "$out/peer-$p.json"
  echo "pair $p/$pairs: ours (AVX2 build)" >&2
  .build-avx2/release/ddpm-bench --sections "$sections" --repeats "$repeats" --threads 2 > "$out/ours-$p.json"
done
python3 scripts/compare-peer.py "$out" "$pairs"
