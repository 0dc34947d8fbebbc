#!/usr/bin/env bash
# Installs the Debian packages the local cluster and TorchServe need, only when missing.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v go >/dev/null || need+=(golang-go)
command -v git >/dev/null || need+=(git)
# promtool and prometheus: the chart's alerts and dashboard are checked by Prometheus itself.
command -v promtool >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null; then
  echo "kubectl (1.32 or newer) is required on PATH: the tests and the demo drive the cluster with it" >&2
  exit 1
fi
