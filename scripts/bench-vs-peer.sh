#!/usr/bin/env bash
# Side by side with the PyTorch peer (../shared/peers): peer, project, peer again (brackets drift),
# then one table of both figures per key and the ratio (ours / peer for rates, peer / ours for times).
# Usage: scripts/bench-vs-peer.sh [sections (unet,cond,mlp)] [repeats (3)]
# Needs the peer's virtual environment: PEER=/path/to/python (default ~/venvs/ddpm-peer/bin/python),
# made as ../shared/peers/README.md says. Run it on a quiet machine: both use the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
sections=${1:-unet,cond,mlp}
repeats=${2:-3}
PEER=${PEER:-$HOME/venvs/ddpm-peer/bin/python}
peerdir=${PEERDIR:-../shared/peers}
mkdir -p .build
swift build -c release --product ddpm-bench >/dev/null
"$PEER" "$peerdir/bench_torch.py" --sections "$sections" --repeats "$repeats" --threads 2 --out .build/peer-1.json
.build/release/ddpm-bench --sections "$sections" --repeats "$repeats" --threads 2 > .build/ours.json
"$PEER" "$peerdir/bench_torch.py" --sections "$sections" --repeats "$repeats" --threads 2 --out .build/peer-2.json
python3 scripts/compare-peer.py .build/peer-1.json .build/ours.json .build/peer-2.json
