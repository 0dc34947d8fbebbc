"""`python -m localcluster.agent ...`: runs the node agent in the foreground (LocalCluster starts it so)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from localcluster.agent.nodeagent import NodeAgent
from localcluster.network import Bridge


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m localcluster.agent", description="localcluster node agent")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="localnode")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--bridge", default="lcbr0")
    parser.add_argument("--pod-cidr", default="10.244.0.0/16")
    parser.add_argument("--api-port", type=int, default=6443)
    parser.add_argument("--pki-dir", help="serve the kubelet's log API with kubelet.crt/key from here")
    parser.add_argument("--image-path", action="append", default=[],
                        help="a host directory containers run commands from (kept visible under volumes)")
    parser.add_argument("--cluster-dns", action="append", default=[], metavar="IP",
                        help="the cluster DNS server pods with dnsPolicy ClusterFirst use (repeat or comma-separate)")
    parser.add_argument("--cluster-domain", default="", metavar="DOMAIN",
                        help="the cluster's DNS domain (cluster.local): pods search NS.svc.DOMAIN svc.DOMAIN DOMAIN")
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf", metavar="PATH",
                        help="the node's resolver configuration, for dnsPolicy Default; empty for none")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Each retry of a connection would log here; an outage is logged once, when it starts and ends.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    bridge = Bridge(args.bridge, args.pod_cidr)
    bridge.up()
    cluster_dns = [ip.strip() for value in args.cluster_dns for ip in value.split(",") if ip.strip()]
    agent = NodeAgent(args.kubeconfig, args.node_name, Path(args.state_dir), bridge, bridge.gateway, args.api_port,
                      args.image_path, cluster_dns=cluster_dns, cluster_domain=args.cluster_domain,
                      resolv_conf=args.resolv_conf)

    def stop(_signum: int, _frame: object) -> None:
        agent.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run(Path(args.pki_dir) if args.pki_dir else None)


if __name__ == "__main__":
    main()
