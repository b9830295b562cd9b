#!/usr/bin/env bash
# The peer and the project, each with AVX-512 and with AVX2 kernels, in one sitting:
#   peer (AVX-512), peer (AVX2), ours (AVX2 BLAS), ours (AVX-512 BLAS), peer (AVX-512), peer (AVX2)
# then three ratio tables: the machine's default setting of each (peer AVX-512 vs ours with the
# environment's OPENBLAS_CORETYPE), both restricted to AVX2, both on AVX-512.
# The peer is held to AVX2 with ATEN_CPU_CAPABILITY=avx2 (ATen's kernels), ONEDNN_MAX_CPU_ISA=AVX2
# (oneDNN's convolutions) and MKL_ENABLE_INSTRUCTIONS=AVX2; ours with OPENBLAS_CORETYPE=Haswell /
# SkylakeX. Usage: scripts/bench-isa-matrix.sh [sections (unet,cond,mlp)] [repeats (3)]
# Needs PEER (default ~/venvs/ddpm-peer/bin/python), see ../shared/peers/README.md. Quiet machine only.
set -euo pipefail
cd "$(dirname "$0")/.."
sections=${1:-unet,cond,mlp}
repeats=${2:-3}
PEER=${PEER:-$HOME/venvs/ddpm-peer/bin/python}
peerdir=${PEERDIR:-../shared/peers}
avx2="ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2"
out=.build/isa
mkdir -p $out
swift build -c release --product ddpm-bench >/dev/null
peer() { env $1 "$PEER" "$peerdir/bench_torch.py" --sections "$sections" --repeats "$repeats" --threads 2 --out "$2"; }
ours() { env $1 .build/release/ddpm-bench --sections "$sections" --repeats "$repeats" --threads 2 > "$2"; }
peer "" $out/peer-512-1.json
peer "$avx2" $out/peer-avx2-1.json
ours "OPENBLAS_CORETYPE=Haswell" $out/ours-avx2.json
ours "OPENBLAS_CORETYPE=SkylakeX" $out/ours-512.json
peer "" $out/peer-512-2.json
peer "$avx2" $out/peer-avx2-2.json
echo "## as each runs by default here: peer AVX-512, ours OPENBLAS_CORETYPE=Haswell (set by this machine's environment)"
python3 scripts/compare-peer.py $out/peer-512-1.json $out/ours-avx2.json $out/peer-512-2.json
echo; echo "## both AVX2 (peer restricted, ours OPENBLAS_CORETYPE=Haswell)"
python3 scripts/compare-peer.py $out/peer-avx2-1.json $out/ours-avx2.json $out/peer-avx2-2.json
echo; echo "## both AVX-512 (peer default, ours OPENBLAS_CORETYPE=SkylakeX)"
python3 scripts/compare-peer.py $out/peer-512-1.json $out/ours-512.json $out/peer-512-2.json
