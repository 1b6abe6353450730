"""Integration tests of the CNI network backend with the real CNI plugins (/usr/lib/cni).

Everything these tests make is their own: a temporary CNI config dir, runroot and graphroot,
network names, bridge names (``kt<pid>...``) and subnets inside 10.213.0.0/16. Traffic only
goes to 127.0.0.1 and to addresses inside the namespaces the tests create. Every test's
fixture tears down what it set up even on failure, and the session fixture removes the
shared chains the plugins leave behind (CNI-FORWARD, CNI-HOSTPORT-*...) when they were not
there before, restores net.ipv4.ip_forward, and checks nothing of ours is left.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import os
import re
import select
import shlex
import socket
import subprocess
import sys
import time
import uuid

import pytest

from libpod_core.config import Config
from libpod_core.errors import AlreadyExists, InvalidArgument, NetworkError, NotFound

from kpod_net_cni import CNIBackend
from kpod_net_cni import netns as knetns

CNI_BIN = "/usr/lib/cni"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(os.path.join(CNI_BIN, "bridge")), reason="CNI plugins not installed"),
]

TAG = f"kt{os.getpid() % 10000}"  # prefix of every bridge / interface we create
_subnets = itertools.count(1)  # 10.213.N.0/24, N < 192 (10.213.192.0/18 is the auto pool)
_bridges = itertools.count(1)

SHARED_CHAINS = {
    "filter": ("CNI-FORWARD", "CNI-ADMIN"),
    "nat": ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"),
}
IPV4_RE = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


# ------------------------------------------------------------------------------------
# host state helpers
# ------------------------------------------------------------------------------------
def iptables_save() -> list[str]:
    lines = []
    for cmd in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([cmd], capture_output=True, text=True).stdout
        lines += [re.sub(r"\s*\[\d+:\d+\]", "", ln) for ln in out.splitlines() if ln and not ln.startswith("#")]
    return lines


def chain_names(network: str, container_id: str) -> list[str]:
    """Per-container chains of the bridge (masquerade) and portmap plugins (test oracle)."""
    h = hashlib.sha512((network + container_id).encode()).hexdigest()
    return ["CNI-" + h[:24], "CNI-DN-" + h[:21]]


def container_rules(network: str, container_id: str, ip: str | None = None) -> list[str]:
    """iptables lines that belong to one container."""
    names = chain_names(network, container_id)
    out = []
    for ln in iptables_save():
        if (
            (container_id in ln and network in ln)
            or any(n in ln for n in names)
            or (ip and re.search(rf"\b{re.escape(ip)}\b", ln))
        ):
            out.append(ln)
    return out


def host_links(kind: str | None = None) -> set[str]:
    """Host links (of *kind*). veths enslaved to a bridge that is not one of this run's are
    left out: other test runs or engines on the machine make and remove those meanwhile."""
    cmd = ["ip", "-o", "link", "show"] + (["type", kind] if kind else [])
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    names = set()
    for ln in out.splitlines():
        if ":" not in ln:
            continue
        m = re.search(r" master (\S+)", ln)
        if kind == "veth" and m and not m.group(1).startswith(TAG):
            continue
        names.add(ln.split(":")[1].strip().split("@")[0])
    return names


def ns_exec(ns: str, *cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={ns}", *cmd], capture_output=True, text=True, timeout=timeout)


def ns_links(ns: str) -> set[str]:
    out = ns_exec(ns, "ip", "-o", "link", "show").stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if ":" in ln}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _delete_chains(cmd: str, table: str, chains: tuple[str, ...], baseline: list[str]) -> None:
    rules = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
    new = [c for c in chains if f"-N {c}" in rules and not any(ln.startswith(f":{c} ") for ln in baseline)]
    if not new:
        return
    for r in rules:  # someone else's containers still use them: leave them alone
        if any(r.startswith(f"-A {c} ") for c in new) and (IPV4_RE.search(r) or 'id: "' in r):
            return
    for r in rules:
        args = shlex.split(r)
        if len(args) > 2 and args[0] == "-A" and args[1] not in new and args[-1] in new:
            subprocess.run([cmd, "-t", table, "-D", *args[1:]], capture_output=True)
    for c in new:
        subprocess.run([cmd, "-t", table, "-F", c], capture_output=True)
    for c in new:
        subprocess.run([cmd, "-t", table, "-X", c], capture_output=True)


_CONTAINERS: list[str] = []  # every container ID the tests used


def _our_chains() -> set[str]:
    out = set()
    rules = iptables_save()
    for cid in _CONTAINERS:
        for ln in rules:  # the network name is in the rule comments
            m = re.search(r'name: \\?"([^"\\]+)\\?" id: \\?"' + cid, ln)
            if m:
                out.update(chain_names(m.group(1), cid))
    return out


def _ours(line: str) -> bool:
    return "10.213." in line or TAG in line or any(c in line for c in _CONTAINERS)


def _remove_our_rules() -> None:
    """Last resort after a failed test: delete every rule and chain that is ours."""
    chains = _our_chains()
    for cmd in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run([cmd, "-t", table, "-S"], capture_output=True, text=True).stdout.splitlines()
            for r in rules:
                args = shlex.split(r)
                if len(args) > 2 and args[0] == "-A" and (_ours(r) or args[-1] in chains) and args[1] not in chains:
                    subprocess.run([cmd, "-t", table, "-D", *args[1:]], capture_output=True)
            for c in chains:
                if f"-N {c}" in rules:
                    subprocess.run([cmd, "-t", table, "-F", c], capture_output=True)
                    subprocess.run([cmd, "-t", table, "-X", c], capture_output=True)


@pytest.fixture(scope="session", autouse=True)
def host_state():
    baseline = iptables_save()
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    netns_before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    yield
    leftovers = [ln for ln in iptables_save() if _ours(ln)]
    _remove_our_rules()
    for cmd in ("iptables", "ip6tables"):
        for table, chains in SHARED_CHAINS.items():
            _delete_chains(cmd, table, chains, baseline)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(forward)
    assert not leftovers, leftovers
    assert not [ln for ln in iptables_save() if _ours(ln)]
    assert not [n for n in host_links() if n.startswith(TAG)]
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout == netns_before


# ------------------------------------------------------------------------------------
# per-test environment
# ------------------------------------------------------------------------------------
SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, addr = s.accept()
    c.sendall((sys.argv[2] + " " + addr[0] + "\n").encode())
    c.close()
"""

CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
    print(c.makefile().readline().strip())
