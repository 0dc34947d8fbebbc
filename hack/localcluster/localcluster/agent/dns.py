"""A pod's /etc/resolv.conf, formed as the kubelet forms it (pkg/kubelet/network/dns) and written
as the container runtime writes it: search, then nameservers, then options.

dnsPolicy ClusterFirst (the default) points at the cluster DNS with the search path
`NS.svc.DOMAIN svc.DOMAIN DOMAIN` and `ndots:5`; without a cluster DNS it falls back to Default
(the node's resolver configuration, --resolv-conf); None starts empty; dnsConfig is merged last."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from localcluster.agent.common import Obj

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_OPTIONS = ("ndots:5",)


@dataclass
class DNSConfig:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        text = ""
        if self.searches:
            text += f"search {' '.join(self.searches)}\n"
        text += "".join(f"nameserver {server}\n" for server in self.servers)
        if self.options:
            text += f"options {' '.join(self.options)}\n"
        return text


@dataclass
class PodDNS:
    """What the pod's resolv.conf says, and the warnings (event reason, message) forming it gave."""

    config: DNSConfig
    warnings: list[tuple[str, str]]


def parse_resolv_conf(text: str) -> DNSConfig:
    """The node's resolver configuration: every nameserver, the last search line, every option."""
    config = DNSConfig()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            config.servers.append(fields[1])
        elif fields[0] == "search":
            config.searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            config.options.extend(fields[1:])
    return config


def host_config(resolv_conf: str) -> DNSConfig:
    """The node's configuration from --resolv-conf; an empty path means none (lookups stay local)."""
    if not resolv_conf:
        return DNSConfig()
    try:
        return parse_resolv_conf(Path(resolv_conf).read_text())
    except OSError:
        return DNSConfig()


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def merge_options(existing: list[str], extra: list[Obj]) -> list[str]:
    """dnsConfig options override options of the same name; order of first appearance is kept."""
    merged: dict[str, str | None] = {}
    for option in existing:
        name, sep, value = option.partition(":")
        merged[name] = value if sep else None
    for extra_option in extra:
        given = extra_option.get("value")
        merged[extra_option["name"]] = None if given in (None, "") else str(given)
    return [name if value is None else f"{name}:{value}" for name, value in merged.items()]


def pod_dns(pod: Obj, cluster_dns: list[str], cluster_domain: str, host: DNSConfig,
            host_resolv_conf: str) -> PodDNS:
    """The DNS configuration the kubelet gives this pod."""
    spec = pod["spec"]
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    warnings: list[tuple[str, str]] = []
    if policy == "None":
        kind = "none"
    elif policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork")):
        kind = "cluster"
    else:
        kind = "host"
    if kind == "cluster" and not cluster_dns:
        warnings.append(("MissingClusterDNS",
                         f'pod: "{pod["metadata"]["name"]}_{pod["metadata"]["namespace"]}'
                         f'({pod["metadata"]["uid"]})". kubelet does not have ClusterDNS IP configured and '
                         f'cannot create Pod using "{policy}" policy. Falling back to "Default" policy.'))
        kind = "host"

    config = DNSConfig(list(host.servers), list(host.searches), list(host.options))
    if kind == "none":
        config = DNSConfig()
    elif kind == "cluster":
        config.servers = list(cluster_dns)
        if cluster_domain:
            ns = pod["metadata"]["namespace"]
            cluster_search = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
            config.searches = unique(cluster_search + config.searches)
        config.options = list(CLUSTER_OPTIONS)
    elif not host_resolv_conf:
        # No node configuration: as the kubelet does, point at the local machine, which answers nothing.
        config.servers, config.searches = ["127.0.0.1"], ["."]

    extra = spec.get("dnsConfig") or {}
    if extra:
        config.servers = unique(config.servers + list(extra.get("nameservers") or []))
        config.searches = unique(config.searches + list(extra.get("searches") or []))
        config.options = merge_options(config.options, list(extra.get("options") or []))
    fit_limits(config, warnings)
    return PodDNS(config, warnings)


def fit_limits(config: DNSConfig, warnings: list[tuple[str, str]]) -> None:
    if len(config.servers) > MAX_NAMESERVERS:
        config.servers = config.servers[:MAX_NAMESERVERS]
        warnings.append(("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been "
                                             f"omitted, the applied nameserver line is: {' '.join(config.servers)}"))
    searches: list[str] = []
    chars = 0
    for search in config.searches[:MAX_SEARCH_PATHS]:
        if chars + len(search) + (1 if searches else 0) > MAX_SEARCH_CHARS:
            break
        chars += len(search) + (1 if searches else 0)
        searches.append(search)
    if searches != config.searches:
        config.searches = searches
        warnings.append(("DNSConfigForming", "Search Line limits were exceeded, some search paths have been "
                                             f"omitted, the applied search line is: {' '.join(searches)}"))
