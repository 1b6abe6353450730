"""Container networking through the real kpod CLI, conmon, runc/crun and the CNI plugins.

Each test's kpod store has its own CNI config dir, its own default network (a free /24 in
10.214.0.0/15 and a bridge ``kt<pid>n<N>``, see tests/helpers_net.py) and checks at the end
that no network namespace, veth, IPAM lease or iptables rule of its containers is left.
Traffic only goes to 127.0.0.1 and between the test's own containers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import KPOD, assert_one_error_line
from tests.helpers_images import CtrEnv, add_busybox
from tests.helpers_net import bridge_ports, host_links, rules_mentioning

pytestmark = pytest.mark.integration

if os.geteuid() != 0:
    pytest.skip("network tests need root", allow_module_level=True)
if not os.path.exists("/usr/lib/cni/bridge"):
    pytest.skip("CNI plugins not installed", allow_module_level=True)

HTTPD = "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"


def _env(kpod, runtime):
    env = CtrEnv(kpod, runtime, "overlay")
    yield env
    env.kpod("pod", "rm", "-fa", check=False)
    env.finalize()
    problems = kpod.network_leftovers(env.seen)
    assert not problems, problems


@pytest.fixture
def net(kpod):
    yield from _env(kpod, "runc")


@pytest.fixture(params=["runc", "crun"])
def net_rt(kpod, request):
    yield from _env(kpod, request.param)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def cid_of(k, name: str) -> str:
    return k.inspect(name, "{{.Id}}")


def assert_clean(k, *cids: str) -> None:
    """Nothing of these containers' networking is left on the host."""
    problems = k.kpod.network_leftovers(cids)
    assert not problems, problems
    for cid in cids:
        assert not os.path.exists(os.path.join(k.runroot, "netns", f"kpod-{cid}"))
        assert not os.path.exists(os.path.join(k.runroot, "containers", cid, "network.json"))
        assert not rules_mentioning(cid)


# ---------------------------------------------------------------------------------------
# bridge networking, published ports, teardown
# ---------------------------------------------------------------------------------------

def test_published_port_httpd(net_rt):
    k = net_rt
    port = free_port()
    k("run", "-d", "--name", "web", "--hostname", "webhost", "-p", f"127.0.0.1:{port}:80", "busybox",
      "sh", "-c", HTTPD)
    cid = cid_of(k, "web")
    assert fetch(port) == "hello-webhost\n"
    # ps PORTS, kpod port, inspect NetworkSettings
    ps = k("ps", "--format", "{{.Names}} {{.Ports}}").stdout.strip()
    assert ps == f"web 127.0.0.1:{port}->80/tcp"
    assert f"127.0.0.1:{port}->80/tcp" in k("ps").stdout
    assert k("port", "web").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert k("port", "web", "80").stdout == f"127.0.0.1:{port}\n"
    ns = k.inspect("web")["NetworkSettings"]
    subnet = ipaddress.ip_network(k.kpod.subnet)
    assert ipaddress.ip_address(ns["IPAddress"]) in subnet and ns["IPPrefixLen"] == 24
    assert ns["Gateway"] == str(subnet.network_address + 1)
    assert len(ns["MacAddress"]) == 17
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert list(ns["Networks"]) == ["kpod"] and ns["Networks"]["kpod"]["IPAddress"] == ns["IPAddress"]
    assert ns["SandboxKey"] == os.path.join(k.runroot, "netns", f"kpod-{cid}")
    # /etc/hosts and /etc/resolv.conf written for the container
    hosts = open(os.path.join(k.runroot, "containers", cid, "hosts")).read()
    assert f"{ns['IPAddress']}\twebhost web" in hosts and "localhost" in hosts
    resolv = open(os.path.join(k.runroot, "containers", cid, "resolv.conf")).read()
    assert not [l for l in resolv.splitlines() if l.startswith("nameserver 127.")]
    veths = bridge_ports(k.kpod.bridge)
    assert len(veths) == 1
    # stop: everything goes; start: a new setup; rm -f of a running one: everything goes
    k("stop", "-t", "0", "web")
    assert_clean(k, cid)
    assert veths[0] not in host_links()
    k("start", "web")
    assert fetch(port) == "hello-webhost\n"
    assert k.inspect("web", "{{.NetworkSettings.IPAddress}}")
    k("rm", "-f", "web")
    assert_clean(k, cid)


