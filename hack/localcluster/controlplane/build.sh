#!/usr/bin/env bash
# Builds the control-plane binary once; later calls reuse it while the sources are unchanged.
# Output: $LOCALCLUSTER_BIN_DIR (default ~/.cache/modeldeploy/localcluster)/controlplane-<hash>,
# and beside it a link named kubectl to that binary (it runs kubectl when called so).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out_dir=${LOCALCLUSTER_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/localcluster}
release=$(cat "$here/K8S_VERSION")
key=$(cat "$here/K8S_VERSION" "$here/go.mod" "$here/go.sum" "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-16)
binary="$out_dir/controlplane-$key"
link_kubectl() {
  ln -sfn "$(basename "$binary")" "$out_dir/kubectl"
}
if [ -x "$binary" ]; then
  link_kubectl
  echo "$binary"
  exit 0
fi
# shellcheck source=../go-env.sh
source "$here/../go-env.sh"
localcluster_go_env
mkdir -p "$out_dir"
minor=${release#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
clientpkg=k8s.io/client-go/pkg/version
ldflags="-s -w"
for p in "$pkg" "$clientpkg"; do
  ldflags+=" -X $p.gitVersion=$release -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  ldflags+=" -X $p.buildDate=1970-01-01T00:00:00Z"
done
cd "$here"
# CGO off: a static binary, and no C toolchain needed for the build.
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$binary.tmp" . >&2
mv "$binary.tmp" "$binary"
link_kubectl
echo "$binary"
