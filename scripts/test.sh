#!/usr/bin/env bash
# Runs every Tidemark test: the workspace on tokio (unit, conformance, in-process and
# real-process cluster tests), then the deterministic simulation under madsim.
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

plain_target="${CARGO_TARGET_DIR:-target}"
# The madsim build must not share a target dir with the plain one, or each rebuilds the other.
sim_target="${TIDEMARK_SIM_TARGET_DIR:-$plain_target/sim}"

echo "== tests on tokio (target: $plain_target)"
# The real-process tests run the `tidemark` binary, which cargo test does not build.
CARGO_TARGET_DIR="$plain_target" cargo build --locked -p tidemark-cli
CARGO_TARGET_DIR="$plain_target" cargo test --workspace --locked

echo "== deterministic simulation under madsim (target: $sim_target)"
export RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim" CARGO_TARGET_DIR="$sim_target"
# Each simulation test runs this many seeds (override with MADSIM_TEST_NUM).
MADSIM_TEST_NUM="${MADSIM_TEST_NUM:-20}" cargo test --locked -p tidemark-simulation -p tidemark-storage -p tidemark-raft

echo "== determinism: one seed run twice must replay identically"
MADSIM_TEST_SEED=1 MADSIM_TEST_CHECK_DETERMINISM=1 cargo test --locked -p tidemark-simulation --test smoke

# The chaos simulation runs in release mode (scripts/simulate.sh builds it in $sim_target).
simulate() { TIDEMARK_SIM_TARGET_DIR="$sim_target" ./scripts/simulate.sh "$@"; }
echo "== chaos simulation: fixed seeds with the full nemesis, and every regression seed"
simulate --seeds "${TIDEMARK_SIM_SEEDS:-0..300}" --regressions
echo "== checker self-tests: each planted bug must be caught within 100 seeds"
simulate --plant fsync-noop --seeds 0..100 --expect acked-durable
simulate --plant skip-after-blank --seeds 0..100 --expect dense-identical-replicas
simulate --plant vote-while-repairing --seeds 0..100 --expect acked-durable
echo "== determinism: the same seeds run twice give the same trace fingerprints"
simulate --seeds 0..4 --check-determinism
