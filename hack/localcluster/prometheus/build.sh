#!/usr/bin/env bash
# Builds the Prometheus server pinned in go.mod (upstream cmd/prometheus, with Kubernetes service
# discovery only) once; later calls reuse it while go.mod and go.sum are unchanged. The web
# UI's assets are not built in; the HTTP API is complete.
# Output: $LOCALCLUSTER_BIN_DIR (default ~/.cache/modeldeploy/localcluster)/prometheus-<hash>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out_dir=${LOCALCLUSTER_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/localcluster}
key=$(cat "$here/go.mod" "$here/go.sum" "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-16)
binary="$out_dir/prometheus-$key"
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi
mkdir -p "$out_dir"
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"
localcluster_go_env
cd "$here"
module=$(sed -n 's/^require github.com\/prometheus\/prometheus v0\.\([0-9]*\)\.\([0-9]*\)$/2.\1.\2/p' go.mod)
# Upstream's plugins package registers every service discovery (AWS, Azure, GCE, ...); the cluster
# needs Kubernetes only (file and HTTP discovery stay: upstream registers them apart). The build
# uses a vendored copy of the pinned modules whose plugins package registers Kubernetes alone,
# which saves compiling the cloud SDKs (about 40 % of the build).
work=$(mktemp -d "$out_dir/prometheus-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp go.mod go.sum tools.go "$work/"
cd "$work"
go mod vendor >&2
cat > vendor/github.com/prometheus/prometheus/plugins/plugins.go <<'GO'
// Package plugins registers the service discoveries this build of Prometheus offers.
package plugins

import (
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // Register kubernetes plugin.
)
GO
CGO_ENABLED=0 go build -mod=vendor -trimpath \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$module" \
  -o "$binary.tmp" github.com/prometheus/prometheus/cmd/prometheus >&2
mv "$binary.tmp" "$binary"
echo "$binary"
