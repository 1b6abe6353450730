"""Parsers and pure helpers of libpod_core.network and libpod_core.pods."""

from __future__ import annotations

import pytest

from libpod_core.errors import InvalidArgument
from libpod_core.network import (
    _dnat_ports,
    customize_resolv,
    expand_ports,
    loopback6,
    parse_add_host,
    parse_publish,
    port_bindings,
    ports_text,
    spec_namespaces,
)
from libpod_core.pods import parse_share, pause_layer_tar


@pytest.mark.parametrize("spec, want", [
    ("80", [{"host_ip": "", "host_port": 0, "container_port": 80, "protocol": "tcp", "range": 1}]),
    ("8080:80", [{"host_ip": "", "host_port": 8080, "container_port": 80, "protocol": "tcp", "range": 1}]),
    ("127.0.0.1:8080:80/udp", [{"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80,
                                "protocol": "udp", "range": 1}]),
    ("127.0.0.1::80", [{"host_ip": "127.0.0.1", "host_port": 0, "container_port": 80, "protocol": "tcp", "range": 1}]),
    ("[::1]:8080:80", [{"host_ip": "::1", "host_port": 8080, "container_port": 80, "protocol": "tcp", "range": 1}]),
    ("[::1]::80", [{"host_ip": "::1", "host_port": 0, "container_port": 80, "protocol": "tcp", "range": 1}]),
    ("[0:0::1]:8080:80/udp", [{"host_ip": "::1", "host_port": 8080, "container_port": 80, "protocol": "udp",
                               "range": 1}]),
    ("[fd00:1::5]:9000-9001:80-81", [{"host_ip": "fd00:1::5", "host_port": 9000, "container_port": 80,
                                      "protocol": "tcp", "range": 2}]),
    ("9000-9002:8000-8002", [{"host_ip": "", "host_port": 9000, "container_port": 8000, "protocol": "tcp",
                              "range": 3}]),
    ("53:53/tcp,udp", [{"host_ip": "", "host_port": 53, "container_port": 53, "protocol": "tcp", "range": 1},
                       {"host_ip": "", "host_port": 53, "container_port": 53, "protocol": "udp", "range": 1}]),
])
def test_parse_publish(spec, want):
    assert parse_publish(spec) == want


@pytest.mark.parametrize("spec", ["", "abc", "80:", ":80", "1:2:3:4", "0", "70000", "80/icmp", "1-3:1-2",
                                  "bad:80:80", "[::1:80:80", "5-3", "[::1]8080:80", "[::1]:80", "[zz]:1:80",
                                  "[]:1:80", "::1:8080:80", "[fe80::1%eth0]:1:80", "[::1]:1:2:3"])
def test_parse_publish_rejects(spec):
    with pytest.raises(InvalidArgument):
        parse_publish(spec)


def test_port_reports():
    ports = parse_publish("127.0.0.1:8080:80") + parse_publish("9000-9001:9000-9001/udp")
    assert ports_text(ports) == "127.0.0.1:8080->80/tcp, 0.0.0.0:9000-9001->9000-9001/udp"
    assert expand_ports(ports) == [("127.0.0.1", 8080, 80, "tcp"), ("", 9000, 9000, "udp"), ("", 9001, 9001, "udp")]
    assert port_bindings(ports) == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                    "9000/udp": [{"HostIp": "0.0.0.0", "HostPort": "9000"}],
                                    "9001/udp": [{"HostIp": "0.0.0.0", "HostPort": "9001"}]}


def test_parse_add_host():
    assert parse_add_host("db:10.0.0.2") == ("db", "10.0.0.2")
    assert parse_add_host("db=10.0.0.2") == ("db", "10.0.0.2")
    assert parse_add_host("v6:[::1]") == ("v6", "::1")
    assert parse_add_host("v6:2001:db8::1") == ("v6", "2001:db8::1")
    assert parse_add_host("gw:host-gateway") == ("gw", "host-gateway")
    for bad in ("db", "db:", ":1.2.3.4", "db:notanip", "bad name:1.2.3.4"):
        with pytest.raises(InvalidArgument):
            parse_add_host(bad)


def test_customize_resolv():
    base = "nameserver 10.0.0.1\nsearch corp.example\noptions edns0\n"
    assert customize_resolv(base, [], [], []) == base
    out = customize_resolv(base, ["10.9.9.9", "10.9.9.8"], ["a.example"], ["ndots:2"])
    assert out == "nameserver 10.9.9.9\nnameserver 10.9.9.8\nsearch a.example\noptions ndots:2\n"
    assert "search" not in customize_resolv(base, [], ["."], [])


def test_spec_namespaces():
    class O:
        ipc = "container:abc"
        uts = None
        pid = "host"

    assert spec_namespaces(O(), "bridge") == {"network": "private", "ipc": "private", "uts": "private", "pid": "host"}
    assert spec_namespaces(O(), "ns:/run/netns/x")["network"] == "ns:/run/netns/x"
    assert spec_namespaces(O(), "container:abc")["network"] == "private"
    assert spec_namespaces(O(), "none")["network"] == "none"


def test_parse_share():
    assert parse_share(None, True) == ["net", "ipc", "uts"]
    assert parse_share(None, False) == []
    assert parse_share("+pid", True) == ["net", "ipc", "uts", "pid"]
    assert parse_share("uts,net", True) == ["net", "uts"]
    assert parse_share("none", True) == []
    with pytest.raises(InvalidArgument):
        parse_share("cgroupx", True)
    with pytest.raises(InvalidArgument):
        parse_share("net", False)


def test_pause_layer_is_deterministic(tmp_path):
    f = tmp_path / "catatonit"
    f.write_bytes(b"\x7fELF-not-really")
    assert pause_layer_tar(str(f)) == pause_layer_tar(str(f))


def test_loopback6_and_dnat_ports():
    assert loopback6("::1") and loopback6("0:0::1")
    assert not loopback6("127.0.0.1") and not loopback6("::") and not loopback6("") and not loopback6(None)
    ports = parse_publish("[::1]:8080:80") + parse_publish("127.0.0.1:8081:80") + parse_publish("8082:80")
    assert _dnat_ports(ports) == ports[1:]  # the kernel cannot DNAT ::1: those are proxied
