#!/usr/bin/env bash
# The randomized fault campaign (tests/campaign.rs), long form:
#   tests/campaign.sh [--duration 30m|1800s|90] [--seed N]
# Runs against the same build as the test command (release, whole workspace: one RocksDB build) and prints the
# campaign's summary line. The test command runs it short (75 s, seed 1).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=75
seed="${RVDB_CAMPAIGN_SEED:-$RANDOM$RANDOM}"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    *) echo "usage: $0 [--duration 30m|1800s|90] [--seed N]" >&2; exit 2 ;;
  esac
done
case "$duration" in
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rvdb-target}"
cargo build --release --workspace --all-targets
export RVDB_BIN="$CARGO_TARGET_DIR/release/rvdb"
echo "campaign: seed=$seed duration=${secs}s" >&2
RVDB_CAMPAIGN_SECS="$secs" RVDB_CAMPAIGN_SEED="$seed" \
  cargo test --release --workspace --test campaign -- --nocapture
