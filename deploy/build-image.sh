#!/usr/bin/env bash
# Builds the runtime image (default tag rvdb:latest) without pulling anything: `FROM scratch` with the cargo-built
# binary (debug info stripped), the shared libraries `ldd` says it links and the dynamic loader, a passwd entry for
# the non-root user 10001, and empty /data and /backups owned by that user. For machines without a container
# registry; with one, `docker build -f deploy/Dockerfile .` does the same from public base images.
#   deploy/build-image.sh [tag]          (RVDB_SKIP_BUILD=1: use the binary already built)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-rvdb:latest}"
target="${CARGO_TARGET_DIR:-target}"
if [ -z "${RVDB_SKIP_BUILD:-}" ]; then
  cargo build --release -p rvdb
fi
bin="$target/release/rvdb"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
state="$ctx/state"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$state/data" "$state/backups"
objcopy --strip-debug "$bin" "$root/usr/local/bin/rvdb"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/:/sbin/nologin\nrvdb:x:10001:10001:rvdb:/data:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nrvdb:x:10001:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
cp deploy/Dockerfile.scratch "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "built $tag: $(docker image inspect -f '{{.Size}}' "$tag") bytes" >&2
