#!/usr/bin/env bash
# Takes the Prometheus Operator's CRDs for ServiceMonitor and PrometheusRule from its Go module once
# (cached), and prints the folder that holds them. The chart's objects are checked against these.
set -euo pipefail
version=v0.85.0
dir=${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy/tools/prometheus-operator-crds-$version
files=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml)
if [ ! -f "$dir/${files[-1]}" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  # shellcheck source=localcluster/go-env.sh
  source "$here/localcluster/go-env.sh"
  localcluster_go_env
  # Outside any go.mod, so the download adds nothing to a module of ours.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mod=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$tmp/crds"
  for f in "${files[@]}"; do
    src=$mod/example/prometheus-operator-crd/$f
    grep -q "operator.prometheus.io/version: ${version#v}\$" "$src" || {
      echo "$src is not the CRD of $version" >&2
      exit 1
    }
    install -m 644 "$src" "$tmp/crds/$f"
  done
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir"
  mv "$tmp/crds" "$dir"
fi
echo "$dir"