def test_containers_reach_each_other_and_options(net):
    k = net
    k("run", "-d", "--name", "srv", "busybox", "sh", "-c", HTTPD)
    ip = k.inspect("srv", "{{.NetworkSettings.IPAddress}}")
    subnet = ipaddress.ip_network(k.kpod.subnet)
    static_ip = str(subnet.network_address + 200)
    script = ("wget -qO- http://%s/; ip -o -4 addr show eth0; cat /sys/class/net/eth0/address; "
              "cat /etc/hosts; cat /etc/resolv.conf" % ip)
    p = k("run", "--rm", "--name", "cli", "--ip", static_ip, "--mac-address", "92:d0:c6:0a:29:33",
          "--add-host", "db.example:10.1.2.3", "--add-host", "gw:host-gateway", "--dns", "10.9.9.9",
          "--dns-search", "example.com", "--dns-option", "ndots:3", "busybox", "sh", "-c", script)
    out = p.stdout
    assert out.startswith(f"hello-{cid_of(k, 'srv')[:12]}\n")
    assert f"inet {static_ip}/24" in out and "92:d0:c6:0a:29:33" in out
    assert "10.1.2.3\tdb.example" in out and f"{subnet.network_address + 1}\tgw" in out
    assert f"{static_ip}\t" in out
    assert "nameserver 10.9.9.9" in out and "search example.com" in out and "options ndots:3" in out
    assert out.count("nameserver") == 1
    # --no-hosts: the image's own /etc/hosts (busybox has none)
    p = k("run", "--rm", "--no-hosts", "busybox", "sh", "-c", "cat /etc/hosts 2>&1 || echo none")
    assert "localhost" not in p.stdout
    # -P and -p without a host port: free host ports
    add_busybox(k.graphroot, k.runroot, name="localhost/web:latest", config={"ExposedPorts": {"80/tcp": {}}})
    k("run", "-d", "--name", "pub", "-P", "localhost/web:latest", "sh", "-c", HTTPD)
    line = k("port", "pub").stdout.strip()
    assert line.startswith("80/tcp -> 0.0.0.0:")
    assert fetch(int(line.rsplit(":", 1)[1])) == f"hello-{cid_of(k, 'pub')[:12]}\n"
    k("create", "--name", "rnd", "-p", "127.0.0.1::8080", "-p", "9000-9001:9000-9001/udp", "busybox")
    ports = k("port", "rnd").stdout.splitlines()
    assert ports[0].startswith("8080/tcp -> 127.0.0.1:") and int(ports[0].rsplit(":", 1)[1]) > 0
    assert ports[1:] == ["9000/udp -> 0.0.0.0:9000", "9001/udp -> 0.0.0.0:9001"]
    assert "0.0.0.0:9000-9001->9000-9001/udp" in k("ps", "-a", "--format", "{{.Ports}}", "--filter", "name=rnd").stdout
    ids = [cid_of(k, n) for n in ("srv", "pub")]
    k("rm", "-f", "srv", "pub", "rnd")
    assert_clean(k, *ids)


