#!/usr/bin/env bash
# Prints the path of a usable `consul` binary, building it the first time.
#   1. `consul` on PATH, if any;
#   2. else the cached build ${GEOINGEST_CACHE:-$HOME/.cache/geoingest}/consul-<version>/consul;
#   3. else builds it there from the Go module proxy, pinned by this directory's go.mod/go.sum
#      (about 7 minutes on 2 cores with empty Go caches; build output goes to stderr).
# The version is the one go.mod requires. Safe to run concurrently (flock).
set -euo pipefail

if command -v consul >/dev/null 2>&1; then
    command -v consul
    exit 0
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(awk '$1 == "require" && $2 == "github.com/hashicorp/consul" { sub(/^v/, "", $3); print $3 }' "$here/go.mod")"
if [[ -z "$version" ]]; then
    echo "build.sh: no 'require github.com/hashicorp/consul vX' line in $here/go.mod" >&2
    exit 1
fi
cache="${GEOINGEST_CACHE:-$HOME/.cache/geoingest}"
dir="$cache/consul-$version"
bin="$dir/consul"

if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
    echo "build.sh: no consul on PATH, no cached $bin, and no Go toolchain to build it" >&2
    exit 1
fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [[ ! -x "$bin" ]]; then
    echo "build.sh: building consul $version into $bin (several minutes)" >&2
    tmp="$dir/consul.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    (
        cd "$here"
        GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0 \
            "$go_bin" build -trimpath -ldflags "-s -w" -o "$tmp" github.com/hashicorp/consul
    ) >&2
    "$tmp" version >&2
    mv -f "$tmp" "$bin"
    trap - EXIT
fi
echo "$bin"