"""


def fetch(host: str, port: int, timeout: float = 5) -> str:
    with socket.create_connection((host, port), timeout=timeout) as c:
        return c.makefile().readline().strip()


class Env:
    """A private kpod store + CNI config dir, and everything to undo at the end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.default_name = f"{TAG}-default-{uuid.uuid4().hex[:6]}"
        self.cfg = Config.load(
            system_file="",
            user_file="",
            environ={},
            overrides={
                "cni_config_dir": str(tmp_path / "net.d"),
                "cni_plugin_dirs": [CNI_BIN],
                "runroot": str(tmp_path / "run"),
                "graphroot": str(tmp_path / "root"),
                "default_network": self.default_name,
            },
        )
        self.backend = self.make_backend(self.cfg)
        self.default_subnet = self.backend.default_subnet
        self.namespaces: list[str] = []
        self.attached: list[tuple] = []
        self.procs: list[subprocess.Popen] = []

    def make_backend(self, cfg):
        b = CNIBackend(cfg)
        b.default_subnet = self.subnet()
        b.default_bridge = self.bridge()
        b.subnet_pool = "10.213.192.0/18"
        b.bridge_prefix = TAG + "a"
        b.plugin_timeout = 30
        return b

    @staticmethod
    def subnet() -> str:
        n = next(_subnets)
        assert n < 192
        return f"10.213.{n}.0/24"

    @staticmethod
    def bridge() -> str:
        return f"{TAG}b{next(_bridges)}"

    def network(self, **options) -> str:
        name = f"{TAG}-net-{uuid.uuid4().hex[:8]}"
        options.setdefault("subnet", self.subnet())
        if options.get("driver", "bridge") == "bridge":
            options.setdefault("interface", self.bridge())
        self.backend.network_create(name, options)
        return name

    def ns(self) -> str:
        path = self.backend.network_netns_create(f"{TAG}-{uuid.uuid4().hex[:12]}")
        self.namespaces.append(path)
        return path

    def setup(self, netns, networks, ports=None, cid=None):
        cid = cid or uuid.uuid4().hex * 2
        _CONTAINERS.append(cid)
        self.attached.append((cid, netns, networks, ports))
        return cid, self.backend.network_setup(
            container_id=cid, netns_path=netns, networks=networks, port_mappings=ports or [], options={}
        )

    def teardown(self, cid, netns, networks, ports=None):
        self.backend.network_teardown(container_id=cid, netns_path=netns, networks=networks, port_mappings=ports or [])
        self.attached = [a for a in self.attached if a[0] != cid]

    def server(self, netns: str, port: int, token: str) -> None:
        p = subprocess.Popen(
            ["nsenter", f"--net={netns}", sys.executable, "-c", SERVER, str(port), token],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 15)
        assert ready and p.stdout.readline().strip() == "ready"

    def cleanup(self):
        for p in self.procs:
            p.kill()
            p.wait()
        for cid, netns, networks, ports in reversed(self.attached):
            try:
                self.backend.network_teardown(container_id=cid, netns_path=netns, networks=networks, port_mappings=ports or [])
            except Exception as exc:  # noqa: BLE001
                print("cleanup teardown:", exc)
        for path in self.namespaces:
            try:
                knetns.remove(path)
            except OSError as exc:
                print("cleanup netns:", exc)
        for name in sorted(host_links(), reverse=True):
            if name.startswith(TAG):
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        # nothing may stay mounted under our tmp dir
        mounts = [ln for ln in open("/proc/self/mountinfo") if str(self.tmp) in ln]
        for ln in mounts:
            subprocess.run(["umount", "-l", ln.split()[4]], capture_output=True)
        assert not mounts, mounts


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.cleanup()


def lease_files(env: Env, network: str) -> set[str]:
    d = os.path.join(env.backend.ipam_dir, network)
    try:
        return {n for n in os.listdir(d) if IPV4_RE.fullmatch(n)}
    except FileNotFoundError:
        return set()


def ip_of(result: dict, network: str) -> str:
    return result[network]["ips"][0]["address"].split("/")[0]


# ------------------------------------------------------------------------------------
# plugin loading
# ------------------------------------------------------------------------------------
def test_loads_through_entry_point_and_hookspecs(env):
    from libpod_core import hookspecs
    from libpod_core.plugins import PluginManager

    pm = PluginManager(env.cfg)
    drv = pm.driver("network", "cni")
    assert isinstance(drv, CNIBackend)
    for hook in hookspecs.REQUIRED_HOOKS["network"] + ("network_check", "network_inspect", "network_info"):
        assert getattr(pm.hook, hook).get_hookimpls(), hook
    info = pm.hook.network_info()
    assert info["backend"] == "cni" and info["config_dir"] == env.cfg.cni_config_dir
    assert "bridge" in info["plugins"]


def test_import_is_light():
    code = "import sys, kpod_net_cni; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------------------
# network namespaces
# ------------------------------------------------------------------------------------
def test_netns_create_remove(env):
    path = env.ns()
    assert path == os.path.join(env.cfg.runroot, "netns", os.path.basename(path))
    assert knetns.is_netns(path)
    assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
    lo = ns_exec(path, "ip", "-o", "link", "show", "lo").stdout
    assert "UP" in lo.split(">")[0]
    with pytest.raises(AlreadyExists):
        env.backend.network_netns_create(os.path.basename(path))
    with pytest.raises(InvalidArgument):
        env.backend.network_netns_create("../evil")
    assert env.backend.network_netns_remove(path) is True
    assert not os.path.exists(path)
    assert env.backend.network_netns_remove(path) is True  # idempotent
    # the shared bind mount of the directory went away with its last namespace
    assert not [ln for ln in open("/proc/self/mountinfo") if str(env.tmp) in ln]


def test_netns_remove_refuses_foreign_files(env, tmp_path):
    f = tmp_path / "not-a-netns"
    f.write_text("x")
    with pytest.raises(InvalidArgument):
        env.backend.network_netns_remove(str(f))
    assert f.exists()


# ------------------------------------------------------------------------------------
# setup / teardown with the real plugins
# ------------------------------------------------------------------------------------
def test_default_network_written_on_first_use(env):
    nets = env.backend.network_list()
    assert [n["name"] for n in nets] == [env.default_name]
    net = nets[0]
    assert net["driver"] == "bridge"
    assert net["network_interface"] == env.backend.default_bridge
    sub = ipaddress.ip_network(env.backend.default_subnet)
    assert net["subnets"] == [{"subnet": str(sub), "gateway": str(sub.network_address + 1)}]
    assert net["internal"] is False and net["dns_enabled"] is False
    assert net["id"] == hashlib.sha256(env.default_name.encode()).hexdigest()
    assert net["file"] == os.path.join(env.cfg.cni_config_dir, env.default_name + ".conflist")
    conf = json.load(open(net["file"]))
    types = [p["type"] for p in conf["plugins"]]
    assert types == ["bridge", "portmap", "firewall", "tuning"]
    bridge = conf["plugins"][0]
    assert bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"]["dataDir"].startswith(env.cfg.runroot)
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}
    # a second call does not rewrite it
    mtime = os.stat(net["file"]).st_mtime_ns
    assert env.backend.network_inspect(env.default_name)["name"] == env.default_name
    assert os.stat(net["file"]).st_mtime_ns == mtime


