#!/usr/bin/env bash
# Installs the Debian packages the local cluster and TorchServe need, only when missing.
# Go: Debian's golang-go when there is none; a go older than our go.mod files need takes the
# newer toolchain from the Go module proxy at build time (hack/localcluster/go-env.sh).
# kubectl: none is needed on the machine, the control-plane build has one (put on PATH by make).
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v prometheus >/dev/null || need+=(prometheus)  # the prometheus metric provider is tested against it
command -v tmux >/dev/null || need+=(tmux)  # drives `modeldeploy status -w` in a terminal in the tests
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v go >/dev/null || need+=(golang-go)
command -v git >/dev/null || need+=(git)
# promtool and prometheus: the chart's alerts and dashboard are checked by Prometheus itself.
command -v promtool >/dev/null || need+=(prometheus)
# kube-proxy (nftables mode) drives nft; its cleanup also looks at iptables; conntrack to inspect.
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
