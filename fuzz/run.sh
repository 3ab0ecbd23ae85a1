#!/usr/bin/env bash
# Builds the fuzz targets (cargo-fuzz: libFuzzer + AddressSanitizer) and runs each for N seconds, one after the
# other, one job each, from the committed corpus. Fails on the first crash, leaving the input that reproduces it.
#
#   fuzz/run.sh [--merge] [seconds-per-target] [target ...]     default: 20 s, every target
#
# The committed corpus (fuzz/corpus/<target>/) is copied to a temporary directory for the run, so it grows only
# when asked: --merge minimises what the run found into it (libFuzzer -merge=1 keeps only inputs that add
# coverage). A crash leaves its input in the temporary directory: fix the code, add a unit test beside it, and add
# the input to fuzz/corpus/<target>/ as regression-<what>, as the existing ones are.
#
# Needs only stable Rust: RUSTC_BOOTSTRAP=1 lets it take the nightly flags cargo-fuzz passes (-Zsanitizer, ...).
# Builds into $RVDB_FUZZ_TARGET_DIR (default ~/.cache/rvdb-fuzz-target), never into the main build's target
# directory: a fuzz build has its own RUSTFLAGS. The targets but `mcp` use rvdb-core only (no RocksDB): about two
# minutes the first time, seconds after. `mcp` links the gateway, hence RocksDB, whose C++ it takes prebuilt from
# the main build (ROCKSDB_LIB_DIR): its first build compiles the gateway's dependencies once (~20 min on 2 cores).
#
# The whole script is one function, read before it runs: editing this file during a long run cannot derail it.
set -euo pipefail

main() {
  cd "$(dirname "$0")/.."
  local root="$PWD"
  local merge=0
  if [ "${1:-}" = "--merge" ]; then
    merge=1
    shift
  fi
  local seconds="${1:-20}"
  shift || true
  case "$seconds" in
    '' | *[!0-9]*)
      echo "usage: fuzz/run.sh [--merge] [seconds-per-target] [target ...]" >&2
      return 2
      ;;
  esac

  export RUSTC_BOOTSTRAP=1
  local target_dir="${RVDB_FUZZ_TARGET_DIR:-$HOME/.cache/rvdb-fuzz-target}"
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked
  fi

  local targets=("$@")
  if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
    if [ "${RVDB_FUZZ_MCP:-0}" != 1 ]; then
      # `mcp` links the gateway: its first fuzz build compiles the whole workspace again with the fuzz flags
      # (~20 min on 2 cores), too much for every run of the test command. Name it, or set RVDB_FUZZ_MCP=1.
      echo "fuzz: not running the mcp target (name it, or set RVDB_FUZZ_MCP=1: its first build takes ~20 min)" >&2
      mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -vx mcp)
    fi
  fi

  echo "fuzz: building ${targets[*]} into $target_dir" >&2
  local runnable=() t lib_dir
  for t in "${targets[@]}"; do
    if [ "$t" = mcp ]; then
      lib_dir=$(rocksdb_lib_dir "$root")
      if [ -z "$lib_dir" ]; then
        echo "!!! SKIPPING the mcp target: no librocksdb.a from the main build here (build the workspace first," >&2
        echo "!!! or set RVDB_ROCKSDB_LIB_DIR to the directory of one)" >&2
        continue
      fi
      ROCKSDB_LIB_DIR="$lib_dir" ROCKSDB_STATIC=1 \
        cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir" --features mcp mcp
    else
      cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir" "$t"
    fi
    runnable+=("$t")
  done
  local bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

  local work summary=() failed=0
  work="$(mktemp -d "${TMPDIR:-/tmp}/rvdb-fuzz.XXXXXX")"
  for t in "${runnable[@]}"; do
    if ! run_target "$t" "$seconds" "$merge" "$root" "$bin_dir" "$work/$t"; then
      failed=1
      break
    fi
  done
  echo "== fuzzing summary (${seconds} s per target)"
  cat "$work"/*/summary 2>/dev/null || true
  if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED; the run's files are in $work" >&2
    return 1
  fi
  rm -rf "$work"
  echo "fuzz: ${#runnable[@]} targets ran ${seconds} s each without a crash" >&2
}

# The directory of the librocksdb.a the main build made ($RVDB_ROCKSDB_LIB_DIR if set); empty if there is none.
rocksdb_lib_dir() {
  if [ -n "${RVDB_ROCKSDB_LIB_DIR:-}" ]; then
    echo "$RVDB_ROCKSDB_LIB_DIR"
    return
  fi
  local lib
  lib=$(ls -t "${CARGO_TARGET_DIR:-$1/target}"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -1 || true)
  if [ -n "$lib" ]; then dirname "$lib"; fi
}

# Runs one target for `seconds` from a copy of its committed corpus; writes its summary line; fails on a crash.
run_target() {
  local t="$1" seconds="$2" merge="$3" root="$4" bin_dir="$5" run="$6"
  mkdir -p "$run/corpus" "$run/artifacts"
  if [ -d "$root/fuzz/corpus/$t" ]; then cp -r "$root/fuzz/corpus/$t/." "$run/corpus/"; fi
  local before started status elapsed runs after crashes line a
  before=$(find "$run/corpus" -type f | wc -l)
  # One job, one worker: one process on one core. -malloc_limit_mb: a single allocation above 256 MB is a failure
  # (a length read from the input and allocated before it was checked); -rss_limit_mb bounds the total.
  local limits=(-malloc_limit_mb=256 -rss_limit_mb=2048 -timeout=10)
  # The MCP session is one deployment for the whole run (RocksDB in memory, background tasks): what it keeps
  # across inputs is its state, not a leak of one input.
  if [ "$t" = mcp ]; then limits=(-malloc_limit_mb=256 -rss_limit_mb=4096 -timeout=60 -detect_leaks=0); fi
  started=$(date +%s.%N)
  set +e
  (cd "$run" && "$bin_dir/$t" corpus -max_total_time="$seconds" -jobs=1 -workers=1 -artifact_prefix=artifacts/ \
    "${limits[@]}" -print_final_stats=1) >"$run/log" 2>&1
  status=$?
  set -e
  elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$run/log" | grep -o '[0-9]*$' | tail -1 || true)
  after=$(find "$run/corpus" -type f | wc -l)
  crashes=$(find "$run/artifacts" -type f | wc -l)
  line=$(printf '%-14s %12s runs in %7s s   corpus %5d -> %5d' "$t" "${runs:-?}" "$elapsed" "$before" "$after")
  echo "$line" >"$run/summary"
  echo "fuzz: $line" >&2
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    grep -E 'panicked at|ERROR: |SUMMARY: ' "$run/log" | head -20 >&2 || true
    echo "fuzz: $t FAILED (exit $status); log: $run/log" >&2
    for a in "$run"/artifacts/*; do
      if [ -e "$a" ]; then echo "fuzz: input: $a  (reproduce: $bin_dir/$t $a)" >&2; fi
    done
    return 1
  fi
  if [ "$merge" -eq 1 ]; then
    mkdir -p "$root/fuzz/corpus/$t"
    (cd "$run" && "$bin_dir/$t" -merge=1 "${limits[@]}" "$root/fuzz/corpus/$t" corpus) >"$run/merge.log" 2>&1
    echo "fuzz: $t: merged into fuzz/corpus/$t: $(find "$root/fuzz/corpus/$t" -type f | wc -l) inputs" >&2
  fi
}

main "$@"
exit $?