def test_setup_connect_check_teardown(env):
    ns = env.ns()
    veths_before = host_links("veth")
    rules_before = set(iptables_save())
    cid, res = env.setup(ns, {env.default_name: {}})
    r = res[env.default_name]
    sub = ipaddress.ip_network(env.backend.default_subnet)
    addr = ipaddress.ip_interface(r["ips"][0]["address"])
    assert addr.ip in sub and addr.network == sub
    assert r["ips"][0]["gateway"] == str(sub.network_address + 1)
    assert {"dst": "0.0.0.0/0"} in r["routes"]
    assert r["interface"] == "eth0"
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", r["mac"])
    sandbox = [i for i in r["interfaces"] if i.get("sandbox")]
    assert sandbox == [{"name": "eth0", "mac": r["mac"], "sandbox": ns}]
    # a new veth on the host, eth0 with the address in the namespace
    new_veths = host_links("veth") - veths_before
    assert len(new_veths) == 1
    show = ns_exec(ns, "ip", "-o", "addr", "show", "eth0").stdout
    assert str(addr) in show
    assert r["mac"] in ns_exec(ns, "ip", "-o", "link", "show", "eth0").stdout
    assert lease_files(env, env.default_name) == {str(addr.ip)}
    # cached result
    cache = os.path.join(env.backend.cache_dir, f"{env.default_name}-{cid}-eth0")
    doc = json.load(open(cache))
    assert doc["result"]["ips"][0]["address"] == str(addr)
    assert container_rules(env.default_name, cid, str(addr.ip))  # masquerade + firewall rules
    # the host reaches a server inside the namespace through the bridge
    env.server(ns, 8080, "hello")
    assert fetch(str(addr.ip), 8080).startswith("hello ")
    assert env.backend.network_check(container_id=cid, netns_path=ns, networks={env.default_name: {}}, port_mappings=[])
    env.teardown(cid, ns, {env.default_name: {}})
    assert host_links("veth") == veths_before
    assert ns_links(ns) == {"lo"}
    assert lease_files(env, env.default_name) == set()
    assert not os.path.exists(cache)
    assert container_rules(env.default_name, cid, str(addr.ip)) == []
    # only the plugins' shared chains may have appeared
    extra = set(iptables_save()) - rules_before
    # this module's subnets are in 10.213.0.0/16: rules of other runs on the machine are not ours
    assert not [ln for ln in extra if "10.213." in ln or cid in ln], extra
    # teardown is idempotent
    env.teardown(cid, ns, {env.default_name: {}})


def test_port_mapping_on_localhost(env):
    ns = env.ns()
    port = free_port()
    ports = [{"host_ip": "127.0.0.1", "host_port": port, "container_port": 8081, "protocol": "tcp"}]
    cid, res = env.setup(ns, {env.default_name: {}}, ports)
    ip = ip_of(res, env.default_name)
    env.server(ns, 8081, "published")
    reply = fetch("127.0.0.1", port)
    assert reply.startswith("published ")
    # the portmap plugin masquerades localhost traffic (route_localnet on the bridge)
    assert reply.split()[1] != "127.0.0.1"
    assert [ln for ln in iptables_save() if f"--dport {port}" in ln]
    assert env.backend.network_check(container_id=cid, netns_path=ns, networks=[env.default_name], port_mappings=ports)
    env.teardown(cid, ns, {env.default_name: {}}, ports)
    assert not [ln for ln in iptables_save() if f"--dport {port}" in ln]
    assert container_rules(env.default_name, cid, ip) == []
    with pytest.raises(OSError):
        fetch("127.0.0.1", port, timeout=2)


def test_two_namespaces_reach_each_other(env):
    net = env.network()
    ns1, ns2 = env.ns(), env.ns()
    cid1, r1 = env.setup(ns1, {net: {}})
    cid2, r2 = env.setup(ns2, {net: {}})
    ip1, ip2 = ip_of(r1, net), ip_of(r2, net)
    assert ip1 != ip2
    env.server(ns2, 9000, "peer")
    out = ns_exec(ns1, sys.executable, "-c", CLIENT, ip2, "9000")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"peer {ip1}"
    env.teardown(cid1, ns1, {net: {}})
    env.teardown(cid2, ns2, {net: {}})
    assert lease_files(env, net) == set()


def test_teardown_after_netns_deleted(env):
    ns = env.ns()
    port = free_port()
    ports = [{"host_ip": "127.0.0.1", "host_port": port, "container_port": 80, "protocol": "tcp"}]
    veths_before = host_links("veth")
    cid, res = env.setup(ns, {env.default_name: {}}, ports)
    ip = ip_of(res, env.default_name)
    assert container_rules(env.default_name, cid, ip)
    env.backend.network_netns_remove(ns)
    assert not os.path.exists(ns)
    env.teardown(cid, ns, {env.default_name: {}}, ports)
    assert container_rules(env.default_name, cid, ip) == []
    assert lease_files(env, env.default_name) == set()
    assert host_links("veth") == veths_before
    assert not os.listdir(env.backend.cache_dir)
    # the stand-in namespace used for the DEL is gone too
    assert not os.listdir(env.backend.netns_dir)


def test_teardown_with_lost_cache_and_unknown_container(env):
    ns = env.ns()
    cid, res = env.setup(ns, {env.default_name: {}})
    ip = ip_of(res, env.default_name)
    for f in os.listdir(env.backend.cache_dir):
        os.unlink(os.path.join(env.backend.cache_dir, f))
    env.teardown(cid, ns, {env.default_name: {}})  # DEL from the current conflist
    assert container_rules(env.default_name, cid, ip) == []
    assert lease_files(env, env.default_name) == set()
    assert ns_links(ns) == {"lo"}
    # never set up / unknown network: nothing to do, no error
    assert env.backend.network_teardown(
        container_id="f" * 64, netns_path=ns, networks={env.default_name: {}, "kt-nonexistent": {}}, port_mappings=[]
    )


