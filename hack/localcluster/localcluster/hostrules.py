"""The host's side of Services: what makes ClusterIPs work locally and keeps the cluster's
traffic on this machine.

kube-proxy (nftables mode, its own tables `ip kube-proxy` and `ip6 kube-proxy`) translates a
ClusterIP to a pod. Around it, while the cluster runs:

- the service range is routed to the bridge, so the host's own connections to a ClusterIP
  never take the default route out of the machine (a route, not `unreachable`: the output
  path routes before kube-proxy's DNAT, which an unreachable route would stop);
- the bridge, and only the bridge, forwards (pod -> ClusterIP -> pod goes through the host);
- our table `inet localcluster-BRIDGE` rejects, with counters, what has no place to go: a
  pod's packet that would leave by another interface (no masquerade to the outside), and a
  packet still addressed to the service range after kube-proxy's DNAT (a ClusterIP without
  a rule fails at once instead of waiting for ARP on the bridge).

Everything is removed with the bridge and `remove()`; nothing is written to the host's own
iptables or nftables rule sets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

BRIDGE_NF_CALL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))


def nft(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], capture_output=True, text=True, input=input, check=check)


def table_name(bridge: str) -> str:
    return f"localcluster-{bridge}"


def tables() -> list[tuple[str, str]]:
    """Every nftables table on the host as (family, name)."""
    if shutil.which("nft") is None:
        return []  # without nft, no rule of ours can exist
    out = nft("list", "tables", check=False).stdout
    return [(line.split()[1], line.split()[2]) for line in out.splitlines() if line.startswith("table ")]


def counter(bridge: str, chain: str, comment: str) -> int:
    """Packets counted so far by the rule of ours with this comment."""
    out = nft("-j", "list", "chain", "inet", table_name(bridge), chain).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule and rule.get("comment") == comment:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    raise LookupError(f"no rule {comment!r} in {table_name(bridge)} {chain}")


POD_EGRESS = "pods may not leave the machine"
UNROUTED_SERVICE_FORWARD = "service address without a rule (pods)"
UNROUTED_SERVICE_OUTPUT = "service address without a rule (host)"


class HostRules:
    def __init__(self, bridge: str, pod_cidr: str, service_cidr: str, state_dir: Path) -> None:
        self.bridge = bridge
        self.pod_cidr = pod_cidr
        self.service_cidr = service_cidr
        self.saved = state_dir / "host-sysctl.json"

    def ruleset(self) -> str:
        # Priority -5: after kube-proxy's DNAT (-100), before its filter chains (0).
        b, svc = self.bridge, self.service_cidr
        return f"""
table inet {table_name(b)} {{
  chain forward {{
    type filter hook forward priority -5; policy accept;
    iifname "{b}" oifname != "{b}" counter reject with icmpx admin-prohibited comment "{POD_EGRESS}"
    ip daddr {svc} counter reject comment "{UNROUTED_SERVICE_FORWARD}"
  }}
  chain output {{
    type filter hook output priority -5; policy accept;
    ip daddr {svc} counter reject comment "{UNROUTED_SERVICE_OUTPUT}"
  }}
}}
"""

    def apply(self) -> None:
        """Called once the bridge is up."""
        nft("-f", "-", input=self.ruleset())
        subprocess.run(["ip", "route", "replace", self.service_cidr, "dev", self.bridge], check=True,
                       capture_output=True, text=True)
        Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/forwarding").write_text("1\n")
        # A pod's reply to another pod crosses the bridge only; br_netfilter lets conntrack undo
        # kube-proxy's DNAT there. A host-wide setting: restored on removal if it was off.
        if BRIDGE_NF_CALL.exists() and BRIDGE_NF_CALL.read_text().strip() != "1":
            self.saved.write_text(json.dumps({str(BRIDGE_NF_CALL): BRIDGE_NF_CALL.read_text().strip()}))
            BRIDGE_NF_CALL.write_text("1\n")

    def remove(self) -> None:
        if ("inet", table_name(self.bridge)) in tables():
            nft("delete", "table", "inet", table_name(self.bridge), check=False)
        subprocess.run(["ip", "route", "del", self.service_cidr, "dev", self.bridge], capture_output=True)
        if self.saved.exists():
            for path, value in json.loads(self.saved.read_text()).items():
                Path(path).write_text(f"{value}\n")
            self.saved.unlink()


def kube_proxy_tables() -> list[tuple[str, str]]:
    return [t for t in tables() if t in KUBE_PROXY_TABLES]
