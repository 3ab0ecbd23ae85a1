#!/usr/bin/env bash
# Command 2 of the README: install what is missing, then run every test: formatting, lints, unit and property
# tests, and the integration tests that start real rvdb processes on loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh

start=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - start ))s)"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo build (release: one RocksDB build shared by run, tests and benches)"
cargo build --release --workspace --all-targets

step "cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test"
export RVDB_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/rvdb"
cargo test --release --workspace --no-fail-fast
step "all tests passed"
