#!/usr/bin/env bash
# Throughput of `noise` against `cat` on the same pipe (docs/BENCHMARKS-forward.md).
# Usage: scripts/bench-noise.sh [runs]   (default 5; needs a release build and python3 + numpy + safetensors)
# Input: about 1 GiB of F32 frames x [64, 3, 64, 64] (3 MiB each) plus y, made once by scripts/gen-frames.py.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
file=${BENCH_FILE:-/tmp/ddpm-bench-x0.st}
noise=.build/release/noise
[ -x "$noise" ] || swift build -c release
[ -s "$file" ] || python3 scripts/gen-frames.py --frames 341 --n 64 > "$file"
bytes=$(stat -c %s "$file")
cat "$file" > /dev/null   # into the page cache

declare -A cases=(
  [1-cat]="cat '$file' | cat > /dev/null"
  [2-noise]="cat '$file' | $noise -t 500 > /dev/null"
  [3-noise-1thread]="cat '$file' | $noise -t 500 --threads 1 > /dev/null"
  [4-noise-from-file]="$noise -t 500 < '$file' > /dev/null"
)
out=$(mktemp)
for i in $(seq "$runs"); do
  for name in $(printf '%s\n' "${!cases[@]}" | sort); do
    # wall, user and system seconds of the whole pipeline (both processes)
    /usr/bin/time -f "$name %e %U %S" -a -o "$out" bash -c "${cases[$name]}"
  done
done
python3 - "$out" "$bytes" "$runs" <<'PY'
import sys, statistics as st
rows, cpu, n, runs = {}, {}, int(sys.argv[2]), sys.argv[3]
for line in open(sys.argv[1]):
    name, e, u, s = line.split()
    rows.setdefault(name, []).append(float(e)); cpu.setdefault(name, []).append(float(u) + float(s))
base = st.median(rows["1-cat"])
print(f"{n / 2**30:.2f} GiB, {runs} runs each, medians (min .. max); cpu = user + sys of the pipeline")
for name in sorted(rows):
    t = rows[name]; m = st.median(t)
    print(f"{name[2:]:18s} {m:6.3f} s ({min(t):.3f} .. {max(t):.3f})  {n / m / 1e9:5.2f} GB/s  {base / m:5.2f} x cat  cpu {st.median(cpu[name]):.2f} s")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "$out"
