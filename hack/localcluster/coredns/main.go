// Command coredns is CoreDNS with only the plugins the local cluster's DNS uses: Services and
// pods from the API (kubernetes), a cache, health and readiness endpoints, metrics and errors.
// It has no forward plugin: names outside the cluster are not resolved, so no query leaves
// the machine.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
