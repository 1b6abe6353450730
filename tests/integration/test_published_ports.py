"""Published host ports held by conmon while the container runs, IPv6 networks and ports
published on [::1], through the real kpod CLI, conmon, runc/crun and the CNI plugins.

Same isolation as tests/integration/test_network.py: the test's own store, default network
(a claimed /24 and bridge), networks made here on claimed subnets (IPv6 ones: random unique
local /64s) and bridges of the test's own, traffic only to 127.0.0.1, ::1 and the test's
containers; nothing may be left behind (namespaces, veths, leases, iptables rules, conmon,
port proxies).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import urllib.request

import pytest

from libpod_core.network import proxy_pids as _proxies, socket_proxyd
from tests.conftest import assert_one_error_line
from tests.helpers_net import claim_subnet, delete_link, new_bridge, release_subnet
from tests.integration.test_network import HTTPD, assert_clean, cid_of, fetch, free_port, net, net_rt  # noqa: F401

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("network tests need root", allow_module_level=True)
if not os.path.exists("/usr/lib/cni/bridge"):
    pytest.skip("CNI plugins not installed", allow_module_level=True)


def _sockets_of(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _inode(table: str, ip: str, port: int) -> str | None:
    """The inode of the socket bound to ip:port in /proc/net/{tcp,udp,tcp6,udp6}."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        want = addr.packed[::-1].hex().upper()
    else:
        p = addr.packed
        want = b"".join(p[i:i + 4][::-1] for i in range(0, 16, 4)).hex().upper()
    with open(f"/proc/net/{table}") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_ip, _, local_port = fields[1].partition(":")
            if local_ip == want and int(local_port, 16) == port:
                return fields[9]
    return None


