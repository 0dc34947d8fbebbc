#!/usr/bin/env bash
# Builds the cluster DNS server (CoreDNS with the plugins main.go names) once; later calls reuse
# it while the sources are unchanged. A module of its own: its dependency versions need not
# agree with the control plane's.
# Output: $LOCALCLUSTER_BIN_DIR (default ~/.cache/modeldeploy/localcluster)/coredns-<hash>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out_dir=${LOCALCLUSTER_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/localcluster}
key=$(cat "$here/go.mod" "$here/go.sum" "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-16)
binary="$out_dir/coredns-$key"
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi
mkdir -p "$out_dir"
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"
localcluster_go_env
cd "$here"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$binary.tmp" . >&2
mv "$binary.tmp" "$binary"
echo "$binary"
