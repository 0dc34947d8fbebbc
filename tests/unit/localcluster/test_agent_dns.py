"""The node agent writes each pod's resolv.conf as the kubelet does for every dnsPolicy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localcluster.agent.dns import DNSConfig, host_config, parse_resolv_conf, pod_dns

CLUSTER_DNS = ["10.96.0.10"]
NO_HOST = DNSConfig()


def pod(namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": namespace, "uid": "u-1"},
            "spec": {"containers": [{"name": "c"}], **spec}}


def resolv(p: dict[str, Any], cluster_dns: list[str] = CLUSTER_DNS, host: DNSConfig = NO_HOST,
           host_path: str = "") -> str:
    return pod_dns(p, cluster_dns, "cluster.local", host, host_path).config.render()


def test_cluster_first_searches_the_namespace_then_the_cluster_with_ndots_5() -> None:
    assert resolv(pod()) == ("search shop.svc.cluster.local svc.cluster.local cluster.local\n"
                             "nameserver 10.96.0.10\n"
                             "options ndots:5\n")


def test_cluster_first_is_the_default_policy_and_appends_the_nodes_search_domains() -> None:
    host = DNSConfig(["192.0.2.53"], ["corp.example"], ["timeout:2"])
    text = resolv(pod(dnsPolicy="ClusterFirst"), host=host, host_path="/etc/resolv.conf")
    assert text == ("search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
                    "nameserver 10.96.0.10\n"
                    "options ndots:5\n")


def test_cluster_first_without_a_cluster_dns_falls_back_to_default_and_warns() -> None:
    result = pod_dns(pod(), [], "cluster.local", NO_HOST, "")
    # No node resolvers either: the kubelet points at the local machine, which answers nothing.
    assert result.config.render() == "search .\nnameserver 127.0.0.1\n"
    assert [reason for reason, _ in result.warnings] == ["MissingClusterDNS"]


def test_default_policy_takes_the_nodes_configuration() -> None:
    host = DNSConfig(["192.0.2.53", "192.0.2.54"], ["corp.example"], ["timeout:2"])
    text = resolv(pod(dnsPolicy="Default"), host=host, host_path="/etc/resolv.conf")
    assert text == "search corp.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions timeout:2\n"


def test_host_network_pods_with_cluster_first_use_the_nodes_configuration() -> None:
    host = DNSConfig(["192.0.2.53"], [], [])
    assert resolv(pod(hostNetwork=True), host=host, host_path="/etc/resolv.conf") == "nameserver 192.0.2.53\n"
    assert resolv(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")).startswith("search shop.svc.")


def test_none_policy_is_exactly_the_pods_dns_config() -> None:
    config = {"nameservers": ["192.0.2.1"], "searches": ["a.example", "b.example"],
              "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    assert resolv(pod(dnsPolicy="None", dnsConfig=config)) == (
        "search a.example b.example\nnameserver 192.0.2.1\noptions ndots:2 edns0\n")


def test_dns_config_is_merged_into_cluster_first_and_overrides_options_by_name() -> None:
    config = {"nameservers": ["10.96.0.10", "192.0.2.1"], "searches": ["extra.example"],
              "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}]}
    assert resolv(pod(dnsConfig=config)) == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local extra.example\n"
        "nameserver 10.96.0.10\nnameserver 192.0.2.1\n"
        "options ndots:1 single-request-reopen\n")


def test_more_than_three_nameservers_are_cut_with_a_warning() -> None:
    config = {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]}
    result = pod_dns(pod(dnsConfig=config), CLUSTER_DNS, "cluster.local", NO_HOST, "")
    assert result.config.servers == ["10.96.0.10", "192.0.2.1", "192.0.2.2"]
    assert [reason for reason, _ in result.warnings] == ["DNSConfigForming"]


@pytest.mark.parametrize(("text", "expected"), [
    ("nameserver 192.0.2.53\nsearch a.example b.example.\noptions ndots:2 rotate\n",
     DNSConfig(["192.0.2.53"], ["a.example", "b.example"], ["ndots:2", "rotate"])),
    ("# comment\nsearch old.example\nsearch new.example\nnameserver 192.0.2.1 ; trailing\n",
     DNSConfig(["192.0.2.1"], ["new.example"], [])),
    ("search .\n", DNSConfig([], [], [])),
])
def test_the_nodes_resolv_conf_is_read_as_the_kubelet_reads_it(text: str, expected: DNSConfig) -> None:
    assert parse_resolv_conf(text) == expected


def test_an_empty_resolv_conf_path_means_no_node_configuration(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    assert host_config(str(tmp_path / "resolv.conf")).servers == ["192.0.2.53"]
    assert host_config("") == DNSConfig()


def test_local_cluster_passes_its_dns_settings_to_the_node_agent(tmp_path: Path) -> None:
    from localcluster import LocalCluster, Settings

    def flags(settings: Settings) -> dict[str, str]:
        argv = LocalCluster(settings).agent_argv("kubeconfig")
        return {flag: argv[i + 1] for i, flag in enumerate(argv)
                if flag in ("--cluster-dns", "--cluster-domain", "--resolv-conf")}

    assert flags(Settings(state_dir=tmp_path, cluster_dns=None)) == {"--cluster-domain": "cluster.local",
                                                                     "--resolv-conf": ""}
    # By default, the kube-dns Service LocalCluster installs at start.
    assert flags(Settings(state_dir=tmp_path)) == {
        "--cluster-dns": "10.96.0.10", "--cluster-domain": "cluster.local", "--resolv-conf": ""}
