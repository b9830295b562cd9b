#!/usr/bin/env bash
# shards.sh -- sampling split into --offset shards (as a Slurm job array or make -j would run it)
# concatenates to the one-process stream. Usage: examples/shards.sh [SHARDS] (default 4); the
# tools on PATH or in .build/release. An analytic predictor stands in for a model file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PATH="$here/.build/release:$PATH"
k=${1:-4}
n=2000
per=$((n / k))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
spec='mixture mu=-1,1 sigma=0.3,0.5'
for ((i = 0; i < k; i++)); do
    denoise --analytic "$spec" --shape 8 -n $per --offset $((i * per)) --batch 100 --steps 50 --quiet > "$dir/part$i.st" &
done
wait
for ((i = 0; i < k; i++)); do cat "$dir/part$i.st"; done > "$dir/sharded.st"
denoise --analytic "$spec" --shape 8 -n $((per * k)) --batch 100 --steps 50 --quiet > "$dir/one.st"
cmp "$dir/sharded.st" "$dir/one.st" && echo "shards.sh: $k shards of $per samples = one process, byte for byte"
