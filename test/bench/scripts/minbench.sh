#!/usr/bin/env bash
# Interleaved passes of benchmark binaries, one per commit, and the minimum
# and median ns/op of each benchmark: on a shared machine whose noise is
# larger than the change measured, the minimum is the figure least touched
# by other work, and the median says whether it is typical.
#
#   go test -c -o /tmp/bench.old ./test/bench    # at the old commit
#   go test -c -o /tmp/bench.new ./test/bench    # at the new one
#   test/bench/scripts/minbench.sh 'Codec|Fold$' 6 /tmp/bench.old /tmp/bench.new
#
# BT sets -test.benchtime (default 0.5s). Run from anywhere: the binaries
# run in test/bench.
set -euo pipefail
re=${1:?usage: minbench.sh BENCH-REGEXP PASSES BINARY...}
passes=${2:?usage: minbench.sh BENCH-REGEXP PASSES BINARY...}
shift 2
cd "$(dirname "$0")/.."
out=$(mktemp -d)
for _ in $(seq "$passes"); do
  for b in "$@"; do
    "$b" -test.run '^$' -test.bench "$re" -test.benchtime "${BT:-0.5s}" | grep '^Benchmark' >>"$out/$(basename "$b")"
  done
done
for b in "$@"; do
  echo "== $b"
  sort -k1,1 -k3n "$out/$(basename "$b")" |
    awk '{n[$1]++; v[$1, n[$1]] = $3} END {for (k in n) print k, "min", v[k, 1], "median", v[k, int((n[k] + 1) / 2)], "ns/op"}' | sort
done
rm -rf "$out"
