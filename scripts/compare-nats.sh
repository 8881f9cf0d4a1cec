#!/usr/bin/env bash
# Runs the four workloads of issue 6 against NATS JetStream (R3, three servers on
# 127.0.0.1) and against Tidemark (`tidemark dev`, RF 3), back to back on this machine,
# and prints one JSON summary per line: "<system> <case> <json>".
#
# Usage: ./scripts/compare-nats.sh [SECONDS_PER_RUN] [ROUNDS]     (defaults 10 and 1)
# Needs Debian's nats-server, golang-go and golang-github-nats-io-go-nats-dev; installs
# them with apt-get when missing (NATS 2.9.10 and nats.go 1.22 on Debian 12).
# Env: TIDEMARK_BENCH_NICE as for scripts/bench.sh (default: none here; run it on a quiet
#      machine), CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
rounds="${2:-1}"
peer=scripts/peer-nats
work="$(mktemp -d)"
trap '"$peer/cluster.sh" stop "$work/nats" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

if ! command -v nats-server >/dev/null || ! command -v go >/dev/null \
    || [ ! -d /usr/share/gocode/src/github.com/nats-io/nats.go ]; then
    echo "installing nats-server, golang-go and the nats.go library from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nats-server golang-go golang-github-nats-io-go-nats-dev >&2
fi
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$work/gocache" go build -o "$work/natsbench" "$peer/natsbench.go"
cargo build --release --locked -q -p tidemark-cli >&2

nats_case() {
    local name="$1"
    shift
    "$peer/cluster.sh" start "$work/nats" >&2
    printf 'nats %s ' "$name"
    "$work/natsbench" "$@" 2>/dev/null
    "$peer/cluster.sh" stop "$work/nats" >&2
    rm -rf "$work/nats"
}
tidemark_case() {
    local name="$1"
    shift
    TIDEMARK_BENCH_NICE="${TIDEMARK_BENCH_NICE-}" TIDEMARK_BENCH_ONLY="$name" ./scripts/bench.sh "$secs" 2>/dev/null |
        sed 's/^/tidemark /'
}

# Between cases: let the previous case's dirty pages reach the disk, so the next case's
# fsyncs do not queue behind gigabytes of writeback (one run right after a saturating
# produce measured ack p99 6.2 ms at 2000/s, against 2.4-4 ms on a settled machine).
settle() { sync; sleep 2; }
for _ in $(seq "$rounds"); do
    # Each case on a fresh cluster of each system, the peer first; latency cases first.
    nats_case produce_rate2000 -mode produce -streams 3 -rate 2000 -duration "${secs}s"; settle
    tidemark_case produce_rate2000; settle
    nats_case e2e_rate2000 -mode e2e -rate 2000 -duration "${secs}s"; settle
    tidemark_case e2e_rate2000; settle
    nats_case produce -mode produce -streams 3 -inflight 1024 -duration "${secs}s"; settle
    tidemark_case produce_idempotent; settle
    nats_case consume_4 -mode consume -consumers 4 -prefill 200000 -duration "${secs}s"; settle
    TIDEMARK_BENCH_ONLY="consume_1 consume_group_4" TIDEMARK_BENCH_NICE="${TIDEMARK_BENCH_NICE-}" \
        ./scripts/bench.sh "$secs" 2>/dev/null | sed 's/^/tidemark /'
    settle
done
