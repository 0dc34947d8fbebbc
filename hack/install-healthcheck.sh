#!/usr/bin/env bash
# Builds hack/kstatus (kstatus and Argo CD's Lua interpreter, from their Go modules) once per version of its
# sources, caches it, and prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/kstatus
key=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
dir=${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/tools/healthcheck-$key
if [ ! -x "$dir/healthcheck" ]; then
  # shellcheck source=localcluster/go-env.sh
  source "$here/localcluster/go-env.sh"
  localcluster_go_env
  # A go of 1.21 or newer fetches the toolchain our go.mod names from the module proxy.
  (cd "$src" && GOTOOLCHAIN=auto CGO_ENABLED=0 go build -trimpath -o "$dir/healthcheck.tmp" . >&2)
  mv "$dir/healthcheck.tmp" "$dir/healthcheck"
fi
echo "$dir/healthcheck"