def test_lost_cache_never_guesses_an_interface(env):
    # on a and b (eth0, eth1); the caches are lost; tearing down b alone must find eth1
    # from b's lease, and a network the container never joined must not touch eth0
    a, b, c = env.network(), env.network(), env.network()
    ns = env.ns()
    cid, res = env.setup(ns, {a: {}, b: {}})
    for f in os.listdir(env.backend.cache_dir):
        os.unlink(os.path.join(env.backend.cache_dir, f))
    env.backend.network_teardown(container_id=cid, netns_path=ns, networks={c: {}}, port_mappings=[])
    assert ns_links(ns) == {"lo", "eth0", "eth1"}
    env.backend.network_teardown(container_id=cid, netns_path=ns, networks={b: {}}, port_mappings=[])
    assert ns_links(ns) == {"lo", "eth0"}
    assert container_rules(b, cid, ip_of(res, b)) == []
    env.teardown(cid, ns, {a: {}, b: {}})
    assert ns_links(ns) == {"lo"}
    assert container_rules(a, cid, ip_of(res, a)) == []


def test_teardown_uses_cached_config_when_file_is_gone(env):
    net = env.network()
    ns = env.ns()
    cid, res = env.setup(ns, {net: {}})
    ip = ip_of(res, net)
    os.unlink(os.path.join(env.cfg.cni_config_dir, net + ".conflist"))
    env.teardown(cid, ns, {net: {}})
    assert container_rules(net, cid, ip) == []
    assert lease_files(env, net) == set()
    assert ns_links(ns) == {"lo"}


def test_static_ip_and_mac(env):
    net = env.network()
    sub = ipaddress.ip_network(env.backend.network_inspect(net)["subnets"][0]["subnet"])
    want_ip = str(sub.network_address + 50)
    want_mac = "0a:58:0a:d5:00:32"
    ns = env.ns()
    cid, res = env.setup(ns, {net: {"ip": want_ip, "mac": want_mac}})
    assert ip_of(res, net) == want_ip
    assert res[net]["mac"] == want_mac
    assert want_mac in ns_exec(ns, "ip", "-o", "link", "show", "eth0").stdout
    assert lease_files(env, net) == {want_ip}
    # the same address for a second container fails cleanly
    ns2 = env.ns()
    with pytest.raises(NetworkError, match="not available|already|allocat"):
        env.setup(ns2, {net: {"ip": want_ip}})
    assert ns_links(ns2) == {"lo"}
    env.teardown(cid, ns, {net: {}})
    assert lease_files(env, net) == set()


def test_multiple_networks_get_eth0_eth1(env):
    a, b = env.network(), env.network()
    ns = env.ns()
    cid, res = env.setup(ns, {a: {}, b: {}})
    assert res[a]["interface"] == "eth0" and res[b]["interface"] == "eth1"
    assert {"eth0", "eth1"} <= ns_links(ns)
    assert env.backend.network_check(container_id=cid, netns_path=ns, networks={a: {}, b: {}}, port_mappings=[])
    # disconnecting one network leaves the other
    env.backend.network_teardown(container_id=cid, netns_path=ns, networks={b: {}}, port_mappings=[])
    assert ns_links(ns) == {"lo", "eth0"}
    env.teardown(cid, ns, {a: {}})
    assert ns_links(ns) == {"lo"}


def test_connecting_another_network_later_gets_the_next_interface(env):
    a, b = env.network(), env.network()
    ns = env.ns()
    cid, ra = env.setup(ns, {a: {}})
    _, rb = env.setup(ns, {b: {}}, cid=cid)  # like ``network connect``
    assert ra[a]["interface"] == "eth0" and rb[b]["interface"] == "eth1"
    env.backend.network_teardown(container_id=cid, netns_path=ns, networks={a: {}}, port_mappings=[])
    assert ns_links(ns) == {"lo", "eth1"}
    env.teardown(cid, ns, {b: {}})
    assert ns_links(ns) == {"lo"}


def test_existing_interface_in_namespace_is_not_touched(env):
    ns = env.ns()
    ns_exec(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0")
    with pytest.raises(NetworkError, match="eth0 already exists"):
        env.setup(ns, {env.default_name: {}})
    assert ns_links(ns) == {"lo", "eth0", "other0"}


def test_teardown_after_an_interrupted_setup(env):
    # kpod died after the plugins ran but before the result was cached
    ns = env.ns()
    cid, res = env.setup(ns, {env.default_name: {}})
    ip = ip_of(res, env.default_name)
    path = os.path.join(env.backend.cache_dir, f"{env.default_name}-{cid}-eth0")
    doc = json.load(open(path))
    doc["result"] = None
    with open(path, "w") as f:
        json.dump(doc, f)
    env.teardown(cid, ns, {env.default_name: {}})
    assert container_rules(env.default_name, cid, ip) == []
    assert lease_files(env, env.default_name) == set()
    assert ns_links(ns) == {"lo"}


def test_setup_twice_is_refused(env):
    ns = env.ns()
    cid, _ = env.setup(ns, {env.default_name: {}})
    with pytest.raises(NetworkError, match="already connected"):
        env.backend.network_setup(
            container_id=cid, netns_path=ns, networks={env.default_name: {}}, port_mappings=[], options={}
        )
    assert "eth0" in ns_links(ns)  # the first attachment is untouched


# ------------------------------------------------------------------------------------
# failures leave nothing behind
# ------------------------------------------------------------------------------------
def assert_nothing_left(env, ns, net, cid, veths_before, rules_before):
    assert ns_links(ns) == {"lo"}
    assert host_links("veth") == veths_before
    assert lease_files(env, net) == set()
    assert container_rules(net, cid) == []
    extra = set(iptables_save()) - rules_before
    # this module's subnets are in 10.213.0.0/16: rules of other runs on the machine are not ours
    assert not [ln for ln in extra if "10.213." in ln or cid in ln], extra
    assert not os.path.isdir(env.backend.cache_dir) or not os.listdir(env.backend.cache_dir)


def test_add_failure_ip_outside_subnet_leaves_nothing(env):
    net = env.network()
    ns = env.ns()
    veths_before, rules_before = host_links("veth"), set(iptables_save())
    cid = uuid.uuid4().hex * 2
    with pytest.raises(NetworkError) as ei:
        env.setup(ns, {net: {"ip": "10.213.250.9"}}, cid=cid)
    assert "bridge" in ei.value.message and "10.213.250.9" in ei.value.message
    assert_nothing_left(env, ns, net, cid, veths_before, rules_before)


def test_add_failure_in_a_later_plugin_rolls_back(env):
    # bridge succeeds, then tuning fails: the bridge's veth, lease and NAT rules must go.
    name = f"{TAG}-broken-{uuid.uuid4().hex[:6]}"
    conf = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": env.bridge(),
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": env.backend.ipam_dir,
                    "ranges": [[{"subnet": env.subnet()}]],
                },
            },
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}},
        ],
    }
    os.makedirs(env.cfg.cni_config_dir, exist_ok=True)
    with open(os.path.join(env.cfg.cni_config_dir, name + ".conflist"), "w") as f:
        json.dump(conf, f)
    ns = env.ns()
    veths_before, rules_before = host_links("veth"), set(iptables_save())
    cid = uuid.uuid4().hex * 2
    with pytest.raises(NetworkError, match="tuning"):
        env.setup(ns, {name: {}}, cid=cid)
    assert_nothing_left(env, ns, name, cid, veths_before, rules_before)


