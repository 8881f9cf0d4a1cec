#!/usr/bin/env bash
# What TLS costs: the produce cases of scripts/bench.sh on a fresh `tidemark dev` cluster
# without TLS and on one with `dev --tls` (mutual TLS on both listeners), alternating,
# ROUNDS times. Prints one JSON summary per line: "<plain|tls> <case> <json>".
#
# Usage: ./scripts/compare-tls.sh [SECONDS_PER_RUN] [ROUNDS]     (defaults 10 and 3)
# Env:   as scripts/bench.sh (TIDEMARK_BENCH_NICE defaults to none here: run it on a quiet
#        machine; CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
rounds="${2:-3}"
cases="produce_rate2000 produce_idempotent"
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    for tls in 0 1; do
        label=$([ "$tls" = 1 ] && echo tls || echo plain)
        TIDEMARK_BENCH_TLS="$tls" TIDEMARK_BENCH_NICE="${TIDEMARK_BENCH_NICE-}" TIDEMARK_BENCH_ONLY="$cases" \
            ./scripts/bench.sh "$secs" 2>/dev/null | sed "s/^/$label /"
    done
done
