#!/usr/bin/env bash
# Runs the measurements of docs/performance.md against a fresh local 3-node cluster and
# prints one JSON summary per line (prefixed with the case name), e.g. to diff two runs.
#
# Usage: ./scripts/bench.sh [SECONDS_PER_RUN]      (default 10)
# Env:   TIDEMARK_BENCH_PORT   first port of the cluster (default 19092, away from 9092)
#        TIDEMARK_BENCH_NICE   command prefix for the cluster and benches
#                              (default "nice -n 19 ionice -c3"; set "" on a quiet machine)
#        TIDEMARK_BENCH_ONLY   space-separated case names to run (default: all), e.g.
#                              "consume_1 consume_2 consume_4" (consume_2/4 need consume_1's prefill)
#        TIDEMARK_BENCH_TLS    1: the cluster runs `dev --tls` (mutual TLS everywhere) and
#                              the benches connect with its client certificate
#        CARGO_TARGET_DIR      where the release binary is built (default target)
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
port="${TIDEMARK_BENCH_PORT:-19092}"
nice_cmd="${TIDEMARK_BENCH_NICE-nice -n 19 ionice -c3}"
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/tidemark"
bootstrap="127.0.0.1:$port"

$nice_cmd cargo build --release --locked -p tidemark-cli >&2
data="$(mktemp -d)"
# The cluster runs from a copy with its own name: on a shared machine a name-based kill
# of someone else's `tidemark dev` (seen twice while measuring) must not stop it mid-run.
cp "$bin" "$data/tmbench-node"
tls_dev=()
tls_client=()
if [ "${TIDEMARK_BENCH_TLS:-0}" = 1 ]; then
    certs="$data/cluster/tls"
    tls_dev=(--tls)
    tls_client=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/client.pem" --tls-key "$certs/client.key")
fi
$nice_cmd "$data/tmbench-node" dev --base-port "$port" --data-dir "$data/cluster" "${tls_dev[@]}" >"$data/dev.log" 2>&1 &
dev_pid=$!
cleanup() {
    local status=$?
    kill -INT "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
    if [ "$status" -eq 0 ]; then
        rm -rf "$data"
    else
        echo "failed; the cluster's data and log are kept in $data (dev.log)" >&2
        grep -v " INFO " "$data/dev.log" | tail -20 >&2 || true
    fi
}
trap cleanup EXIT
for _ in $(seq 50); do
    grep -q "is up" "$data/dev.log" && break
    sleep 0.2
done
grep -q "is up" "$data/dev.log" || { cat "$data/dev.log" >&2; echo "the dev cluster did not start" >&2; exit 1; }

only="${TIDEMARK_BENCH_ONLY:-}"
run() {
    local name="$1"
    shift
    if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
        return 0
    fi
    printf '%s ' "$name"
    $nice_cmd "$bin" bench "$@" --format json --bootstrap "$bootstrap" "${tls_client[@]}"
}

# Latency at a fixed rate first, on the fresh cluster: after the saturating runs below the
# nodes stay busy for a while (one run measured 3.5 s ack p99 at 2000/s there, 14 ms fresh).
run produce_rate2000 produce --topic p-rate --partitions 3 --duration "$secs" --rate 2000
run e2e_rate2000 e2e --topic e2e --partitions 3 --rate 2000 --duration "$secs"
# One topic of 4 partitions, filled once, read by 1, 2 and 4 consumers.
run consume_1 consume --topic c-4p --partitions 4 --prefill 200000 --consumers 1 --duration "$secs"
run consume_2 consume --topic c-4p --consumers 2 --duration "$secs"
run consume_4 consume --topic c-4p --consumers 4 --duration "$secs"
# The same topic read by 4 members of a (fresh) partitioned group, then of a shared group.
run consume_group_4 consume --topic c-4p --group "bench-g-$$" --consumers 4 --duration "$secs"
run consume_shared_4 consume --topic c-4p --group "bench-s-$$" --shared --consumers 4 --duration "$secs"
# Saturating: as fast as acknowledged (latency here is mostly time queued in the producer).
run produce_idempotent produce --topic p-idem --partitions 3 --duration "$secs"
run produce_plain produce --topic p-plain --partitions 3 --duration "$secs" --no-idempotent
# The latency cases again with a 5 ms linger (the SDK default is 0: send when the window
# has room), to show what holding batches open costs at this rate.
run produce_rate2000_linger5 produce --topic p-rate --partitions 3 --duration "$secs" --rate 2000 --linger-ms 5
run e2e_rate2000_linger5 e2e --topic e2e --partitions 3 --rate 2000 --duration "$secs" --linger-ms 5
