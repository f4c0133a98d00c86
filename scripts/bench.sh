#!/usr/bin/env bash
# scripts/bench.sh [OUT [OLD]]: run every benchmark 5 times, save the output.
#
#   OUT  file for the results (default: $TMPDIR/authd-bench-<rev>-<time>.txt)
#   OLD  earlier results; with benchstat installed, prints a comparison
#        (go install golang.org/x/perf/cmd/benchstat@latest)
set -euo pipefail

cd "$(dirname "$0")/.."

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out=${1:-${TMPDIR:-/tmp}/authd-bench-${rev}-$(date +%Y%m%d-%H%M%S).txt}
old=${2:-}

go test -run='^$' -bench=. -benchmem -count=5 ./... | tee "$out"
echo
echo "results: $out"

if command -v benchstat >/dev/null 2>&1; then
	echo
	if [[ -n "$old" ]]; then
		benchstat "$old" "$out"
	else
		benchstat "$out"
	fi
elif [[ -n "$old" ]]; then
	echo "benchstat not installed; compare with: benchstat $old $out"
fi
