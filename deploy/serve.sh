#!/usr/bin/env bash
# Command 1 of the README: install what is missing, build, and run rvdb embedded in one process with its data in
# ./data (`rvdb serve`). Extra arguments go to `rvdb serve` (see `rvdb serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh
# The same build command as tests/run.sh, on purpose: `-p rvdb` alone resolves other features for shared
# dependencies (dev-dependencies of the tests add some), which made the test command recompile 9 crates after
# this one (and this one after it). One command, one feature set, one build.
cargo build --release --workspace --all-targets
bin="${CARGO_TARGET_DIR:-target}/release/rvdb"
exec "$bin" serve "$@"
