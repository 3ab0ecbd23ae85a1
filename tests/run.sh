#!/usr/bin/env bash
# Command 2 of the README: install what is missing, then run every test: formatting, lints, unit and property
# tests, the integration tests that start real rvdb processes on loopback ports, a short run of the fuzz targets
# (fuzz/run.sh), and the MCP client tests (Python MCP SDK in a venv at $RVDB_VENV, default tests/.venv) with the
# web console's tests in headless Chromium (Selenium).
set -euo pipefail
cd "$(dirname "$0")/.."
export RVDB_SETUP_TESTS=1
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

step "fuzzing: each RocksDB-free cargo-fuzz target for 20 s from its committed corpus (fuzz/run.sh; RVDB_FUZZ_SECONDS)"
fuzz/run.sh "${RVDB_FUZZ_SECONDS:-20}"

step "docker image for the compose test"
if docker info >/dev/null 2>&1 && { command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; }; then
  RVDB_SKIP_BUILD=1 deploy/build-image.sh rvdb:test
  export RVDB_COMPOSE_IMAGE=rvdb:test
else
  echo "!!! SKIPPING the docker compose test: no Docker engine with compose here (docker info failed)" >&2
  echo "!!! it runs wherever a Docker engine is available; CI has one" >&2
fi

step "MCP client tests (the official Python MCP SDK against real rvdb processes and docker compose)"
venv="${RVDB_VENV:-$PWD/tests/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/mcp/requirements.txt
(cd tests/mcp && "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs)
step "all tests passed"