def test_none_and_host_networks(net):
    k = net
    p = k("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert p.stdout.split() == ["lo"]
    before = set(os.listdir("/sys/class/net"))
    p = k("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    after = set(os.listdir("/sys/class/net"))
    seen = set(p.stdout.split())
    # the host's interfaces (other tests may add or remove veths meanwhile)
    stable = {n for n in before & after if not n.startswith(("veth", "kt"))}
    assert stable <= seen <= before | after and len(stable) > 1
    k("create", "--name", "n", "--network", "none", "busybox")
    assert k.inspect("n", "{{.HostConfig.NetworkMode}}") == "none"
    assert k.inspect("n", "{{.NetworkSettings.IPAddress}}") == ""
    # container:NAME joins another container's network namespace
    k("run", "-d", "--name", "owner", "busybox", "sleep", "100")
    ip = k.inspect("owner", "{{.NetworkSettings.IPAddress}}")
    p = k("run", "--rm", "--network", "container:owner", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"inet {ip}/" in p.stdout
    assert bridge_ports(k.kpod.bridge) and len(bridge_ports(k.kpod.bridge)) == 1
    # ns:PATH joins the namespace mounted there (here: the owner's persistent one)
    path = k.inspect("owner", "{{.NetworkSettings.SandboxKey}}")
    p = k("run", "--rm", "--network", f"ns:{path}", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert f"inet {ip}/" in p.stdout
    assert_one_error_line(k("create", "--network", "ns:/nonexistent", "busybox", check=False), 125, "does not exist")
    k("rm", "-f", "owner")
    assert_clean(k)


def test_teardown_when_the_container_exits(net_rt):
    k = net_rt
    port = free_port()
    k("run", "-d", "--name", "brief", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", "sleep 0.5")
    cid = cid_of(k, "brief")
    assert rules_mentioning(cid)  # portmap / masquerade rules while it runs
    k.wait_for(lambda: k.state("brief") == "exited", what="exit")
    # conmon's exit command (container cleanup) tore the network down
    k.wait_for(lambda: not os.path.exists(os.path.join(k.runroot, "containers", cid, "network.json")),
               what="network teardown by the exit command")
    assert_clean(k, cid)
    # run --rm: removed with its network
    p = k("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", "ip -o -4 addr show eth0")
    assert "inet 10.21" in p.stdout
    assert_clean(k)


def _plugins_with_firewall(tmp_path, prelude: str):
    """A CNI plugin directory: the real plugins, with 'firewall' a shell script that runs
    *prelude* and then the real firewall plugin."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name in os.listdir("/usr/lib/cni"):
        if name != "firewall":
            os.symlink(f"/usr/lib/cni/{name}", plugins / name)
    (plugins / "firewall").write_text("#!/bin/sh\n" + prelude + "exec /usr/lib/cni/firewall\n")
    os.chmod(plugins / "firewall", 0o755)
    return plugins


def test_kpod_killed_during_network_setup(net, tmp_path):
    """SIGKILL while a CNI plugin runs: the next command removes what was set up."""
    k = net
    marker, go = tmp_path / "slow.pid", tmp_path / "go"
    plugins = _plugins_with_firewall(
        tmp_path, f'if [ "$CNI_COMMAND" = ADD ] && [ ! -e {go} ]; then echo $$ > {marker}; exec sleep 60; fi\n')
    env = {**k.kpod.env, "KPOD_CNI_PLUGIN_DIRS": str(plugins)}
    port = free_port()
    proc = subprocess.Popen([KPOD, *k.kpod.global_args, "run", "-d", "--name", "victim", "-p",
                             f"127.0.0.1:{port}:80", "busybox", "sh", "-c", HTTPD], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        k.wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the slow plugin")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if marker.exists() and marker.read_text().strip():
            os.kill(int(marker.read_text()), signal.SIGKILL)
        go.write_text("")
    cid = cid_of(k, "victim")
    assert k.state("victim") == "created"
    # what the killed command left: the namespace, a veth, a lease, the bridge's rules
    assert os.path.exists(os.path.join(k.runroot, "netns", f"kpod-{cid}"))
    assert bridge_ports(k.kpod.bridge)
    assert k.kpod.network_leftovers([cid])
    # the next start tears that down first and sets up afresh; rm -f leaves nothing
    k("start", "victim", env={"KPOD_CNI_PLUGIN_DIRS": str(plugins)})
    assert fetch(port).startswith("hello-")
    assert len(bridge_ports(k.kpod.bridge)) == 1
    k("rm", "-f", "victim")
    assert_clean(k, cid)
    # the same kill, then only rm -f
    go.unlink()
    marker.unlink()
    proc = subprocess.Popen([KPOD, *k.kpod.global_args, "run", "-d", "--name", "victim2", "busybox", "sleep", "100"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        k.wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the slow plugin")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if marker.exists() and marker.read_text().strip():
            os.kill(int(marker.read_text()), signal.SIGKILL)
        go.write_text("")
    cid2 = cid_of(k, "victim2")
    assert k.kpod.network_leftovers([cid2])
    k("rm", "-f", "victim2")
    assert_clean(k, cid2)


def test_plugin_failure_while_the_runtime_creates(net, tmp_path):
    """The CNI ADD runs while conmon and the runtime create the container: a plugin that
    fails is one clear error, the created container and its conmon are gone, nothing leaks."""
    k = net
    plugins = _plugins_with_firewall(
        tmp_path, 'if [ "$CNI_COMMAND" = ADD ]; then sleep 0.3; '
        """echo '{"cniVersion": "1.0.0", "code": 7, "msg": "refused by the test"}'; exit 1; fi\n""")
    env = {"KPOD_CNI_PLUGIN_DIRS": str(plugins)}
    p = k("run", "--rm", "--name", "refused", "busybox", "true", env=env, check=False)
    assert_one_error_line(p, 125, "refused by the test")
    p = k("run", "-d", "--name", "refused2", "busybox", "sleep", "100", env=env, check=False)
    assert_one_error_line(p, 125, "firewall")
    cid = cid_of(k, "refused2")
    assert k.state("refused2") == "created"
    assert not k.kpod.network_leftovers([cid])
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, cid)]
    k("rm", "-f", "refused2")
    assert_clean(k, cid)


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def test_prestart_hook_sees_the_network(net, tmp_path):
    """With OCI hooks the network is up before the runtime's create (hooks may use it)."""
    k = net
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    out = tmp_path / "addr"
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\n"
                      "pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')\n"
                      f"nsenter -t $pid -n ip -o -4 addr show eth0 > {out}\n")
    script.chmod(0o755)
    (hooks / "addr.json").write_text(json.dumps({"version": "1.0.0", "hook": {"path": str(script)},
                                                 "when": {"always": True}, "stages": ["prestart"]}))
    p = k("--hooks-dir", str(hooks), "run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0")
    ip = p.stdout.split("inet ")[1].split("/")[0]
    assert f"inet {ip}/" in out.read_text()


# ---------------------------------------------------------------------------------------
# bad input: one error line, nothing half-created
# ---------------------------------------------------------------------------------------

def test_bad_input(net):
    k = net
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        p = k("run", "-d", "--name", "clash", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100", check=False)
        assert_one_error_line(p, 125, "already in use")
        p = k("create", "-p", f"{port}:80", "busybox", check=False)
        assert_one_error_line(p, 125, f"cannot publish port {port}/tcp")
    for spec, msg in (("80:", "invalid port mapping"), ("abc", "invalid port mapping"), ("1:2:3:4", "invalid port"),
                      ("70000:80", "between 1 and 65535"), ("80/icmp", "protocol"), ("1-3:1-2", "differ"),
                      ("nope:80:80", "not an IP address")):
        assert_one_error_line(k("create", "-p", spec, "busybox", check=False), 125, msg)
    assert_one_error_line(k("create", "--network", "nosuchnet", "busybox", check=False), 125,
                          "unable to find network with name or ID nosuchnet")
    assert_one_error_line(k("create", "--network", "none", "-p", "80", "busybox", check=False), 125, "bridge")
    assert_one_error_line(k("create", "--ip", "192.0.2.9", "busybox", check=False), 125, "not in the subnet")
    assert_one_error_line(k("create", "--ip", "bogus", "busybox", check=False), 125, "invalid --ip")
    assert_one_error_line(k("create", "--mac-address", "zz", "busybox", check=False), 125, "invalid --mac-address")
    assert_one_error_line(k("create", "--add-host", "nocolon", "busybox", check=False), 125, "invalid --add-host")
    assert_one_error_line(k("create", "--dns", "dns.example", "busybox", check=False), 125, "invalid --dns")
    assert_one_error_line(k("create", "--no-hosts", "--add-host", "a:1.2.3.4", "busybox", check=False), 125,
                          "cannot be set together")
    assert_one_error_line(k("create", "--network", "container:nosuch", "busybox", check=False), 125,
                          "no such container")
    assert k("ps", "-aq").stdout == ""
    # a host port another container publishes
    k("run", "-d", "--name", "first", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "100")
    p = k("run", "-d", "--name", "second", "-p", f"{port}:8080", "busybox", "sleep", "100", check=False)
    assert_one_error_line(p, 125, f"already published by container {cid_of(k, 'first')[:12]}")
    assert k("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["first"]
    # an overlapping subnet
    p = k("network", "create", "--subnet", k.kpod.subnet.replace(".0/24", ".128/25"), "overlap", check=False)
    assert_one_error_line(p, 125, "overlaps")
    assert k("network", "exists", "overlap", check=False).returncode == 1
    assert not os.path.exists(os.path.join(k.kpod.cni_dir, "overlap.conflist"))
    first = cid_of(k, "first")
    k("rm", "-f", "first")
    assert_clean(k, first)
    assert os.listdir(os.path.join(k.runroot, "netns")) == [] if os.path.isdir(
        os.path.join(k.runroot, "netns")) else True


# ---------------------------------------------------------------------------------------
# the network commands
# ---------------------------------------------------------------------------------------

def test_network_commands(net):
    k = net
    from tests.helpers_net import claim_subnet, delete_link, new_bridge, release_subnet

    subnet, subnet2, bridge = claim_subnet(), claim_subnet(), new_bridge()
    try:
        sub = ipaddress.ip_network(subnet)
        gw = str(sub.network_address + 254)
        assert k("network", "create", "--subnet", subnet, "--gateway", gw, "--label", "team=a",
                 "--interface-name", bridge, "-o", "mtu=1400", "tnet").stdout == "tnet\n"
        other = ipaddress.ip_network(subnet2)
        assert k("network", "create", "--subnet", str(next(other.subnets(new_prefix=26))), "--internal",
                 "--interface-name", bridge + "i", "inet").stdout == "inet\n"
        assert k("network", "create", "-d", "macvlan", "-o", "parent=lo", "--subnet",
                 str(list(other.subnets(new_prefix=26))[2]), "mnet").stdout == "mnet\n"
        assert k("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.splitlines() == [
            "inet bridge", "kpod bridge", "mnet macvlan", "tnet bridge"]
        assert k("network", "ls", "-q", "--filter", "label=team=a").stdout == "tnet\n"
        assert k("network", "ls", "-q", "--filter", "driver=macvlan").stdout == "mnet\n"
        assert k("network", "ls").stdout.splitlines()[0].split() == ["NETWORK", "ID", "NAME", "DRIVER"]
        info = json.loads(k("network", "inspect", "tnet").stdout)[0]
        assert info["subnets"] == [{"subnet": subnet, "gateway": gw}]
        assert info["network_interface"] == bridge and info["labels"] == {"team": "a"}
        assert json.loads(k("network", "inspect", "inet").stdout)[0]["internal"] is True
        assert k("network", "inspect", "--format", "{{.Driver}}", "mnet").stdout == "macvlan\n"
        assert k("network", "exists", "tnet").returncode == 0
        assert k("network", "exists", "nope", check=False).returncode == 1
        # a container on two networks
        k("run", "-d", "--name", "multi", "--network", "tnet,inet", "busybox", "sleep", "100")
        nets = k.inspect("multi")["NetworkSettings"]["Networks"]
        assert sorted(nets) == ["inet", "tnet"]
        assert ipaddress.ip_address(nets["tnet"]["IPAddress"]) in sub
        assert k("ps", "-q", "--filter", "network=inet").stdout.strip() == cid_of(k, "multi")[:12]
        multi = cid_of(k, "multi")
        # rm refuses a network in use; -f removes its containers too
        assert_one_error_line(k("network", "rm", "tnet", check=False), 125, "associated containers")
        assert k("container", "exists", "multi").returncode == 0
        assert k("network", "rm", "-f", "tnet").stdout == "tnet\n"
        assert k("container", "exists", "multi", check=False).returncode == 1
        assert_clean(k, multi)
        assert bridge not in host_links()
        assert_one_error_line(k("network", "rm", "kpod", check=False), 125, "cannot be removed")
        assert_one_error_line(k("network", "rm", "nope", check=False), 1, "network not found")
        # prune: every unused network but the default
        k("create", "--name", "user", "--network", "inet", "busybox")
        assert k("network", "prune", "-f").stdout == "mnet\n"
        k("rm", "user")
        assert k("network", "prune", "-f").stdout == "inet\n"
        assert k("network", "ls", "-q").stdout == "kpod\n"
    finally:
        delete_link(bridge)
        delete_link(bridge + "i")
        release_subnet(subnet)
        release_subnet(subnet2)


# ---------------------------------------------------------------------------------------
# network connect / disconnect
# ---------------------------------------------------------------------------------------

def test_network_connect_disconnect(net):
    k = net
    from tests.helpers_net import claim_subnet, delete_link, new_bridge, release_subnet

    subnet, bridge = claim_subnet(), new_bridge()
    sub = ipaddress.ip_network(subnet)
    prefix = str(sub.network_address)[:-1]  # "10.214.7."
    ipam = os.path.join(k.runroot, "cni", "ipam", "side")
    try:
        k("network", "create", "--subnet", subnet, "--interface-name", bridge, "--disable-dns", "side")
        k("run", "-d", "--name", "peer", "--network", "side", "busybox", "sh", "-c", HTTPD)
        peer_ip = k.inspect("peer", "{{.NetworkSettings.IPAddress}}")
        k("run", "-d", "--name", "main", "busybox", "sleep", "300")
        main = cid_of(k, "main")
        static = str(sub.network_address + 77)
        # a running container: CNI ADD on eth1, reaches the other network's container
        assert k("network", "connect", "--ip", static, "--alias", "mainalias", "side", "main").stdout == ""
        nets = k.inspect("main")["NetworkSettings"]["Networks"]
        assert list(nets) == ["kpod", "side"]
        assert nets["side"]["IPAddress"] == static and nets["side"]["Gateway"] == str(sub.network_address + 1)
        assert "mainalias" in nets["side"]["Aliases"]
        assert ipaddress.ip_address(nets["kpod"]["IPAddress"]) in ipaddress.ip_network(k.kpod.subnet)
        assert f"inet {static}/24" in k("exec", "main", "ip", "-o", "-4", "addr", "show", "eth1").stdout
        assert k("exec", "main", "wget", "-qO-", f"http://{peer_ip}/").stdout.startswith("hello-")
        assert len(bridge_ports(bridge)) == 2 and static in os.listdir(ipam)
        # bad input: one Error line, exit 125, nothing changed
        k("create", "--name", "lonely", "--network", "none", "busybox")
        k("create", "--name", "hosted", "--network", "host", "busybox")
        k("create", "--name", "joiner", "--network", "container:main", "busybox")
        for args, msg in ((("connect", "side", "main"), "already connected"),
                          (("connect", "nosuchnet", "main"), "network not found"),
                          (("connect", "side", "nosuchctr"), "no such container"),
                          (("connect", "side", "lonely"), "network mode is none"),
                          (("connect", "side", "hosted"), "network mode is host"),
                          (("connect", "side", "joiner"), "network mode is container:"),
                          (("disconnect", "side", "peer"), "only network"),
                          (("disconnect", "nosuchnet", "main"), "network not found"),
                          (("disconnect", "side", "nosuchctr"), "no such container"),
                          (("disconnect", "side", "lonely"), "network mode is none")):
            assert_one_error_line(k("network", *args, check=False), 125, msg)
        k("network", "create", "--subnet", claim_subnet_for(k), "--interface-name", bridge + "x",
          "--disable-dns", "unused")
        assert_one_error_line(k("network", "disconnect", "unused", "main", check=False), 125, "not connected")
        outside = str(ipaddress.ip_network(k.kpod.subnet).network_address + 9)
        assert_one_error_line(k("network", "connect", "--ip", outside, "unused", "main", check=False), 125,
                              "not in the subnet")
        assert list(k.inspect("main")["NetworkSettings"]["Networks"]) == ["kpod", "side"]
        # disconnect: CNI DEL; no interface, veth, lease or rule of that address is left
        k("network", "disconnect", "side", "main")
        assert list(k.inspect("main")["NetworkSettings"]["Networks"]) == ["kpod"]
        assert k("exec", "main", "ip", "link", "show", "eth1", check=False).returncode != 0
        assert k("exec", "main", "ip", "link", "show", "eth0").returncode == 0
        assert len(bridge_ports(bridge)) == 1 and static not in os.listdir(ipam)
        assert not rules_mentioning(f"{static}/")
        assert not [r for r in rules_mentioning(main) if prefix in r]
        # a stopped container: only the recorded networks change; start attaches them all
        k("stop", "-t", "0", "main")
        k("network", "connect", "side", "main")
        assert list(k.inspect("main")["NetworkSettings"]["Networks"]) == ["kpod", "side"]
        k("start", "main")
        ip1 = k.inspect("main")["NetworkSettings"]["Networks"]["side"]["IPAddress"]
        assert ipaddress.ip_address(ip1) in sub
        assert f"inet {ip1}/24" in k("exec", "main", "ip", "-o", "-4", "addr", "show", "eth1").stdout
        # stop and rm tear down every connected network
        k("stop", "-t", "0", "main")
        assert not os.path.exists(os.path.join(k.runroot, "netns", f"kpod-{main}"))
        assert not os.path.exists(os.path.join(k.runroot, "containers", main, "network.json"))
        assert not rules_mentioning(main) and not rules_mentioning(f"{ip1}/")
        assert len(bridge_ports(bridge)) == 1 and os.listdir(ipam).count(ip1) == 0
        k("network", "disconnect", "side", "main")
        assert list(k.inspect("main")["NetworkSettings"]["Networks"]) == ["kpod"]
        k("network", "connect", "side", "main")
        k("start", "main")
        k("rm", "-f", "main", "peer", "lonely", "hosted", "joiner")
        assert_clean(k, main)
        assert not bridge_ports(bridge) and not [f for f in os.listdir(ipam) if f[0].isdigit()]
        assert not [r for r in rules_mentioning(prefix)]
        assert k("network", "rm", "side", "unused").stdout == "side\nunused\n"
    finally:
        k("rm", "-fa", check=False)
        k("network", "rm", "-f", "side", "unused", check=False)
        delete_link(bridge)
        delete_link(bridge + "x")
        release_subnet(subnet)
        for s in _extra_subnets:
            release_subnet(s)
        _extra_subnets.clear()


_extra_subnets: list[str] = []


def claim_subnet_for(k) -> str:
    from tests.helpers_net import claim_subnet

    s = claim_subnet()
    _extra_subnets.append(s)
    return s
