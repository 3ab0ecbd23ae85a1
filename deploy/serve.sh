#!/usr/bin/env bash
# Command 1 of the README: install what is missing, build, and run rvdb embedded in one process with its data in
# ./data (`rvdb serve`). Extra arguments go to `rvdb serve` (see `rvdb serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh
cargo build --release -p rvdb
bin="${CARGO_TARGET_DIR:-target}/release/rvdb"
exec "$bin" serve "$@"