def test_failure_on_second_network_tears_down_the_first(env):
    good, bad = env.network(), env.network()
    ns = env.ns()
    veths_before, rules_before = host_links("veth"), set(iptables_save())
    cid = uuid.uuid4().hex * 2
    with pytest.raises(NetworkError):
        env.setup(ns, {good: {}, bad: {"ip": "10.213.251.1"}}, cid=cid)
    assert_nothing_left(env, ns, good, cid, veths_before, rules_before)


def _fake_plugin(tmp_path, name, body):
    d = tmp_path / "fakebin"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(d)


def _fake_network(env, name, ptype):
    os.makedirs(env.cfg.cni_config_dir, exist_ok=True)
    with open(os.path.join(env.cfg.cni_config_dir, name + ".conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": name, "plugins": [{"type": ptype}]}, f)


def test_plugin_error_is_reported(env, tmp_path):
    body = (
        'cat >/dev/null\n'
        'if [ "$CNI_COMMAND" = ADD ]; then\n'
        '  echo \'{"cniVersion":"1.0.0","code":7,"msg":"bad thing happened","details":"more words"}\'\n'
        "  exit 1\nfi\nexit 0\n"
    )
    fakedir = _fake_plugin(tmp_path, "ktfail", body)
    env.backend.plugin_dirs = [fakedir, CNI_BIN]
    _fake_network(env, "kt-fail", "ktfail")
    ns = env.ns()
    with pytest.raises(NetworkError) as ei:
        env.setup(ns, {"kt-fail": {}})
    msg = ei.value.message
    assert "ktfail" in msg and "bad thing happened" in msg and "more words" in msg and "kt-fail" in msg


def test_plugin_timeout(env, tmp_path):
    body = 'cat >/dev/null\nif [ "$CNI_COMMAND" = ADD ]; then sleep 60; fi\necho "{}"\n'
    env.backend.plugin_dirs = [_fake_plugin(tmp_path, "ktslow", body), CNI_BIN]
    env.backend.plugin_timeout = 1
    _fake_network(env, "kt-slow", "ktslow")
    ns = env.ns()
    t0 = time.monotonic()
    with pytest.raises(NetworkError, match="timed out"):
        env.setup(ns, {"kt-slow": {}})
    assert time.monotonic() - t0 < 15  # the sleeping child did not hold us


def test_missing_plugin(env):
    _fake_network(env, "kt-missing", "kt-no-such-plugin")
    ns = env.ns()
    with pytest.raises(NetworkError, match="kt-no-such-plugin.*not found"):
        env.setup(ns, {"kt-missing": {}})


def test_plugin_sees_spec_environment_and_config(env, tmp_path):
    # a recording plugin placed after the bridge: checks what the runtime hands each plugin
    log = tmp_path / "record"
    body = f'cat > {log}.$CNI_COMMAND.json\nenv | grep ^CNI_ > {log}.$CNI_COMMAND.env\n' \
           f'if [ "$CNI_COMMAND" = ADD ]; then python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[\'prevResult\']))" {log}.ADD.json; fi\n'
    env.backend.plugin_dirs = [CNI_BIN, _fake_plugin(tmp_path, "ktrecord", body)]
    name = f"{TAG}-rec"
    conf = {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": env.bridge(), "isGateway": True,
             "ipam": {"type": "host-local", "dataDir": env.backend.ipam_dir, "ranges": [[{"subnet": env.subnet()}]]}},
            {"type": "ktrecord", "capabilities": {"portMappings": True, "mac": False}},
        ],
    }
    os.makedirs(env.cfg.cni_config_dir, exist_ok=True)
    with open(os.path.join(env.cfg.cni_config_dir, name + ".conflist"), "w") as f:
        json.dump(conf, f)
    ns = env.ns()
    ports = [{"host_ip": "", "host_port": 18080, "container_port": 80, "protocol": "udp"}]
    cid, res = env.setup(ns, {name: {"ip": "", "mac": "0a:58:00:00:00:01"}}, ports)
    stdin = json.load(open(f"{log}.ADD.json"))
    assert stdin["name"] == name and stdin["cniVersion"] == "1.0.0"
    assert stdin["prevResult"]["ips"][0]["address"] == res[name]["ips"][0]["address"]
    assert stdin["runtimeConfig"] == {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "udp"}]}
    envs = dict(ln.split("=", 1) for ln in open(f"{log}.ADD.env").read().splitlines())
    assert envs["CNI_COMMAND"] == "ADD" and envs["CNI_CONTAINERID"] == cid
    assert envs["CNI_NETNS"] == ns and envs["CNI_IFNAME"] == "eth0"
    assert envs["CNI_PATH"] == os.pathsep.join([CNI_BIN, str(tmp_path / "fakebin")])
    assert envs["CNI_ARGS"] == "IgnoreUnknown=1;MAC=0a:58:00:00:00:01"
    env.teardown(cid, ns, {name: {}}, ports)
    deljson = json.load(open(f"{log}.DEL.json"))
    assert deljson["prevResult"]["ips"] == stdin["prevResult"]["ips"]  # the cached result
    assert open(f"{log}.DEL.env").read().count("CNI_COMMAND=DEL") == 1


def test_inert_portmap_and_tuning_are_not_run(env, tmp_path):
    """portmap without port mappings and tuning without settings change nothing: not run."""
    log = tmp_path / "calls"
    for ptype in ("portmap", "tuning"):
        _fake_plugin(tmp_path, ptype, f'echo "{ptype} $CNI_COMMAND" >> {log}\nexec {CNI_BIN}/{ptype}\n')
    env.backend.plugin_dirs = [str(tmp_path / "fakebin"), CNI_BIN]
    ns = env.ns()
    cid, res = env.setup(ns, {env.default_name: {}})
    assert res[env.default_name]["ips"]
    env.teardown(cid, ns, {env.default_name: {}})
    assert not log.exists()
    # with a port mapping portmap runs (ADD and DEL); tuning still has nothing to do
    ports = [{"host_ip": "127.0.0.1", "host_port": free_port(), "container_port": 80, "protocol": "tcp"}]
    ns2 = env.ns()
    cid2, _ = env.setup(ns2, {env.default_name: {}}, ports)
    env.teardown(cid2, ns2, {env.default_name: {}}, ports)
    assert log.read_text().splitlines() == ["portmap ADD", "portmap DEL"]


