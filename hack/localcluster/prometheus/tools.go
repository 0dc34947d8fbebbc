//go:build tools

// Package prometheus pins the Prometheus server (cmd/prometheus) that build.sh builds for the
// local cluster. Debian's package is built without Kubernetes service discovery, which the
// cluster's Prometheus needs to find annotated pods.
package prometheus

import _ "github.com/prometheus/prometheus/cmd/prometheus"
