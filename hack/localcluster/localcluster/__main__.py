"""`python -m localcluster up` runs the cluster in the foreground until Ctrl-C; `down` cleans up."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from localcluster.cluster import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser(prog="localcluster")
    parser.add_argument("command", choices=["up", "down", "build"])
    args = parser.parse_args()
    if args.command == "build":
        print(LocalCluster.build())
        return 0
    cluster = LocalCluster()
    if args.command == "down":
        cluster.clean_leftovers()
        return 0
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with cluster:
        t = cluster.timings
        print(f"local cluster ready in {t['cluster_ready']:.1f}s (API server {t['apiserver_ready']:.1f}s)")
        print(f"  export KUBECONFIG={cluster.kubeconfig}")
        print("  kubectl get nodes")
        print("Ctrl-C stops it and removes every process, namespace, veth and mount it made.")
        sys.stdout.flush()
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
