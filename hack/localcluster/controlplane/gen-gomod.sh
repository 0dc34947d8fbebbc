#!/usr/bin/env bash
# Regenerates go.mod from the Kubernetes release's own go.mod: every staging module that
# k8s.io/kubernetes replaces with ./staging/src/... is pinned here at the matching v0.X.Y.
set -euo pipefail
cd "$(dirname "$0")"
release=${1:-$(cat K8S_VERSION)}
staging=v0.${release#v1.}
mod=$(go mod download -json "k8s.io/kubernetes@${release}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
go_line=$(grep -m1 '^go ' "$mod")
{
  echo "module modeldeploy.dev/localcluster/controlplane"
  echo
  echo "$go_line"
  echo
  echo "require k8s.io/kubernetes ${release}"
  echo
  echo "replace ("
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"${staging}"'#p' "$mod"
  echo ")"
} > go.mod
echo "$release" > K8S_VERSION
go mod tidy
