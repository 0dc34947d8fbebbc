"""Pod networking: one bridge on the host, one network namespace and veth pair per pod."""

from __future__ import annotations

import ipaddress
import subprocess
import threading


def netns_prefix(bridge: str) -> str:
    return f"{bridge}-pod-"


def veth_prefix(bridge: str) -> str:
    # Interface names have 15 characters at most: 3 of prefix, 12 of the pod's key.
    return f"lc{bridge[-1]}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_names() -> list[str]:
    out = ip("-o", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_names() -> list[str]:
    out = ip("-o", "link", "show", check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


class Bridge:
    """The host side: a bridge whose first address is the gateway pods route through."""

    def __init__(self, name: str, cidr: str) -> None:
        self.name = name
        self.network = ipaddress.ip_network(cidr)
        self.gateway = str(next(self.network.hosts()))
        self._lock = threading.Lock()
        self._used: set[str] = {self.gateway}

    def up(self) -> None:
        if self.name not in link_names():
            ip("link", "add", self.name, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.name)
        ip("link", "set", self.name, "up")

    def down(self) -> None:
        if self.name in link_names():
            ip("link", "del", self.name, check=False)

    def allocate(self) -> str:
        with self._lock:
            for host in self.network.hosts():
                address = str(host)
                if address not in self._used:
                    self._used.add(address)
                    return address
        raise RuntimeError(f"no free pod address left in {self.network}")

    def release(self, address: str) -> None:
        with self._lock:
            self._used.discard(address)

    def add_pod(self, key: str) -> tuple[str, str]:
        """Creates the pod's namespace and veth; returns (netns path, pod IP)."""
        netns, veth = netns_prefix(self.name) + key, veth_prefix(self.name) + key[:12]
        address = self.allocate()
        try:
            ip("netns", "add", netns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            ip("link", "set", veth, "master", self.name, "up")
            # Hairpin: a pod that reaches its own Service is sent back out of the port it came in by.
            ip("link", "set", veth, "type", "bridge_slave", "hairpin", "on")
            ip("-n", netns, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "route", "add", "default", "via", self.gateway)
        except subprocess.CalledProcessError as e:
            self.remove_pod(key, address)
            raise RuntimeError(f"pod network: {' '.join(e.cmd)}: {e.stderr.strip()}") from e
        return f"/run/netns/{netns}", address

    def remove_pod(self, key: str, address: str | None) -> None:
        ip("link", "del", veth_prefix(self.name) + key[:12], check=False)
        ip("netns", "del", netns_prefix(self.name) + key, check=False)
        if address:
            self.release(address)


def remove_leftovers(bridge: str) -> None:
    """Removes every namespace and veth of ours, and the bridge, e.g. after a crash."""
    for name in netns_names():
        if name.startswith(netns_prefix(bridge)):
            ip("netns", "del", name, check=False)
    for name in link_names():
        if name.startswith(veth_prefix(bridge)):
            ip("link", "del", name, check=False)
    if bridge in link_names():
        ip("link", "del", bridge, check=False)