def test_passes_through_rules():
    from kpod_net_cni.cni import passes_through

    prev = {"cniVersion": "1.0.0", "ips": []}
    pm = {"type": "portmap", "capabilities": {"portMappings": True}}
    assert passes_through("ADD", pm, {}, "", prev) and passes_through("DEL", pm, {"portMappings": []}, "", prev)
    assert not passes_through("ADD", pm, {"portMappings": [{"hostPort": 1, "containerPort": 1}]}, "", prev)
    assert not passes_through("ADD", pm, {}, "", None)  # first in a list: run (and fail) as usual
    tu = {"type": "tuning", "dataDir": "/run/x"}
    assert passes_through("ADD", tu, {}, "IgnoreUnknown=1", prev) and passes_through("DEL", tu, {}, "", prev)
    assert not passes_through("CHECK", tu, {}, "", prev)
    assert not passes_through("ADD", {**tu, "sysctl": {"net.core.somaxconn": "500"}}, {}, "", prev)
    assert not passes_through("ADD", tu, {}, "IgnoreUnknown=1;MAC=0a:58:00:00:00:01", prev)
    assert not passes_through("ADD", {**tu, "capabilities": {"mac": True}}, {"mac": "0a:58:00:00:00:01"}, "", prev)
    assert not passes_through("ADD", {"type": "firewall"}, {}, "", prev)
    assert not passes_through("VERSION", pm, {}, "", prev)


def test_check_detects_a_broken_setup(env):
    ns = env.ns()
    cid, _ = env.setup(ns, {env.default_name: {}})
    assert env.backend.network_check(container_id=cid, netns_path=ns, networks={env.default_name: {}}, port_mappings=[])
    ns_exec(ns, "ip", "link", "del", "eth0")
    with pytest.raises(NetworkError, match="bridge CHECK"):
        env.backend.network_check(container_id=cid, netns_path=ns, networks={env.default_name: {}}, port_mappings=[])
    with pytest.raises(NetworkError, match="not connected"):
        env.backend.network_check(container_id="e" * 64, netns_path=ns, networks={env.default_name: {}}, port_mappings=[])


# ------------------------------------------------------------------------------------
# network definitions
# ------------------------------------------------------------------------------------
def test_network_create_ls_inspect_rm(env):
    sub = env.subnet()
    br = env.bridge()
    gw = str(ipaddress.ip_network(sub).network_address + 254)
    name = f"{TAG}-mynet"
    net = env.backend.network_create(name, {"subnet": sub, "gateway": gw, "labels": {"a": "b"}, "interface": br})
    assert net["name"] == name and net["driver"] == "bridge" and net["network_interface"] == br
    assert net["subnets"] == [{"subnet": sub, "gateway": gw}]
    assert net["labels"] == {"a": "b"} and net["internal"] is False and net["dns_enabled"] is False
    assert net["id"] == hashlib.sha256(name.encode()).hexdigest()
    assert net["ipam_options"] == {"driver": "host-local"}
    assert net["file"] == os.path.join(env.cfg.cni_config_dir, name + ".conflist")
    assert net["created"]
    assert env.backend.network_inspect(name) == net
    names = [n["name"] for n in env.backend.network_list()]
    assert names == sorted([name, env.default_name])
    # no temporary files left behind
    assert sorted(os.listdir(env.cfg.cni_config_dir)) == sorted([name + ".conflist", env.default_name + ".conflist"])
    with pytest.raises(AlreadyExists):
        env.backend.network_create(name, {"subnet": env.subnet()})
    # a container on it creates the bridge; removing the network removes the bridge
    ns = env.ns()
    cid, res = env.setup(ns, {name: {}})
    assert ip_of(res, name) != gw
    assert br in host_links("bridge")
    env.teardown(cid, ns, {name: {}})
    assert env.backend.network_remove(name) is True
    assert br not in host_links("bridge")
    assert env.backend.network_inspect(name) is None
    assert not os.path.exists(net["file"])
    assert not os.path.exists(os.path.join(env.backend.ipam_dir, name))
    with pytest.raises(NotFound):
        env.backend.network_remove(name)
    with pytest.raises(InvalidArgument):
        env.backend.network_remove(env.default_name)


def test_bridge_in_use_is_kept(env):
    br = env.bridge()
    a = env.network(interface=br)
    ns = env.ns()
    cid, _ = env.setup(ns, {a: {}})
    env.backend.network_remove(a)  # the core checks use; a port is still on the bridge
    assert br in host_links("bridge")
    env.teardown(cid, ns, {a: {}})  # the cache still knows the configuration


def test_auto_subnet_and_bridge_names(env):
    a = env.backend.network_create(f"{TAG}-auto1", {})
    b = env.backend.network_create(f"{TAG}-auto2", {"internal": True})
    sa, sb = ipaddress.ip_network(a["subnets"][0]["subnet"]), ipaddress.ip_network(b["subnets"][0]["subnet"])
    pool = ipaddress.ip_network("10.213.192.0/18")
    assert sa.subnet_of(pool) and sb.subnet_of(pool) and not sa.overlaps(sb)
    assert sa.prefixlen == 24
    assert a["subnets"][0]["gateway"] == str(sa.network_address + 1)
    assert a["network_interface"] != b["network_interface"]
    assert a["network_interface"].startswith(TAG + "a")


def test_overlapping_subnet_is_refused(env):
    first = env.network(subnet="10.213.180.0/24")
    with pytest.raises(InvalidArgument, match=first):
        env.backend.network_create(f"{TAG}-overlap", {"subnet": "10.213.180.128/25"})
    with pytest.raises(InvalidArgument, match="overlaps with subnet 10.213.*of network"):
        env.backend.network_create(f"{TAG}-overlap", {"subnet": "10.213.0.0/16"})
    # the default network counts even before its file was written
    os.unlink(env.backend.network_inspect(env.default_name)["file"])
    with pytest.raises(InvalidArgument, match=env.default_name):
        env.backend.network_create(f"{TAG}-overlap", {"subnet": env.backend.default_subnet})
    assert env.backend.network_inspect(f"{TAG}-overlap") is None


def test_bridge_name_already_used(env):
    br = env.bridge()
    first = env.network(interface=br)
    with pytest.raises(InvalidArgument, match=first):
        env.network(interface=br)


@pytest.mark.parametrize(
    "name", ["", "-leading", "has space", "sl/ash", "a" * 300, "none", "host", "ümlaut", ".hidden"]
)
def test_invalid_names(env, name):
    with pytest.raises(InvalidArgument):
        env.backend.network_create(name, {"subnet": env.subnet()})