def _bind_fails(family: int, kind: int, ip: str, port: int) -> bool:
    s = socket.socket(family, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def fetch6(port: int) -> str:
    return fetch(port, host="[::1]")


def free_port6() -> int:
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# ports held while the container runs
# ---------------------------------------------------------------------------------------

def test_conmon_holds_published_ports(net_rt):
    k = net_rt
    tport, uport = free_port(), free_port()
    k("run", "-d", "--name", "web", "-p", f"127.0.0.1:{tport}:80", "-p", f"127.0.0.1:{uport}:5353/udp",
      "busybox", "sh", "-c", HTTPD)
    cid = cid_of(k, "web")
    assert fetch(tport).startswith("hello-")  # portmap's DNAT still forwards
    conmon = int(k.inspect("web", "{{.State.ConmonPid}}"))
    init = int(k.inspect("web", "{{.State.Pid}}"))
    tcp, udp = _inode("tcp", "127.0.0.1", tport), _inode("udp", "127.0.0.1", uport)
    assert tcp and udp
    # conmon holds both (a listening TCP socket, a bound UDP one); the container does not
    assert {tcp, udp} <= _sockets_of(conmon)
    assert not {tcp, udp} & _sockets_of(init)
    # no other process can take them, SO_REUSEADDR or not
    assert _bind_fails(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", tport)
    assert _bind_fails(socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0", tport)
    assert _bind_fails(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1", uport)
    # another container publishing the same host port is refused, nothing is created
    p = k("run", "-d", "--name", "second", "-p", f"{tport}:8080", "busybox", "true", check=False)
    assert_one_error_line(p, 125, f"already published by container {cid[:12]}")
    assert k("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["web"]
    # stopped: the ports are free at once (conmon closes them before it reports the exit)
    k("stop", "-t", "0", "web")
    assert not _bind_fails(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", tport)
    assert not _bind_fails(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1", uport)
    assert_clean(k, cid)
    # started again: held again, by the new conmon
    k("start", "web")
    assert fetch(tport).startswith("hello-")
    assert _inode("tcp", "127.0.0.1", tport) in _sockets_of(int(k.inspect("web", "{{.State.ConmonPid}}")))
    k("rm", "-f", "web")
    assert not _bind_fails(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", tport)
    assert_clean(k, cid)


def test_two_containers_one_port(net):
    """Both created with the same host port (allowed, as in podman: ports are taken at
    start), then started at the same time: exactly one gets it, the other fails clearly."""
    import subprocess

    from tests.conftest import KPOD

    k = net
    port = free_port()
    for name in ("one", "two"):
        k("create", "--name", name, "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD)
    procs = [subprocess.Popen([KPOD, *k.kpod.global_args, "start", name], env=k.kpod.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in ("one", "two")]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 125], results
    err = next(e for rc, e in results if rc)
    assert err.startswith("Error: cannot publish port ") and err.count("\n") == 1, err
    winner = "one" if results[0][0] == 0 else "two"
    assert k("ps", "--format", "{{.Names}}").stdout.split() == [winner]
    assert fetch(port) == f"hello-{cid_of(k, winner)[:12]}\n"
    ids = [cid_of(k, n) for n in ("one", "two")]
    k("rm", "-f", "one", "two")
    assert_clean(k, *ids)


def test_port_in_use(net):
    k = net
    port = free_port()
    # taken by another process: one error before anything exists (TCP and UDP)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        p = k("run", "-d", "--name", "clash", "-p", f"127.0.0.1:{port}:80", "busybox", "true", check=False)
        assert_one_error_line(p, 125, f"cannot publish port 127.0.0.1:{port}/tcp: Address already in use")
        p = k("run", "-d", "-p", f"{port}:80", "busybox", "true", check=False)
        assert_one_error_line(p, 125, f"cannot publish port {port}/tcp: Address already in use")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", port))
        p = k("create", "-p", f"127.0.0.1:{port}:53/udp", "busybox", "true", check=False)
        assert_one_error_line(p, 125, f"cannot publish port 127.0.0.1:{port}/udp: Address already in use")
    assert k("ps", "-aq").stdout == ""
    assert not os.listdir(os.path.join(k.runroot, "netns")) if os.path.isdir(
        os.path.join(k.runroot, "netns")) else True
    # taken between create and start: start fails with the same error, sets nothing up, and
    # works once the port is free again
    k("create", "--name", "later", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD)
    cid = cid_of(k, "later")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        p = k("start", "later", check=False)
        assert_one_error_line(p, 125, f"cannot publish port 127.0.0.1:{port}/tcp: Address already in use")
        assert k.state("later") == "created"
        assert_clean(k, cid)
    k("start", "later")
    assert fetch(port).startswith("hello-")
    k("rm", "-f", "later")
    assert_clean(k, cid)


# ---------------------------------------------------------------------------------------
# IPv6
# ---------------------------------------------------------------------------------------

def _ula() -> str:
    """A random unique local /64 (nothing on the host or in other tests can have it)."""
    return str(ipaddress.ip_network((0xFD << 120 | int.from_bytes(os.urandom(5), "big") << 80, 64)))


def _v6_rules(prefix: str) -> list[str]:
    from tests.helpers_net import iptables_save

    return [ln for ln in iptables_save() if prefix in ln]


@pytest.mark.skipif(socket_proxyd() is None, reason="systemd-socket-proxyd not installed")
def test_ipv6_networks_and_ports_on_loopback(net):
    k = net
    subnet4, dual_br, v6_br = claim_subnet(), new_bridge(), new_bridge()
    v6only = _ula()
    try:
        # --ipv6: the claimed IPv4 subnet plus a random IPv6 /64 (podman's dual stack)
        k("network", "create", "--ipv6", "--subnet", subnet4, "--interface-name", dual_br, "dual")
        info = k("network", "inspect", "--format", "{{.IPv6Enabled}} {{len .Subnets}}", "dual").stdout.split()
        assert info == ["true", "2"]
        subnets = [ipaddress.ip_network(s["subnet"]) for s in json.loads(k("network", "inspect", "dual").stdout)[0]
                   ["subnets"]]
        assert [s.version for s in subnets] == [4, 6] and str(subnets[0]) == subnet4
        assert subnets[1].prefixlen == 64 and subnets[1].subnet_of(ipaddress.ip_network("fd00::/8"))
        # an IPv6-only network: just an IPv6 --subnet
        k("network", "create", "--subnet", v6only, "--interface-name", v6_br, "--disable-dns", "v6")
        assert k("network", "inspect", "--format", "{{.IPv6Enabled}}", "v6").stdout.strip() == "true"

        # dual stack: both addresses; [::1] answers (through the proxy), 127.0.0.1 too (DNAT)
        p6, p4 = free_port6(), free_port()
        k("run", "-d", "--name", "ds", "--network", "dual", "-p", f"[::1]:{p6}:80", "-p", f"127.0.0.1:{p4}:80",
          "busybox", "sh", "-c", HTTPD)
        ds = cid_of(k, "ds")
        ns = k.inspect("ds")["NetworkSettings"]
        assert ipaddress.ip_address(ns["IPAddress"]) in subnets[0]
        assert ipaddress.ip_address(ns["GlobalIPv6Address"]) in subnets[1] and ns["GlobalIPv6PrefixLen"] == 64
        assert fetch6(p6) == f"hello-{ds[:12]}\n"
        assert fetch(p4) == f"hello-{ds[:12]}\n"
        assert k("port", "ds", "80").stdout.splitlines() == [f"[::1]:{p6}", f"127.0.0.1:{p4}"]
        assert f"[::1]:{p6}->80/tcp" in k("ps", "--format", "{{.Ports}}").stdout
        assert ns["IPv6Gateway"] == str(subnets[1].network_address + 1)
        # held: conmon and the proxy share the listening socket; nobody else can bind it
        proxies = _proxies(ds)
        assert len(proxies) == 1
        inode = _inode("tcp6", "::1", p6)
        assert inode in _sockets_of(int(k.inspect("ds", "{{.State.ConmonPid}}"))) & _sockets_of(proxies[0])
        assert _bind_fails(socket.AF_INET6, socket.SOCK_STREAM, "::1", p6)
        # stop: proxy gone, port free; start: forwarded again
        k("stop", "-t", "0", "ds")
        assert not _proxies(ds) and not _bind_fails(socket.AF_INET6, socket.SOCK_STREAM, "::1", p6)
        k("start", "ds")
        assert fetch6(p6) == f"hello-{ds[:12]}\n"

        # IPv6 only: the container has only its IPv6 address (also in its /etc/hosts)
        p6b = free_port6()
        k("run", "-d", "--name", "only6", "--network", "v6", "-p", f"[::1]:{p6b}:80", "busybox", "sh", "-c", HTTPD)
        only6 = cid_of(k, "only6")
        ns = k.inspect("only6")["NetworkSettings"]
        assert ns["IPAddress"] == "" and ipaddress.ip_address(ns["GlobalIPv6Address"]) in ipaddress.ip_network(v6only)
        assert fetch6(p6b) == f"hello-{only6[:12]}\n"
        hosts = k("exec", "only6", "cat", "/etc/hosts").stdout
        assert f"{ns['GlobalIPv6Address']}\t{only6[:12]} only6" in hosts
        # the host reaches it by its address, through the network's bridge
        with urllib.request.urlopen(f"http://[{ns['GlobalIPv6Address']}]/", timeout=5) as r:
            assert r.read().decode() == f"hello-{only6[:12]}\n"

        # IPv4 only (the default network): ::1 is forwarded to the IPv4 address
        p6c = free_port6()
        k("run", "-d", "--name", "only4", "-p", f"[::1]:{p6c}:80", "busybox", "sh", "-c", HTTPD)
        only4 = cid_of(k, "only4")
        assert fetch6(p6c) == f"hello-{only4[:12]}\n"

        k("rm", "-f", "ds", "only6", "only4")
        assert not _proxies(ds) and not _proxies(only6) and not _proxies(only4)
        assert_clean(k, ds, only6, only4)
        prefix6 = str(ipaddress.ip_network(v6only).network_address).rstrip(":")
        assert not _v6_rules(prefix6) and not _v6_rules(str(subnets[1].network_address).rstrip(":"))
        for p in (p6, p6b, p6c):
            assert not _bind_fails(socket.AF_INET6, socket.SOCK_STREAM, "::1", p)
        k("network", "rm", "dual", "v6")
        assert not os.path.exists(f"/sys/class/net/{dual_br}") and not os.path.exists(f"/sys/class/net/{v6_br}")
    finally:
        k.ids()  # (recorded for the fixture's checks)
        k("rm", "-fa", check=False)
        left = [pid for cid in k.seen for pid in _proxies(cid)]
        k("network", "rm", "-f", "dual", "v6", check=False)
        for b in (dual_br, v6_br):
            delete_link(b)
        release_subnet(subnet4)
    assert not left, f"port proxies left: {left}"


def test_ipv6_publish_bad_input(net):
    k = net
    for spec, msg in (("[::1:8080:80", "expected [IPv6]:HOSTPORT:CONTAINERPORT"),
                      ("[::1]8080:80", "expected [IPv6]:HOSTPORT:CONTAINERPORT"),
                      ("[::1]:80", "expected [IPv6]:HOSTPORT:CONTAINERPORT"),
                      ("[zz]:8080:80", "'zz' is not an IP address"),
                      ("[fe80::1%eth0]:8080:80", "is not an IP address"),
                      ("[]:8080:80", "empty host IP"),
                      ("::1:8080:80", "IPv6 addresses in brackets"),
                      ("[::1]:8080:53/udp", "only TCP")):
        assert_one_error_line(k("create", "-p", spec, "busybox", check=False), 125, msg)
        assert_one_error_line(k("run", "-d", "-p", spec, "busybox", "true", check=False), 125, msg)
    port = free_port6()
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::1", port))
        busy.listen()
        p = k("run", "-d", "-p", f"[::1]:{port}:80", "busybox", "true", check=False)
        assert_one_error_line(p, 125, f"cannot publish port [::1]:{port}/tcp: Address already in use")
    assert k("ps", "-aq").stdout == ""
    p = k("network", "create", "--ipv6", "--subnet", "fd00::/200", "bad6", check=False)
    assert_one_error_line(p, 125, "invalid subnet")
    assert k("network", "exists", "bad6", check=False).returncode == 1
