"""DNS between containers (the dnsname CNI plugin and a real dnsmasq per network), through
the real kpod CLI, conmon, runc and the CNI plugins.

Every network here is made by the test itself, on a /24 of 10.214.0.0/15 and a ``kt*``
bridge it claims (tests/helpers_net.py); the dnsname plugin keeps its files under the test's
own runroot. Whatever happens, the fixture stops the dnsmasq processes it finds for the
test's runroot, removes the plugin's INPUT rules for its bridges, the bridges and the
networks.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.helpers_images import CtrEnv, processes_mentioning
from tests.helpers_net import claim_subnet, delete_link, host_links, new_bridge, release_subnet, rules_mentioning

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("network tests need root", allow_module_level=True)
if not os.path.exists("/usr/lib/cni/bridge"):
    pytest.skip("CNI plugins not installed", allow_module_level=True)
if not os.path.exists("/usr/lib/cni/dnsname") or not shutil.which("dnsmasq", path="/usr/sbin:/usr/bin:/sbin:/bin"):
    pytest.skip("dnsname CNI plugin or dnsmasq not installed (golang-github-containernetworking-plugin-dnsname, "
                "dnsmasq-base)", allow_module_level=True)


def dns_dir(runroot: str, network: str) -> str:
    return os.path.join(runroot, "cni", "dns", "containers", "cni", "dnsname", network)


def dnsmasq_pids(text: str) -> list[int]:
    """Live dnsmasq processes whose command line mentions *text*."""
    return processes_mentioning(text, ("dnsmasq",))


def dns_rules(bridge: str) -> list[str]:
    return [r for r in rules_mentioning(f"-i {bridge} ") if "--dport 53" in r]


class DnsEnv:
    def __init__(self, kpod) -> None:
        self.kpod = kpod
        self.ctr = CtrEnv(kpod, "runc", "overlay")
        self.subnets: list[str] = []
        self.bridges: list[str] = []
        self.networks: list[str] = []

    def __call__(self, *args, **kw):
        return self.ctr(*args, **kw)

    def network(self, name: str, *flags: str) -> tuple[str, str]:
        """Create network *name* on a claimed subnet and bridge; returns them."""
        subnet, bridge = claim_subnet(), new_bridge()
        self.subnets.append(subnet)
        self.bridges.append(bridge)
        self.networks.append(name)
        assert self.ctr("network", "create", "--subnet", subnet, "--interface-name", bridge, *flags,
                        name).stdout == f"{name}\n"
        return subnet, bridge

    def cleanup(self) -> list[str]:
        problems = []
        try:
            self.ctr.finalize()
        except AssertionError as exc:
            problems.append(str(exc))
        for n in self.networks:
            self.ctr("network", "rm", "-f", n, check=False)
        left = dnsmasq_pids(self.kpod.runroot)
        if left:
            problems.append(f"dnsmasq still running: {left}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for b in self.bridges:
            rules = dns_rules(b)
            if rules:
                problems.append(f"DNS rules left: {rules}")
                for _ in rules:
                    subprocess.run(["iptables", "-w", "-D", "INPUT", "-i", b, "-p", "udp", "-m", "udp", "--dport",
                                    "53", "-j", "ACCEPT"], capture_output=True)
            delete_link(b)
        for s in self.subnets:
            release_subnet(s)
        problems += self.kpod.network_leftovers(self.ctr.seen)
        return problems


@pytest.fixture
def dns(kpod):
    env = DnsEnv(kpod)
    try:
        yield env
    finally:
        problems = env.cleanup()
    assert not problems, problems


def resolv_of(k, name: str) -> list[str]:
    cid = k.ctr.inspect(name, "{{.Id}}")
    with open(os.path.join(k.kpod.runroot, "containers", cid, "resolv.conf")) as f:
        return f.read().splitlines()


def test_containers_resolve_each_other_by_name(dns):
    k = dns
    subnet, bridge = k.network("dnsnet")
    gateway = str(ipaddress.ip_network(subnet).network_address + 1)
    info = json.loads(k("network", "inspect", "dnsnet").stdout)[0]
    assert info["dns_enabled"] is True and "dnsname" in info["plugins"]
    assert k("network", "inspect", "--format", "{{.DNSEnabled}}", "dnsnet").stdout == "true\n"
    # the default network keeps DNS off, as podman's does
    assert json.loads(k("network", "inspect", "kpod").stdout)[0]["dns_enabled"] is False

    k("run", "-d", "--name", "alpha", "--network", "dnsnet", "busybox", "sleep", "300")
    alpha_ip = k.ctr.inspect("alpha", "{{.NetworkSettings.IPAddress}}")
    assert ipaddress.ip_address(alpha_ip) in ipaddress.ip_network(subnet)
    d = dns_dir(k.kpod.runroot, "dnsnet")
    assert len(dnsmasq_pids(d)) == 1
    assert "alpha" in open(os.path.join(d, "addnhosts")).read()
    assert dns_rules(bridge)
    resolv = resolv_of(k, "alpha")
    assert [l for l in resolv if l.startswith("nameserver")][0] == f"nameserver {gateway}"
    assert [l for l in resolv if l.startswith("search")][0].split()[:2] == ["search", "dns.podman"]

    # from another container: by name (nslookup, ping) and by the name with the search domain
    script = "nslookup alpha; nslookup alpha.dns.podman %s; ping -c1 -W5 alpha" % gateway
    p = k("run", "--rm", "--name", "beta", "--network", "dnsnet", "--cap-add", "NET_RAW", "busybox", "sh", "-c",
          script)
    assert p.stdout.count(f"Address: {alpha_ip}") == 2, p.stdout
    assert "1 packets received" in p.stdout, p.stdout
    # beta's entry went with it; alpha's stays
    hosts = open(os.path.join(d, "addnhosts")).read()
    assert "beta" not in hosts and "alpha" in hosts
    # --dns still wins over the network's server
    k("create", "--name", "custom", "--network", "dnsnet", "--dns", "10.9.9.9", "busybox", "true")
    k("start", "-a", "custom")
    assert [l for l in resolv_of(k, "custom") if l.startswith("nameserver")] == ["nameserver 10.9.9.9"]
    k("rm", "custom")

    # the last container leaving stops the network's dnsmasq and removes its entries
    k("stop", "-t", "0", "alpha")
    assert not dnsmasq_pids(d)
    assert not os.path.exists(os.path.join(d, "addnhosts"))
    # started again, then network rm -f: containers, dnsmasq, files and the INPUT rule go
    k("start", "alpha")
    assert len(dnsmasq_pids(d)) == 1
    p = k("run", "--rm", "--network", "dnsnet", "busybox", "nslookup", "alpha")
    assert f"Address: {k.ctr.inspect('alpha', '{{.NetworkSettings.IPAddress}}')}" in p.stdout
    assert k("network", "rm", "-f", "dnsnet").stdout == "dnsnet\n"
    assert not dnsmasq_pids(k.kpod.runroot)
    assert not os.path.exists(d)
    assert not dns_rules(bridge)
    assert bridge not in host_links()


def test_disable_dns_and_internal(dns):
    k = dns
    subnet, bridge = k.network("nodns", "--disable-dns")
    conf = json.load(open(os.path.join(k.kpod.cni_dir, "nodns.conflist")))
    assert "dnsname" not in [p["type"] for p in conf["plugins"]]
    assert json.loads(k("network", "inspect", "nodns").stdout)[0]["dns_enabled"] is False
    k("run", "-d", "--name", "quiet", "--network", "nodns", "busybox", "sleep", "300")
    gateway = str(ipaddress.ip_network(subnet).network_address + 1)
    resolv = resolv_of(k, "quiet")
    assert f"nameserver {gateway}" not in resolv and not any("dns.podman" in l for l in resolv)
    assert not dnsmasq_pids(k.kpod.runroot) and not dns_rules(bridge)
    # an internal network with DNS: the gateway address stays on the bridge for dnsmasq,
    # but there is no default route and no masquerading
    isub, ibridge = k.network("idns", "--internal")
    info = json.loads(k("network", "inspect", "idns").stdout)[0]
    assert info["internal"] is True and info["dns_enabled"] is True
    k("run", "-d", "--name", "one", "--network", "idns", "busybox", "sleep", "300")
    p = k("run", "--rm", "--network", "idns", "busybox", "sh", "-c", "nslookup one; ip route")
    assert f"Address: {k.ctr.inspect('one', '{{.NetworkSettings.IPAddress}}')}" in p.stdout
    assert "default" not in p.stdout
    k("rm", "-f", "one", "quiet")
    assert not dnsmasq_pids(k.kpod.runroot)
    assert k("network", "rm", "idns", "nodns").stdout == "idns\nnodns\n"
    assert not dns_rules(ibridge)


def test_network_alias(dns):
    k = dns
    k.network("aliasnet")
    k("run", "-d", "--name", "db", "--network", "aliasnet", "--network-alias", "database",
      "--network-alias", "pg", "busybox", "sleep", "300")
    ip = k.ctr.inspect("db", "{{.NetworkSettings.IPAddress}}")
    short = k.ctr.inspect("db", "{{.Id}}")[:12]
    aliases = json.loads(k.ctr.inspect("db", "{{json .NetworkSettings.Networks}}"))["aliasnet"]["Aliases"]
    assert aliases == [short, "database", "pg"]
    p = k("run", "--rm", "--network", "aliasnet", "busybox", "sh", "-c", "nslookup database; nslookup pg")
    assert p.stdout.count(f"Address: {ip}") == 2, p.stdout
    # bad input: one error line, nothing created
    before = k("ps", "-aq").stdout
    for args, msg in ((["--network", "aliasnet", "--network-alias", "bad name!"], "invalid --network-alias"),
                      (["--network", "none", "--network-alias", "x"], "needs bridge networking")):
        p = k("create", *args, "busybox", "true", check=False)
        assert p.returncode == 125 and p.stderr.startswith("Error: ") and msg in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert k("ps", "-aq").stdout == before
    k("rm", "-f", "db")
