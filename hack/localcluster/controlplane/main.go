// Command controlplane runs one Kubernetes component per process: an embedded etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, or kubectl, all
// built from the upstream release modules pinned in go.mod. Called through a link named
// kubectl, it is kubectl.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zone support, as in the upstream binaries.

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
	"k8s.io/component-base/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubectl|version [flags]\n", os.Args[0])
	os.Exit(2)
}

// runKubectl runs kubectl as its own binary does; it reads os.Args itself (plugins), so
// os.Args must start with the kubectl command name.
func runKubectl() {
	command := kubectl.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
	os.Exit(0)
}

func main() {
	if filepath.Base(os.Args[0]) == "kubectl" {
		runKubectl()
	}
	if len(os.Args) < 2 {
		usage()
	}
	component, args := os.Args[1], os.Args[2:]
	switch component {
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-proxy":
		cmd := proxy.NewProxyCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kubectl":
		os.Args = os.Args[1:]
		runKubectl()
	case "version":
		fmt.Println(version.Get().GitVersion)
	default:
		usage()
	}
}
