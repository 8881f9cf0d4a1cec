#!/usr/bin/env bash
# Runs the seeded chaos simulation (release build, --cfg madsim, own target dir).
# Every argument goes to the seed runner; see `scripts/simulate.sh --help`.
#   scripts/simulate.sh --seeds 0..500            # many seeds on every core
#   scripts/simulate.sh --seed 1234 --verbose     # replay one seed with its trace and logs
#   scripts/simulate.sh --soak 600                # new seeds for ten minutes
set -euo pipefail
cd "$(dirname "$0")/.."
plain_target="${CARGO_TARGET_DIR:-target}"
export RUSTFLAGS="--cfg madsim" RUSTDOCFLAGS="--cfg madsim"
export CARGO_TARGET_DIR="${TIDEMARK_SIM_TARGET_DIR:-$plain_target/sim}"
cargo build --locked --release -q -p tidemark-simulation
exec "$CARGO_TARGET_DIR/release/tidemark-simulation" "$@"