@pytest.mark.parametrize(
    "options, match",
    [
        ({"subnet": "10.213.300.0/24"}, "invalid subnet"),
        ({"subnet": "banana"}, "invalid subnet"),
        ({"subnet": "10.213.181.0"}, "invalid subnet"),
        ({"subnet": "10.213.182.0/24", "gateway": "10.213.183.1"}, "gateway"),
        ({"subnet": "10.213.182.0/24", "gateway": "10.213.182.0"}, "gateway"),
        ({"subnet": "10.213.182.0/24", "gateway": "10.213.182.255"}, "gateway"),
        ({"subnet": "10.213.182.0/24", "gateway": "nope"}, "gateway"),
        ({"gateway": "10.213.182.1"}, "needs a subnet"),
        ({"driver": "overlay"}, "unsupported network driver"),
        ({"subnet": "10.213.182.0/24", "internal": "maybe"}, "internal"),
        ({"subnet": "10.213.182.0/24", "labels": ["x"]}, "labels"),
        ({"subnet": "10.213.182.0/24", "interface": "this-name-is-too-long"}, "bridge name"),
        ({"subnet": "10.213.182.0/24", "ip_range": "10.213.1.0/28"}, "IP range"),
        ({"driver": "macvlan", "subnet": "10.213.182.0/24", "macvlan": "kt-nope0"}, "does not exist"),
        ({"driver": "macvlan", "subnet": "10.213.182.0/24", "macvlan": "lo", "mode": "weird"}, "mode"),
    ],
)
def test_invalid_create_options(env, options, match):
    with pytest.raises(InvalidArgument, match=match):
        env.backend.network_create(f"{TAG}-bad", options)
    assert env.backend.network_inspect(f"{TAG}-bad") is None


def test_dual_stack_network_definition(env):
    net = env.backend.network_create(
        f"{TAG}-dual", {"subnet": ["10.213.184.0/24", "fd42:213:184::/64"], "interface": env.bridge()}
    )
    assert net["subnets"] == [
        {"subnet": "10.213.184.0/24", "gateway": "10.213.184.1"},
        {"subnet": "fd42:213:184::/64", "gateway": "fd42:213:184::1"},
    ]
    assert net["ipv6_enabled"] is True
    ipam = json.load(open(net["file"]))["plugins"][0]["ipam"]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert len(ipam["ranges"]) == 2
    with pytest.raises(InvalidArgument, match="overlap"):
        env.backend.network_create(f"{TAG}-dual2", {"subnet": "fd42:213:184:0::/56"})


def test_config_dir_problems(env, tmp_path, caplog):
    # the default network's file cannot be written: listing warns, using it fails
    os.makedirs(os.path.join(env.cfg.cni_config_dir, env.default_name + ".conflist"))
    with caplog.at_level("WARNING"):
        assert env.backend.network_list() == []
    assert "default network" in caplog.text
    with pytest.raises(NetworkError, match="already exists"):
        env.setup(env.ns(), {env.default_name: {}})
    # the directory cannot be made at all
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = Config.load(system_file="", user_file="", environ={}, overrides={
        "cni_config_dir": str(blocker / "net.d"), "runroot": str(tmp_path / "run2"), "default_network": "kt-x"})
    b = env.make_backend(cfg)
    with pytest.raises(NetworkError, match="net.d"):
        b.network_list()
    with pytest.raises(NetworkError, match="net.d"):
        b.network_create(f"{TAG}-x", {"subnet": env.subnet()})


def test_ip_range(env):
    net = env.backend.network_create(
        f"{TAG}-range", {"subnet": "10.213.183.0/24", "ip_range": "10.213.183.128/25", "interface": env.bridge()}
    )
    assert net["subnets"][0]["lease_range"] == {"start_ip": "10.213.183.128", "end_ip": "10.213.183.254"}
    ns = env.ns()
    cid, res = env.setup(ns, {net["name"]: {}})
    assert ip_of(res, net["name"]) == "10.213.183.128"


