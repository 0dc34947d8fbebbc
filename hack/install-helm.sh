#!/usr/bin/env bash
# Builds helm from its Go module once (cached) and prints the binary's path.
set -euo pipefail
version=v3.19.5
dir=${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/tools/helm-$version
if [ ! -x "$dir/helm" ]; then
  GOBIN="$dir" CGO_ENABLED=0 go install "helm.sh/helm/v3/cmd/helm@$version" >&2
fi
echo "$dir/helm"
