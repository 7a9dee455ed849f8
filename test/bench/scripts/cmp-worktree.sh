#!/usr/bin/env bash
# Side-by-side benchmarks of two commits on one machine: the working tree
# and a worktree of BASE, interleaved pass by pass so that the machine's
# drift hits both alike, then compared with benchstat.
#
#   test/bench/scripts/cmp-worktree.sh BASE 'Codec|Decode10k|Fold$' [PASSES]
set -euo pipefail
base=${1:?usage: cmp-worktree.sh BASE BENCH-REGEXP [PASSES]}
bench=${2:?usage: cmp-worktree.sh BASE BENCH-REGEXP [PASSES]}
passes=${3:-6}
root=$(git rev-parse --show-toplevel)
wt=$(mktemp -d)/base
git -C "$root" worktree add --detach "$wt" "$base" >/dev/null
trap 'git -C "$root" worktree remove --force "$wt"' EXIT
old=$(mktemp) new=$(mktemp)
for _ in $(seq "$passes"); do
  (cd "$wt" && go test -run '^$' -bench "$bench" -count 1 ./test/bench/ | grep ^Benchmark >>"$old")
  (cd "$root" && go test -run '^$' -bench "$bench" -count 1 ./test/bench/ | grep ^Benchmark >>"$new")
done
go run golang.org/x/perf/cmd/benchstat@latest "$old" "$new"