def test_malformed_conflist(env, caplog):
    d = env.cfg.cni_config_dir
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "kt-broken.conflist"), "w") as f:
        f.write("{ this is not json")
    with open(os.path.join(d, "kt-noplugins.conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "kt-named", "plugins": []}, f)
    with open(os.path.join(d, "README"), "w") as f:
        f.write("not a network\n")
    os.mkdir(os.path.join(d, "subdir.conflist"))
    good = env.network()
    with caplog.at_level("WARNING"):
        names = [n["name"] for n in env.backend.network_list()]
    assert names == sorted([good, env.default_name])
    assert "kt-broken.conflist" in caplog.text
    with pytest.raises(NetworkError, match=r"kt-broken\.conflist.*invalid JSON"):
        env.backend.network_inspect("kt-broken")
    with pytest.raises(NetworkError, match=r"kt-noplugins\.conflist.*plugins"):
        env.backend.network_inspect("kt-named")
    ns = env.ns()
    with pytest.raises(NetworkError, match="kt-broken.conflist"):
        env.setup(ns, {"kt-broken": {}})
    with pytest.raises(NotFound):
        env.setup(ns, {"kt-really-missing": {}})
    # a network of another name is not affected
    assert env.backend.network_inspect(good)["name"] == good
    with pytest.raises(AlreadyExists):
        env.backend.network_create("kt-broken", {"subnet": env.subnet()})


def test_single_plugin_conf_files_are_networks(env):
    d = env.cfg.cni_config_dir
    os.makedirs(d, exist_ok=True)
    sub = env.subnet()
    with open(os.path.join(d, "10-single.conf"), "w") as f:
        json.dump({"cniVersion": "0.4.0", "name": "kt-single", "type": "bridge", "bridge": env.bridge(),
                   "isGateway": True, "ipam": {"type": "host-local", "dataDir": env.backend.ipam_dir, "subnet": sub}}, f)
    net = env.backend.network_inspect("kt-single")
    assert net["driver"] == "bridge" and net["subnets"][0]["subnet"] == sub and net["cni_version"] == "0.4.0"
    ns = env.ns()
    cid, res = env.setup(ns, {"kt-single": {}})
    assert ipaddress.ip_interface(res["kt-single"]["ips"][0]["address"]).ip in ipaddress.ip_network(sub)
    assert env.backend.network_check(container_id=cid, netns_path=ns, networks=["kt-single"], port_mappings=[])
    env.teardown(cid, ns, {"kt-single": {}})
    assert lease_files(env, "kt-single") == set()


def test_internal_network(env):
    net = env.network(internal=True)
    info = env.backend.network_inspect(net)
    assert info["internal"] is True
    conf = json.load(open(info["file"]))
    bridge = conf["plugins"][0]
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    assert "routes" not in bridge["ipam"]
    ns = env.ns()
    cid, res = env.setup(ns, {net: {}})
    ip = ip_of(res, net)
    assert res[net]["routes"] == []
    routes = ns_exec(ns, "ip", "route", "show").stdout
    assert "default" not in routes
    assert not [ln for ln in iptables_save() if "MASQUERADE" in ln and cid in ln]
    # the host has no address on the bridge, so it cannot reach the container
    assert not [ln for ln in subprocess.run(["ip", "-o", "addr", "show", "dev", info["network_interface"]],
                                            capture_output=True, text=True).stdout.splitlines() if " inet " in ln]
    env.teardown(cid, ns, {net: {}})
    assert container_rules(net, cid, ip) == []


def test_macvlan_network_on_a_private_parent(env):
    # the parent is a bridge of ours with no uplink: no frame can leave the host
    parent = env.bridge()
    subprocess.run(["ip", "link", "add", parent, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", parent, "up"], check=True)
    net = env.network(driver="macvlan", macvlan=parent)
    info = env.backend.network_inspect(net)
    assert info["driver"] == "macvlan" and info["network_interface"] == parent
    assert info["options"]["mode"] == "bridge"
    ns1, ns2 = env.ns(), env.ns()
    cid1, r1 = env.setup(ns1, {net: {}})
    cid2, r2 = env.setup(ns2, {net: {}})
    env.server(ns2, 9100, "mv")
    out = ns_exec(ns1, sys.executable, "-c", CLIENT, ip_of(r2, net), "9100")
    assert out.stdout.strip() == f"mv {ip_of(r1, net)}", out.stderr
    env.teardown(cid1, ns1, {net: {}})
    env.teardown(cid2, ns2, {net: {}})
    assert ns_links(ns1) == {"lo"} and ns_links(ns2) == {"lo"}
    env.backend.network_remove(net)
    assert parent in host_links("bridge")  # a macvlan parent is never deleted


def test_port_mapping_validation(env):
    ns = env.ns()
    for bad in (
        [{"host_port": 80, "container_port": 70000}],
        [{"host_port": 80, "container_port": 80, "protocol": "icmp"}],
        [{"host_ip": "not-an-ip", "host_port": 80, "container_port": 80}],
        [{"host_port": "x", "container_port": 80}],
    ):
        with pytest.raises(InvalidArgument):
            env.setup(ns, {env.default_name: {}}, bad)
    assert ns_links(ns) == {"lo"}


# ------------------------------------------------------------------------------------
# DNS (the dnsname plugin, a real dnsmasq per network)
# ------------------------------------------------------------------------------------
def _dnsmasq_for(d: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if os.path.basename(argv[0]) == b"dnsmasq" and any(d.encode() in a for a in argv):
                out.append(int(pid))
    return out


@pytest.mark.skipif(not os.path.exists(os.path.join(CNI_BIN, "dnsname")), reason="dnsname plugin not installed")
def test_dns_network_registers_names_and_cleans_up(env):
    sub, br = env.subnet(), env.bridge()
    name = f"{TAG}-dns-{uuid.uuid4().hex[:6]}"
    net = env.backend.network_create(name, {"subnet": sub, "interface": br, "dns_enabled": True})
    d = env.backend.dns_dir(name)
    try:
        assert net["dns_enabled"] is True and net["plugins"][-1] == "dnsname"
        gw = str(ipaddress.ip_network(sub).network_address + 1)
        ns = env.ns()
        cid = uuid.uuid4().hex * 2
        _CONTAINERS.append(cid)
        env.attached.append((cid, ns, {name: {"aliases": ["web"]}}, None))
        res = env.backend.network_setup(container_id=cid, netns_path=ns, networks={name: {"aliases": ["web"]}},
                                        port_mappings=[], options={"container_name": "box1"})
        assert res[name]["dns"] == {"nameservers": [gw], "search": ["dns.podman"]}
        ip = ip_of(res, name)
        assert open(os.path.join(d, "addnhosts")).read().split() == [ip, "box1", "web"]
        assert len(_dnsmasq_for(d)) == 1
        # the name answers on the gateway (a plain DNS query from the container's namespace)
        q = ns_exec(ns, sys.executable, "-c", DNS_QUERY, gw, "box1.dns.podman")
        assert q.stdout.strip() == ip, q
        assert env.backend.network_check(container_id=cid, netns_path=ns, networks={name: {}}, port_mappings=[])
        env.teardown(cid, ns, {name: {"aliases": ["web"]}})
        assert not _dnsmasq_for(d) and not os.path.exists(d)
        assert [r for r in iptables_save() if f"-i {br} " in r and "--dport 53" in r]
    finally:
        env.backend.network_remove(name)
    assert not os.path.exists(d) and not _dnsmasq_for(env.backend.dns_runtime_dir)
    assert not [r for r in iptables_save() if f"-i {br} " in r and "--dport 53" in r]


def test_dns_needs_the_plugin_and_macvlan_has_none(env, tmp_path):
    env.backend.plugin_dirs = [str(tmp_path)]
    with pytest.raises(NetworkError, match="golang-github-containernetworking-plugin-dnsname"):
        env.backend.network_create(f"{TAG}-nodns", {"subnet": env.subnet(), "interface": env.bridge(),
                                                    "dns_enabled": True})
    assert env.backend.network_inspect(f"{TAG}-nodns") is None
    env.backend.plugin_dirs = [CNI_BIN]
    name = f"{TAG}-mv-{uuid.uuid4().hex[:6]}"
    net = env.backend.network_create(name, {"driver": "macvlan", "parent": "lo", "subnet": env.subnet(),
                                            "dns_enabled": True})
    assert net["dns_enabled"] is False and "dnsname" not in net["plugins"]
    env.backend.network_remove(name)


DNS_QUERY = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for _ in range(20):
    try:
        s.sendto(q, (server, 53))
        data = s.recv(512)
        break
    except OSError:
        import time; time.sleep(0.1)
print(".".join(str(b) for b in data[-4:]))
"""


def test_network_id_is_sha256_of_the_name():
    from kpod_net_cni.networks import Network, Scan, network_id

    assert network_id("podman") == hashlib.sha256(b"podman").hexdigest()
    n = Network("a", "/f", {"plugins": []})
    assert n == Network("a", "/f", {"plugins": []}) and n != Network("b", "/f", {"plugins": []})
    assert repr(n) == "Network(name='a', file='/f', conflist={'plugins': []})"
    assert Scan() == Scan() and Scan().networks is not Scan().networks
    with pytest.raises(TypeError):
        hash(n)
