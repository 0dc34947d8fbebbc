"""Pod networking: one bridge on the host, one network namespace and veth pair per pod."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
import threading
import time
from pathlib import Path

# An unsolicited ARP request (sender = target = the pod's address) broadcast from the pod's eth0,
# three times: argv is the address and the interface's MAC. Run inside the pod's namespace.
_ANNOUNCE = """
import socket, sys
address, mac = socket.inet_aton(sys.argv[1]), bytes.fromhex(sys.argv[2].replace(":", ""))
arp = b"\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x01" + mac + address + bytes(6) + address
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
    s.bind(("eth0", 0))
    for _ in range(3):
        s.send(b"\\xff" * 6 + mac + b"\\x08\\x06" + arp)
"""
BRIDGE_PORT_FORWARDING = "3"  # /sys/class/net/PORT/brport/state


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
        self._last = int(ipaddress.ip_address(self.gateway))

    def up(self) -> None:
        if self.name not in link_names():
            ip("link", "add", self.name, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.name)
        ip("link", "set", self.name, "up")

    def down(self) -> None:
        if self.name in link_names():
            ip("link", "del", self.name, check=False)

    def allocate(self) -> str:
        """The next free address after the one handed out last, wrapping round the range.

        As the CNI host-local IPAM does: an address just freed is not handed out again until the
        range has come round, so a new pod never inherits an address that the host's neighbour
        table, or a client's connections, still tie to the pod that had it.
        """
        with self._lock:
            first = int(self.network.network_address) + 1
            count = self.network.num_addresses - 2
            for step in range(1, count + 1):
                candidate = first + (self._last - first + step) % count
                address = str(ipaddress.ip_address(candidate))
                if address not in self._used:
                    self._used.add(address)
                    self._last = candidate
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
            mac = ip("-n", netns, "-o", "link", "show", "eth0").stdout.split("link/ether")[1].split()[0]
        except subprocess.CalledProcessError as e:
            self.remove_pod(key, address)
            raise RuntimeError(f"pod network: {' '.join(e.cmd)}: {e.stderr.strip()}") from e
        self.announce(netns, veth, address, mac)
        return f"/run/netns/{netns}", address

    @staticmethod
    def announce(netns: str, veth: str, address: str, mac: str) -> None:
        """Broadcasts the pod's address with its MAC, as the CNI bridge plugin does for each address.

        A neighbour that still maps the address to an earlier pod's MAC (the host above all, whose
        entry stays valid for up to a minute) would send the new pod's first packets nowhere: a
        readiness probe that runs inside the pod never corrects it, so the first client connections
        would stall for seconds. Sent once the bridge forwards the pod's port (frames sent earlier
        are dropped); best effort, like the plugin's: a pod works without it.
        """
        state = Path(f"/sys/class/net/{veth}/brport/state")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if state.read_text().strip() == BRIDGE_PORT_FORWARDING:
                    break
            time.sleep(0.01)
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-I", "-S", "-c", _ANNOUNCE, address, mac],
                       capture_output=True, check=False, timeout=30)

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
