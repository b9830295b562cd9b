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
DDPM_ISA=avx2 swift build -c release --scratch-path .build-avx2 --product ddpm-bench >/dev/null
echo "both AVX2: the peer restricted, ours the DDPM_ISA=avx2 build" >&2
OUTDIR=${OUTDIR:-.build/isa-avx2} OURS=.build-avx2/release/ddpm-bench PEER="$PEER" PEERDIR="$peerdir" \
  PEER_ENV="ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2" \
  scripts/bench-vs-peer.sh "$sections" "$pairs" "$repeats"
