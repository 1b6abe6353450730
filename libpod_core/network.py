"""Container networking: the provider that wires containers to the network backend.

:class:`NetworkProvider` is what ``ContainerManager.network_provider`` holds
(``Runtime.container_network_provider``). It

* validates the network options at create time (``--network``, ``-p``, ``-P``, ``--ip``,
  ``--mac-address``, ``--dns*``, ``--add-host``, ``--no-hosts``, ``--pod``) and turns a pod
  membership into namespace joins and a cgroup parent;
* at start, creates the container's network namespace and attaches it to its networks through
  the backend's hooks (``network_netns_create``, ``network_setup``), or points the spec at
  the namespaces of the container it joins (``container:ID``, pods);
* tears the namespace down again (``network_teardown``, ``network_netns_remove``) on stop,
  exit (conmon's exit command), removal, or when a later command finds what a killed one left;
* reports ``NetworkSettings`` for inspect, the PORTS column of ps and ``kpod port``.

Crash safety: before anything is created, ``<runroot>/containers/<id>/network.json`` records
the namespace path, networks and ports (``phase: setup``). A kpod killed in the middle of the
setup leaves that file; the next command that touches the container (start, stop, rm,
cleanup) sees it and tears down whatever exists. After a successful setup the file holds the
backend's results (``phase: up``) and is removed by a complete teardown. It lives in the
runroot because namespaces, interfaces and leases are per boot, like the runroot.

Speed: the CNI ADD may run in a thread while the runtime creates the container
(:meth:`NetworkProvider.prepare_start` with ``background=True``, then
:meth:`NetworkProvider.finish_start`), and the DEL while the rest is released
(:meth:`NetworkProvider.teardown_begin`); a teardown always waits for a setup still running.

The module imports nothing heavy; the backend is loaded on first use.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import TYPE_CHECKING, Any, Iterable

from .errors import AlreadyExists, ContainerStateError, InvalidArgument, KpodError, NetworkError, NotFound
from .fileutil import write_atomic
from .lazyre import lazy
from .log import getLogger

if TYPE_CHECKING:
    import socket

log = getLogger(__name__)

STATE_FILE = "network.json"
PROTOCOLS = ("tcp", "udp", "sctp")
MAC_RE = lazy(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
HOSTNAME_RE = lazy(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")
NETWORK_NAME_RE = lazy(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
#: namespaces a pod can share, and the default
POD_SHARES = ("net", "ipc", "uts", "pid")
DEFAULT_POD_SHARE = ("net", "ipc", "uts")

#: systemd's socket-activated TCP proxy (package systemd): it carries ports published on ::1
SOCKET_PROXYD = ("/usr/lib/systemd/systemd-socket-proxyd", "/lib/systemd/systemd-socket-proxyd")
#: environment variable that marks a proxy process with its container's ID
PROXY_MARK = "KPOD_PORT_PROXY"

LOCALHOST = ("127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n"
             "::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n")


# ---------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------

def _port_range(text: str, spec: str) -> tuple[int, int]:
    """``80`` -> (80, 1); ``8000-8010`` -> (8000, 11)."""
    lo, sep, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if sep else a
    except ValueError:
        raise InvalidArgument(f"invalid port mapping {spec!r}: {text!r} is not a port or a port range") from None
    if not (1 <= a <= 65535 and 1 <= b <= 65535) or b < a:
        raise InvalidArgument(f"invalid port mapping {spec!r}: ports must be between 1 and 65535 (low-high)")
    return a, b - a + 1


def parse_publish(spec: str) -> list[dict[str, Any]]:
    """``-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO]`` (ports may be ranges ``A-B``; an IPv6
    address goes in brackets) -> port mapping dicts (``host_ip``, ``host_port`` (0 = pick a
    free one), ``container_port``, ``protocol``, ``range``)."""
    raw = spec
    text = spec.strip()
    if not text:
        raise InvalidArgument("invalid port mapping '': expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]")
    protos = ["tcp"]
    if "/" in text:
        text, _, p = text.rpartition("/")
        protos = [x.strip().lower() for x in p.split(",")]
        if not all(x in PROTOCOLS for x in protos):
            raise InvalidArgument(f"invalid port mapping {raw!r}: protocol must be tcp, udp or sctp")
    host_ip = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise InvalidArgument(f"invalid port mapping {raw!r}: expected [IPv6]:HOSTPORT:CONTAINERPORT")
        host_ip = text[1:end]
        parts = [host_ip, *text[end + 2:].split(":")]
        if len(parts) != 3:
            raise InvalidArgument(f"invalid port mapping {raw!r}: expected [IPv6]:HOSTPORT:CONTAINERPORT")
    else:
        parts = text.split(":")
    if len(parts) == 1:
        host, ctr = "", parts[0]
    elif len(parts) == 2:
        host, ctr = parts
        if not host:
            raise InvalidArgument(f"invalid port mapping {raw!r}: empty host port")
    elif len(parts) == 3:
        host_ip, host, ctr = parts
        if not host_ip:
            raise InvalidArgument(f"invalid port mapping {raw!r}: empty host IP")
    else:
        raise InvalidArgument(f"invalid port mapping {raw!r}: expected [IP:][HOSTPORT:]CONTAINERPORT[/PROTOCOL]"
                              " (IPv6 addresses in brackets)")
    if host_ip:
        try:
            if "%" in host_ip:  # a zone (fe80::1%eth0): no host IP for a published port
                raise ValueError(host_ip)
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidArgument(f"invalid port mapping {raw!r}: {host_ip!r} is not an IP address") from None
    cport, count = _port_range(ctr, raw)
    hport = 0
    if host:
        hport, hcount = _port_range(host, raw)
        if hcount != count:
            raise InvalidArgument(f"invalid port mapping {raw!r}: the host and container port ranges differ in size")
    return [{"host_ip": host_ip, "host_port": hport, "container_port": cport, "protocol": p, "range": count}
            for p in protos]


def parse_add_host(spec: str) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or ``NAME=IP``; IP may be ``host-gateway``) -> (name, ip)."""
    sep = "=" if "=" in spec and (":" not in spec or spec.index("=") < spec.index(":")) else ":"
    name, s, ip = spec.partition(sep)
    ip = ip.strip()
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if not s or not name or not HOSTNAME_RE.match(name):
        raise InvalidArgument(f"invalid --add-host {spec!r}: expected HOSTNAME:IP")
    if ip != "host-gateway":
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise InvalidArgument(f"invalid --add-host {spec!r}: {ip!r} is not an IP address") from None
    return name, ip


def expand_ports(ports: Iterable[dict]) -> list[tuple[str, int, int, str]]:
    """(host_ip, host_port, container_port, protocol) for every single port of *ports*."""
    out = []
    for p in ports or []:
        n = int(p.get("range") or 1)
        for i in range(n):
            out.append((p.get("host_ip") or "", int(p.get("host_port") or 0) + i if p.get("host_port") else 0,
                        int(p["container_port"]) + i, p.get("protocol") or "tcp"))
    return out


def ports_text(ports: Iterable[dict]) -> str:
    """ps's PORTS column: ``127.0.0.1:8080->80/tcp, 0.0.0.0:9000-9001->9000-9001/udp``."""
    out = []
    for p in ports or []:
        n = int(p.get("range") or 1)
        ip = p.get("host_ip") or "0.0.0.0"
        if ":" in ip:
            ip = f"[{ip}]"
        hp, cp = int(p.get("host_port") or 0), int(p["container_port"])
        h = f"{hp}-{hp + n - 1}" if n > 1 else str(hp)
        c = f"{cp}-{cp + n - 1}" if n > 1 else str(cp)
        out.append(f"{ip}:{h}->{c}/{p.get('protocol') or 'tcp'}")
    return ", ".join(out)


def port_bindings(ports: Iterable[dict]) -> dict[str, list[dict[str, str]]]:
    """``{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}`` (inspect)."""
    out: dict[str, list[dict[str, str]]] = {}
    for ip, hp, cp, proto in expand_ports(ports):
        out.setdefault(f"{cp}/{proto}", []).append({"HostIp": ip or "0.0.0.0", "HostPort": str(hp)})
    return out


def _bind_test(ip: str, port: int, proto: str, hold: bool = False) -> socket.socket:
    """Bind a socket on the host port (no host IP: all IPv4 addresses, as podman); raises
    OSError when it is in use. With *hold* a TCP socket also listens: that is the socket
    conmon keeps while the container runs (podman's port reservation), and only a listening
    socket stops another process's ``SO_REUSEADDR`` bind. UDP sockets never set
    ``SO_REUSEADDR`` (two UDP sockets that both set it share the port)."""
    import socket

    family = socket.AF_INET6 if ip and ":" in ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are no conflict
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # [::] is IPv6 only, as Go's tcp6
        s.bind((ip or "0.0.0.0", port))
        if hold and kind == socket.SOCK_STREAM:
            s.listen()
    except BaseException:
        s.close()
        raise
    return s


def _overlap(a_ip: str, b_ip: str) -> bool:
    return not a_ip or not b_ip or a_ip == b_ip or a_ip in ("0.0.0.0", "::") or b_ip in ("0.0.0.0", "::")


# ---------------------------------------------------------------------------------------
# ports published on ::1
# ---------------------------------------------------------------------------------------
# The portmap plugin's DNAT cannot carry them: Linux drops IPv6 packets whose source or
# destination is ::1 when they arrive on an interface other than lo (RFC 4291 2.5.3, in
# ip6_rcv_core; IPv6 has no route_localnet), so the container drops the forwarded SYN, and
# the host the reply even when it is masqueraded. podman's CNI backend has the same hole;
# Docker uses its docker-proxy. kpod hands the listening socket it binds (the one conmon
# holds) to systemd-socket-proxyd, which connects each client to the container's address.

def loopback6(ip: str | None) -> bool:
    """True for an IPv6 loopback host IP (``-p [::1]:...``)."""
    try:
        a = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return a.version == 6 and a.is_loopback


def _dnat_ports(ports: Iterable[dict]) -> list[dict]:
    """The mappings the backend forwards (DNAT): all but those proxied from ::1."""
    return [p for p in ports or [] if not loopback6(p.get("host_ip"))]


def socket_proxyd() -> str | None:
    return next((p for p in SOCKET_PROXYD if os.access(p, os.X_OK)), None)


def _spawn_proxy(cid: str, fd: int, target: str) -> None:
    """Start systemd-socket-proxyd on listening socket *fd* (socket activation: the socket
    becomes its descriptor 3, ``LISTEN_PID`` is set by the shell it replaces) forwarding to
    *target* (``addr:port``), in its own session, marked with *cid* in its environment.
    posix_spawn, not fork: the caller may be a thread."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LISTEN_FDS": "1", PROXY_MARK: cid}
    actions = [(os.POSIX_SPAWN_DUP2, fd, 3)]
    for name in os.listdir("/proc/self/fd"):  # nothing else of ours is inherited
        n = int(name)
        if n > 3:
            try:
                if os.get_inheritable(n):
                    actions.append((os.POSIX_SPAWN_CLOSE, n))
            except OSError:
                pass
    for n in (0, 1, 2):
        actions.append((os.POSIX_SPAWN_OPEN, n, "/dev/null", os.O_RDWR, 0))
    os.posix_spawn("/bin/sh", ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', socket_proxyd() or SOCKET_PROXYD[0],
                               target], env, file_actions=actions, setsid=True)


def proxy_pids(cid: str) -> list[int]:
    """The proxies of container *cid*: processes whose environment has its mark (found so,
    those of a kpod killed before it recorded anything are found too)."""
    mark = f"{PROXY_MARK}={cid}".encode()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        out.append(int(name))
            except OSError:
                continue
    return out


def _stop_proxies(cid: str) -> None:
    import signal

    for pid in proxy_pids(cid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------
# namespace modes for the spec generator
# ---------------------------------------------------------------------------------------

def spec_namespaces(opts, network_mode: str) -> dict[str, str]:
    """SpecOptions namespace modes at create time. Namespaces joined from another container
    (``container:ID``, pods) are generated private and pointed at the other container's at
    start (:meth:`NetworkProvider.prepare_start`), when its namespaces exist."""

    def mode(value: str | None) -> str:
        value = (value or "private").strip()
        return "private" if value.startswith("container:") else value

    net = network_mode
    return {
        "network": "host" if net == "host" else "none" if net == "none" else net if net.startswith("ns:") else "private",
        "ipc": mode(getattr(opts, "ipc", None)),
        "uts": mode(getattr(opts, "uts", None)),
        "pid": mode(getattr(opts, "pid", None)),
    }


# ---------------------------------------------------------------------------------------
# /etc/hosts, /etc/resolv.conf
# ---------------------------------------------------------------------------------------



def _write_in_place(path: str, data: str) -> None:
    """Rewrite *path* keeping its inode (a bind mount of it shows the new text)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        b = data.encode()
        os.ftruncate(fd, 0)
        view = memoryview(b)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def read_state(c) -> dict | None:
    try:
        with open(os.path.join(c.rundir, STATE_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable network state: %s", c.id[:12], exc)
        return {"phase": "setup"}


def _primary(state: dict | None) -> dict[str, Any]:
    """IP, prefix length, gateway and MAC of the first network of a set-up container."""
    out = {"ip": "", "prefixlen": 0, "gateway": "", "mac": "", "ip6": "", "prefixlen6": 0, "gateway6": ""}
    if not state or state.get("phase") != "up":
        return out
    for _name, res in (state.get("results") or {}).items():
        for ip in res.get("ips") or []:
            try:
                iface = ipaddress.ip_interface(ip.get("address", ""))
            except ValueError:
                continue
            if iface.version == 4 and not out["ip"]:
                out.update(ip=str(iface.ip), prefixlen=iface.network.prefixlen, gateway=ip.get("gateway") or "")
            elif iface.version == 6 and not out["ip6"]:
                out.update(ip6=str(iface.ip), prefixlen6=iface.network.prefixlen, gateway6=ip.get("gateway") or "")
        out["mac"] = out["mac"] or res.get("mac") or ""
        if out["ip"]:
            break
    return out


def write_etc_files(c, network_state: dict | None = None, in_place: bool = False) -> None:
    """Write the container's hostname, hosts and resolv.conf files (bind-mounted into it).

    *network_state* is the state whose address goes into /etc/hosts (the container's own, or
    that of the container whose network it joins); read from disk when None. *in_place*
    keeps the files' inodes (for a container the runtime has created already)."""
    from .containers import resolv_conf

    write = _write_in_place if in_place else write_atomic
    os.makedirs(c.rundir, mode=0o700, exist_ok=True)
    conf = c.config
    mode = conf.get("network_mode", "none")
    hostname = c.hostname
    write(c.hostname_path, hostname + "\n")
    base_mode = mode
    if network_state is None:
        network_state = _state_for_hosts(c)
    if mode.startswith("container:"):
        base_mode = (network_state or {}).get("_mode", "bridge")
    prim = _primary(network_state)
    # a container sharing another's network (a pod's) also gets that one's hosts and DNS settings
    owner = (network_state or {}).get("_conf") or {}
    dns_conf = conf if any(conf.get(k) for k in ("dns", "dns_search", "dns_option")) else owner
    extra = ""
    for entry in [*(owner.get("add_host") or []), *(conf.get("add_host") or [])]:
        name, ip = parse_add_host(entry)
        if ip == "host-gateway":
            ip = prim["gateway"] or "127.0.0.1"
        extra += f"{ip}\t{name}\n"
    if base_mode == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = ""
        if hosts and not hosts.endswith("\n"):
            hosts += "\n"
        hosts += extra + f"127.0.1.1\t{hostname} {c.name}\n"
    else:
        hosts = LOCALHOST + extra + f"{prim['ip'] or prim['ip6'] or '127.0.1.1'}\t{hostname} {c.name}\n"
        if prim["gateway"]:
            hosts += f"{prim['gateway']}\thost.containers.internal\n"
    write(c.hosts_path, hosts)
    text = resolv_conf("bridge" if base_mode == "bridge" else base_mode if base_mode in ("host", "none") else "none")
    if base_mode == "bridge":
        text = network_resolv(text, network_state)
    write(c.resolv_path, customize_resolv(text, dns_conf.get("dns") or [], dns_conf.get("dns_search") or [],
                                          dns_conf.get("dns_option") or []))


def network_dns(state: dict | None) -> tuple[list[str], list[str]]:
    """Name servers and search domains the networks' results hand out (the dnsname
    plugin's: the gateway, where the network's dnsmasq listens, and ``dns.podman``)."""
    servers: list[str] = []
    search: list[str] = []
    if not state or state.get("phase") != "up":
        return servers, search
    for res in (state.get("results") or {}).values():
        dns = res.get("dns") or {}
        for s in dns.get("nameservers") or []:
            if s not in servers:
                servers.append(s)
        for d in dns.get("search") or []:
            if d not in search:
                search.append(d)
    return servers, search


def network_resolv(text: str, state: dict | None) -> str:
    """Put the networks' DNS servers before the host's, and their search domains before
    the host's (podman's order); ``--dns``/``--dns-search`` still replace them afterwards."""
    servers, search = network_dns(state)
    if not servers and not search:
        return text
    lines = text.splitlines()
    host_servers = [ln.split()[1] for ln in lines if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1]
    host_search: list[str] = []
    for ln in lines:
        if ln.split()[:1] in (["search"], ["domain"]):
            host_search = ln.split()[1:]
    rest = [ln for ln in lines if ln.split()[:1] not in (["nameserver"], ["search"], ["domain"])]
    out = rest
    domains = list(dict.fromkeys([*search, *host_search]))
    if domains:
        out.append("search " + " ".join(domains))
    out += [f"nameserver {s}" for s in dict.fromkeys([*servers, *host_servers])]
    return "\n".join(out) + "\n"


def customize_resolv(text: str, servers: list[str], search: list[str], options: list[str]) -> str:
    """Apply --dns, --dns-search (``.`` clears it) and --dns-option to a resolv.conf."""
    lines = text.splitlines()
    if servers:
        lines = [ln for ln in lines if ln.split()[:1] != ["nameserver"]] + [f"nameserver {s}" for s in servers]
    if search:
        lines = [ln for ln in lines if ln.split()[:1] not in (["search"], ["domain"])]
        if search != ["."]:
            lines.append("search " + " ".join(s for s in search if s != "."))
    if options:
        lines = [ln for ln in lines if ln.split()[:1] != ["options"]] + ["options " + " ".join(options)]
    return "\n".join(lines) + ("\n" if lines else "")


def _state_for_hosts(c) -> dict | None:
    mode = c.config.get("network_mode", "none")
    if mode == "bridge":
        return read_state(c)
    if mode.startswith("container:"):
        try:
            t = c.mgr.get(mode[len("container:"):])
        except KpodError:
            return None
        st = _state_for_hosts(t) or {}
        st = dict(st)
        st.setdefault("_conf", t.config)
        st["_mode"] = t.config.get("network_mode", "none") if not t.config.get("network_mode", "").startswith(
            "container:") else st.get("_mode", "bridge")
        return st
    return None


# ---------------------------------------------------------------------------------------
# work in a thread (CNI plugins are processes: the GIL is free while they run)
# ---------------------------------------------------------------------------------------

class _Background:
    """Run *fn* in a thread now; :meth:`wait` joins it and raises what it raised. The
    thread is not a daemon: an interpreter that exits early still lets it finish (and undo
    what it made on a failure) rather than kill it half-way."""

    def __init__(self, fn, name: str) -> None:
        import threading

        self.error: BaseException | None = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, name=name)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # handed to wait()
            self.error = exc

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            err, self.error = self.error, None
            raise err


def _nothing() -> None:
    return None


# ---------------------------------------------------------------------------------------
# the provider
# ---------------------------------------------------------------------------------------

class NetworkProvider:
    """Wires containers (and pods) to the network backend. One per Runtime."""

    def __init__(self, runtime) -> None:
        self.rt = runtime
        self.config = runtime.config
        self._available: bool | None = None
        #: container ID -> its network setup running in the background (setup_begin)
        self._pending: dict[str, _Background] = {}
        #: container ID -> the host port sockets its setup bound, until conmon holds them
        self._held: dict[str, list[tuple[tuple[str, int, int, str], socket.socket]]] = {}

    # -- backend ----------------------------------------------------------------------
    @property
    def hook(self):
        self.rt.plugins.driver("network")
        return self.rt.hook

    def available(self) -> bool:
        """True when the configured network backend loads (bridge is then the default)."""
        if self._available is None:
            try:
                self.rt.plugins.driver("network")
                self._available = True
            except KpodError as exc:
                log.info("network backend %s unavailable: %s", self.config.network_backend, exc.message)
                self._available = False
        return self._available

    def default_mode(self) -> str:
        return "bridge" if self.available() else "none"

    def network(self, name: str) -> dict:
        """The backend's dict for network *name*; NotFound if there is none."""
        net = self.hook.network_inspect(name=name)
        if not net:
            raise NotFound(f"unable to find network with name or ID {name}: network not found")
        return net

    def users(self, name: str) -> list:
        """Containers attached (in their configuration) to network *name*."""
        default = self.config.default_network
        out = []
        for c in self.rt.containers.list():
            if c.config.get("network_mode") != "bridge":
                continue
            if name in (c.config.get("networks") or {default: {}}):
                out.append(c)
        return out

    @staticmethod
    def created_at(net: dict) -> float | None:
        """A backend network's creation time (epoch seconds), None if it has none."""
        from datetime import datetime

        try:
            return datetime.fromisoformat((net.get("created") or "").replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    def prune(self, matches=None) -> list[str]:
        """``network prune``: remove every network no container uses, except the default
        one (and those *matches(net)* refuses, when given); returns their names."""
        hook = self.hook
        removed = []
        for net in hook.network_list() or []:
            if net["name"] == self.config.default_network or self.users(net["name"]):
                continue
            if matches is not None and not matches(net):
                continue
            hook.network_remove(name=net["name"])
            removed.append(net["name"])
        return removed

    # -- create ---------------------------------------------------------------------------
    def prepare_create(self, mgr, opts) -> str:
        """Validate and normalise *opts*' network and pod settings; returns the network mode
        stored with the container (``bridge``, ``none``, ``host``, ``container:ID``,
        ``ns:PATH``). Nothing is created."""
        for s in opts.dns or []:
            try:
                ipaddress.ip_address(s)
            except ValueError:
                raise InvalidArgument(f"invalid --dns {s!r}: not an IP address") from None
        for d in opts.dns_search or []:
            if d != "." and not HOSTNAME_RE.match(d):
                raise InvalidArgument(f"invalid --dns-search {d!r}: not a domain name")
        for o in opts.dns_option or []:
            if not o or any(ch.isspace() for ch in o):
                raise InvalidArgument(f"invalid --dns-option {o!r}")
        for h in opts.add_host or []:
            parse_add_host(h)
        for a in opts.network_aliases or []:
            if not HOSTNAME_RE.match(a):
                raise InvalidArgument(f"invalid --network-alias {a!r}: not a host name")
        if opts.no_hosts and opts.add_host:
            raise InvalidArgument("--no-hosts and --add-host cannot be set together")
        if opts.mac_address and not MAC_RE.match(opts.mac_address):
            raise InvalidArgument(f"invalid --mac-address {opts.mac_address!r}: expected 6 hex bytes like 92:d0:c6:0a:29:33")
        if opts.ip:
            try:
                opts.ip = str(ipaddress.ip_address(opts.ip))
            except ValueError:
                raise InvalidArgument(f"invalid --ip {opts.ip!r}: not an IP address") from None
        for p in opts.ports or []:
            self._check_mapping(p)

        mode = (opts.network or "").strip()
        pod = None
        if opts.pod:
            pod = self.rt.pods.get(opts.pod)
            opts.pod = pod.id
            mode = self._join_pod(mgr, opts, pod, mode)
        if not mode:
            mode = self.default_mode()
        if mode in ("none", "host") or mode.startswith("ns:") or mode.startswith("container:"):
            if mode.startswith("ns:"):
                path = mode[3:]
                if not path.startswith("/") or not os.path.exists(path):
                    raise InvalidArgument(f"invalid --network {mode!r}: namespace path {path!r} does not exist")
            elif mode.startswith("container:"):
                ref = mode[len("container:"):]
                if not ref:
                    raise InvalidArgument("invalid --network 'container:': expected container:NAME or container:ID")
                target = mgr.get(ref)
                tpod = target.config.get("pod")
                if opts.pod and tpod != opts.pod:
                    raise InvalidArgument(f"container {target.name} is in another pod: a container can only join "
                                          "one pod's namespaces")
                mode = f"container:{target.id}"
            if opts.networks:
                raise InvalidArgument(f"networks cannot be set with --network {mode.split(':')[0]}")
            if opts.ports:
                if pod is not None and mode.startswith("container:"):
                    raise InvalidArgument("published ports must be set when the pod is created: the container "
                                          "shares the pod's network namespace")
                raise InvalidArgument(f"ports cannot be published with --network {mode.split(':')[0]}: "
                                      "publishing needs bridge networking")
            if opts.ip or opts.mac_address:
                raise InvalidArgument(f"--ip and --mac-address need bridge networking, not --network {mode.split(':')[0]}")
            if opts.network_aliases:
                raise InvalidArgument(f"--network-alias needs bridge networking, not --network {mode.split(':')[0]}")
            opts.publish_all = False
            return mode
        if mode == "private":
            mode = "bridge"
        names = [] if mode == "bridge" else [n.strip() for n in mode.split(",")]
        if any(not n for n in names):
            raise InvalidArgument(f"invalid --network {mode!r}: empty network name")
        for n in names:
            if n in ("none", "host", "bridge", "private") or n.startswith(("container:", "ns:")):
                raise InvalidArgument(f"invalid --network {mode!r}: {n} cannot be combined with other networks")
            if not NETWORK_NAME_RE.match(n):
                raise InvalidArgument(f"invalid network name {n!r}")
        networks = {k: dict(v or {}) for k, v in (opts.networks or {}).items()}
        for n in names:
            networks.setdefault(n, {})
        if not networks:
            networks[self.config.default_network] = {}
        nets = {n: self.network(n) for n in networks}
        if opts.ip or opts.mac_address:
            if len(networks) != 1:
                raise InvalidArgument("--ip and --mac-address can only be used with one network")
            name = next(iter(networks))
            if opts.ip:
                ip = ipaddress.ip_address(opts.ip)
                subnets = [ipaddress.ip_network(s["subnet"], strict=False) for s in nets[name].get("subnets") or []
                           if s.get("subnet")]
                if subnets and not any(ip in s for s in subnets):
                    raise InvalidArgument(f"--ip {ip} is not in the subnet of network {name} "
                                          f"({', '.join(str(s) for s in subnets)})")
                networks[name]["ip"] = str(ip)
            if opts.mac_address:
                networks[name]["mac"] = opts.mac_address.lower()
        for name, o in networks.items():
            if opts.network_aliases:  # podman: the aliases apply on every network given
                o["aliases"] = list(dict.fromkeys([*(o.get("aliases") or []), *opts.network_aliases]))
        opts.networks = networks
        self._check_duplicates(opts.ports)
        return "bridge"

    @staticmethod
    def _check_mapping(p: dict) -> None:
        try:
            cport = int(p["container_port"])
            hport = int(p.get("host_port") or 0)
            n = int(p.get("range") or 1)
        except (KeyError, TypeError, ValueError):
            raise InvalidArgument(f"invalid port mapping {p!r}") from None
        if (p.get("protocol") or "tcp") not in PROTOCOLS:
            raise InvalidArgument(f"invalid port mapping {p!r}: protocol must be tcp, udp or sctp")
        if not (1 <= cport and cport + n - 1 <= 65535 and 0 <= hport and hport + n - 1 <= 65535 and n >= 1):
            raise InvalidArgument(f"invalid port mapping {p!r}: ports must be between 1 and 65535")
        if p.get("host_ip"):
            try:
                ipaddress.ip_address(p["host_ip"])
            except ValueError:
                raise InvalidArgument(f"invalid port mapping {p!r}: bad host IP") from None
        if loopback6(p.get("host_ip")):
            if (p.get("protocol") or "tcp") != "tcp":
                raise InvalidArgument(f"cannot publish {p['protocol']} port {p['container_port']} on ::1: only TCP can "
                                      "be (the kernel does not forward IPv6 loopback traffic; kpod proxies TCP)")
            if socket_proxyd() is None:
                raise InvalidArgument(f"publishing on ::1 needs systemd-socket-proxyd ({SOCKET_PROXYD[0]}, package "
                                      "systemd): the kernel does not forward IPv6 loopback traffic to containers")

    @staticmethod
    def _check_duplicates(ports) -> None:
        seen: list[tuple[str, int, str]] = []
        for ip, hp, _cp, proto in expand_ports(ports):
            if not hp:
                continue
            if any(port == hp and pr == proto and _overlap(ip, other) for other, port, pr in seen):
                raise InvalidArgument(f"host port {hp}/{proto} is published twice")
            seen.append((ip, hp, proto))

    def _join_pod(self, mgr, opts, pod, mode: str) -> str:
        """Make *opts* a member of *pod*: its cgroup, and the namespaces the pod shares."""
        share = pod.shared
        opts.cgroup_parent = pod.cgroup_path
        if getattr(opts, "is_infra", False):
            return mode  # the infra container owns the namespaces the others join
        if not pod.infra_id and pod.config.get("infra", True):
            pod.ensure_infra()  # a pod create was interrupted before its infra existed
            pod.reload()
        if not pod.infra_id:
            if share:
                raise InvalidArgument(f"pod {pod.name} has no infra container to share namespaces with")
            return mode
        infra = f"container:{pod.infra_id}"
        for kind in ("ipc", "uts", "pid"):
            if kind in share:
                if getattr(opts, kind, None):
                    raise InvalidArgument(f"cannot set the {kind} namespace: the container joins the pod's")
                setattr(opts, kind, infra)
        if "uts" in share:
            if opts.hostname and opts.hostname != pod.hostname:
                raise InvalidArgument("cannot set a hostname: the container shares the pod's UTS namespace")
            opts.hostname = pod.hostname
        if "net" in share:
            if pod.config.get("no_hosts"):
                opts.no_hosts = True
            if mode and mode not in ("bridge", "private"):
                raise InvalidArgument(f"cannot set --network {mode}: the container shares the pod's network namespace")
            if opts.networks:
                raise InvalidArgument("cannot set networks: the container shares the pod's network namespace")
            if opts.ip or opts.mac_address:
                raise InvalidArgument("--ip and --mac-address must be set when the pod is created: the container "
                                      "shares the pod's network namespace")
            if opts.network_aliases:
                raise InvalidArgument("--network-alias cannot be set: the container shares the pod's network namespace")
            return infra
        return mode

    def resolve_ports(self, opts, image_config: dict, exclude: str | None = None) -> None:
        """After the image is known: add ``-P``'s ports, pick free host ports for those
        without one, and check that every host port is free. Raises before anything exists."""
        if opts.publish_all:
            exposed = ((image_config or {}).get("config") or {}).get("ExposedPorts") or {}
            have = {(cp, proto) for _ip, _hp, cp, proto in expand_ports(opts.ports)}
            for key in sorted(exposed):
                port, _, proto = key.partition("/")
                proto = (proto or "tcp").lower()
                try:
                    cport = int(port)
                except ValueError:
                    continue
                if proto in PROTOCOLS and (cport, proto) not in have:
                    opts.ports.append({"host_ip": "", "host_port": 0, "container_port": cport, "protocol": proto,
                                       "range": 1})
        if not opts.ports:
            return
        held: list[socket.socket] = []
        out = []
        try:
            for p in opts.ports:
                if int(p.get("host_port") or 0):
                    out.append(dict(p))
                    continue
                for i in range(int(p.get("range") or 1)):
                    try:
                        s = _bind_test(p.get("host_ip") or "", 0, p.get("protocol") or "tcp")
                    except OSError as exc:
                        raise NetworkError(f"cannot pick a host port for {p['container_port'] + i}/"
                                           f"{p.get('protocol') or 'tcp'}: {exc.strerror or exc}") from None
                    held.append(s)
                    out.append({**p, "host_port": s.getsockname()[1], "container_port": int(p["container_port"]) + i,
                                "range": 1})
        finally:
            for s in held:
                s.close()
        opts.ports = out
        self._check_duplicates(out)
        self.check_ports_free(out, exclude)

    def check_ports_free(self, ports, exclude: str | None = None,
                         hold: bool = False) -> list[tuple[tuple[str, int, int, str], socket.socket]]:
        """Every host port must be bindable on the host and not published by another
        container that is set up (or being set up). With *hold* the bound sockets are
        returned (TCP ones listening), each with its ``expand_ports`` entry, instead of
        closed; SCTP ports are not reserved (as in podman)."""
        mine = expand_ports(ports)
        if not mine:
            return []
        self._check_published(mine, exclude)  # first: its message names the other container
        held: list[tuple[tuple[str, int, int, str], socket.socket]] = []
        try:
            for ip, hp, cp, proto in mine:
                if proto == "sctp":
                    continue
                try:
                    s = _bind_test(ip, hp, proto, hold=hold)
                except OSError as exc:
                    where = (f"[{ip}]:{hp}" if ":" in ip else f"{ip}:{hp}") if ip else str(hp)
                    raise NetworkError(f"cannot publish port {where}/{proto}: {exc.strerror or exc}") from None
                if hold:
                    held.append(((ip, hp, cp, proto), s))
                else:
                    s.close()
        except BaseException:
            for _key, s in held:
                s.close()
            raise
        return held

    def _check_published(self, mine: list[tuple[str, int, int, str]], exclude: str | None) -> None:
        base = os.path.join(self.config.runroot, "containers")
        try:
            names = os.listdir(base)
        except FileNotFoundError:
            names = []
        for cid in names:
            if cid == exclude:
                continue
            try:
                with open(os.path.join(base, cid, STATE_FILE)) as f:
                    other = json.load(f)
            except (OSError, ValueError):
                continue
            for oip, ohp, _ocp, oproto in expand_ports(other.get("ports") or []):
                for ip, hp, _cp, proto in mine:
                    if hp == ohp and proto == oproto and _overlap(ip, oip):
                        raise NetworkError(f"cannot publish port {hp}/{proto}: it is already published by "
                                           f"container {cid[:12]}")

    # -- start ----------------------------------------------------------------------------
    def netns_name(self, c) -> str:
        return f"kpod-{c.id}"

    def prepare_start(self, c, spec: dict, background: bool = False) -> None:
        """Called by ``Container._init_locked`` (container lock held) with the bundle's spec:
        set up the network namespace, or point the spec at the namespaces joined. With
        *background*, a bridge container's CNI ADD goes on in a thread; the caller must call
        :meth:`finish_start` before the container's process starts (before the runtime's
        ``create`` when OCI hooks may look at the network)."""
        mode = c.config.get("network_mode", "none")
        namespaces = spec.setdefault("linux", {}).setdefault("namespaces", [])

        def set_path(kind: str, path: str) -> None:
            for ns in namespaces:
                if ns.get("type") == kind:
                    ns["path"] = path
                    return
            namespaces.append({"type": kind, "path": path})

        joined_state = None
        if mode == "bridge":
            set_path("network", self.setup_begin(c) if background else self.setup(c))
        elif mode.startswith("container:"):
            target = self._dependency(c, mode[len("container:"):])
            set_path("network", self.netns_path_of(target))
            joined_state = _state_for_hosts(c)
        for kind in ("ipc", "uts", "pid"):
            m = c.config.get(kind) or ""
            if m.startswith("container:"):
                target = self._dependency(c, m[len("container:"):])
                set_path(kind, f"/proc/{target.pid}/ns/{kind}")
                if kind == "uts":
                    spec.pop("hostname", None)
        write_etc_files(c, joined_state)

    def _dependency(self, c, ref: str):
        """The container whose namespaces *c* joins, started when it is not running."""
        try:
            t = c.mgr.get(ref)
        except NotFound:
            raise ContainerStateError(f"container {c.name} joins the namespaces of container {ref[:12]}, "
                                      "which no longer exists") from None
        status = t.refresh()
        if status == "paused":
            raise ContainerStateError(f"container {t.name}, whose namespaces {c.name} joins, is paused")
        if status != "running":
            t.start()
            t.reload()
        if not t.pid:
            raise ContainerStateError(f"container {t.name}, whose namespaces {c.name} joins, is not running")
        return t

    def netns_path_of(self, t) -> str:
        mode = t.config.get("network_mode", "none")
        if mode == "bridge":
            st = read_state(t) or {}
            if st.get("netns") and os.path.exists(st["netns"]):
                return st["netns"]
        elif mode.startswith("ns:"):
            return mode[3:]
        elif mode.startswith("container:"):
            try:
                return self.netns_path_of(t.mgr.get(mode[len("container:"):]))
            except NotFound:
                pass
        return f"/proc/{t.pid}/ns/net"

    def setup(self, c) -> str:
        """Create *c*'s network namespace and attach it (bridge mode); returns its path.
        The namespace path is recorded before anything is created."""
        path, attach = self._setup_begin(c)
        attach()
        return path

    def setup_begin(self, c) -> str:
        """:meth:`setup`, with the attachment (the CNI ADD, the slow part) running in a
        thread while the caller goes on (rootfs, spec, conmon and the runtime's ``create``
        need only the namespace path). :meth:`finish_start` waits for it and must come
        before the container's process starts; :meth:`teardown` waits for it too."""
        path, attach = self._setup_begin(c)
        self._pending[c.id] = _Background(attach, f"kpod-net-{c.short_id}")
        return path

    def _setup_begin(self, c):
        """Everything of the setup up to the namespace (state file, port checks, the
        namespace itself); returns its path and the function that attaches it."""
        from .state import FileLock

        if read_state(c) is not None:
            self.teardown(c)  # what an interrupted command left
        networks = {n: dict(o or {}) for n, o in (c.config.get("networks") or {}).items()}
        if not networks:
            networks = {self.config.default_network: {}}
        for name, o in networks.items():  # the short ID, then --network-alias names
            o["aliases"] = list(dict.fromkeys([c.short_id, *(o.get("aliases") or [])]))
        ports = [dict(p) for p in c.config.get("ports") or []]
        hook = self.hook
        name = self.netns_name(c)
        path = os.path.join(self.config.runroot, "netns", name)
        state_file = os.path.join(c.rundir, STATE_FILE)
        state = {"netns": path, "networks": networks, "ports": ports, "phase": "setup"}

        def undo() -> None:  # (the held ports are the caller's to release: conmon may be taking them)
            try:
                hook.network_netns_remove(path=state["netns"])
                os.unlink(state_file)
            except Exception as exc:  # noqa: BLE001 - the next teardown retries
                log.warning("%s: cleaning up a failed network setup: %s", c.short_id, exc)

        # The port check and the state file that publishes our ports to the next check are
        # one step under the lock; the ADD itself needs no lock.
        lock = FileLock(os.path.join(self.config.runroot, "locks", "network-ports.lock")) if ports else None
        if lock is not None:
            lock.acquire(exclusive=True)
        try:
            if ports:  # bound (and kept) before the state file publishes them to the next check
                self._held[c.id] = self.check_ports_free(ports, exclude=c.id, hold=True)
            os.makedirs(c.rundir, mode=0o700, exist_ok=True)
            write_atomic(state_file, json.dumps(state))
        finally:
            if lock is not None:
                lock.release()
        try:
            try:
                made = hook.network_netns_create(name=name)
            except KpodError as exc:
                if "already exists" not in exc.message:
                    raise
                hook.network_netns_remove(path=path)  # a leftover nobody recorded
                made = hook.network_netns_create(name=name)
            if made != path:
                state["netns"] = path = made
                write_atomic(state_file, json.dumps(state))
        except BaseException:
            undo()
            raise

        def attach() -> None:
            try:
                results = hook.network_setup(container_id=c.id, netns_path=path, networks=networks,
                                             port_mappings=_dnat_ports(ports), options={"container_name": c.name})
            except BaseException:
                undo()
                raise
            state.update(phase="up", results=results or {})
            write_atomic(state_file, json.dumps(state))
            if len(_dnat_ports(ports)) != len(ports):
                self._start_proxies(c, results or {})  # a failure: the caller's teardown undoes all

        return path, attach

    def finish_start(self, c) -> None:
        """Wait for a setup begun by :meth:`prepare_start` (``background=True``) and raise
        its error; then /etc/hosts gets the container's address. The files are rewritten in
        place: the runtime may have bind-mounted them already."""
        if c.id not in self._pending:
            return
        error = self._join_pending(c)
        if error is not None:
            raise error
        write_etc_files(c, in_place=True)

    def _join_pending(self, c) -> BaseException | None:
        """Wait for *c*'s background setup, if any; returns its error. (Interrupted, it
        stays pending, so that a later teardown still waits for it.)"""
        pending = self._pending.get(c.id)
        if pending is None:
            return None
        pending.thread.join()
        self._pending.pop(c.id, None)
        return pending.error

    def teardown(self, c) -> None:
        """Undo :meth:`setup` (idempotent; a missing state file means nothing to do). A
        setup (or teardown) still running in the background is waited for first."""
        self._join_pending(c)  # a failed setup removed what it made, or left the state file read here
        self.release_ports(c)
        self._teardown_now(c)

    def port_fds(self, c) -> list[int]:
        """The descriptors of the host ports :meth:`setup` bound for *c* (listening TCP,
        bound UDP sockets): ``Container._init_locked`` hands them to conmon, which keeps
        them until the container exits, so no other process can take a published port
        meanwhile (podman does the same). The forwarding itself is the backend's DNAT."""
        return [s.fileno() for _key, s in self._held.get(c.id, ())]

    def release_ports(self, c) -> None:
        """Close kpod's copies of *c*'s port sockets (after conmon got them, or on failure),
        once a setup still running in the background (which may start proxies on them) ends."""
        import threading

        pending = self._pending.get(c.id)
        if pending is not None and pending.thread is not threading.current_thread():
            pending.thread.join()
        for _key, s in self._held.pop(c.id, ()):
            s.close()

    def _start_proxies(self, c, results: dict) -> None:
        """One systemd-socket-proxyd per port published on ::1, on the socket conmon holds,
        to the container's first IPv6 address (its IPv4 one when it has none)."""
        prim = _primary({"phase": "up", "results": results})
        addr = prim["ip6"] or prim["ip"]  # no brackets: systemd 252 splits host and port at the last ':'
        if not addr:
            raise NetworkError(f"container {c.short_id} has no address to forward its ports on ::1 to")
        for (ip, _hp, cp, _proto), s in self._held.get(c.id, ()):
            if loopback6(ip):
                _spawn_proxy(c.id, s.fileno(), f"{addr}:{cp}")

    def teardown_begin(self, c):
        """:meth:`teardown` in a thread; returns the function that waits for it (and raises
        its error). The caller releases the container's other resources meanwhile."""
        self._join_pending(c)
        if not os.path.exists(os.path.join(c.rundir, STATE_FILE)):
            return _nothing
        self.hook  # noqa: B018 - the backend loads here, not in the thread
        self._pending[c.id] = _Background(lambda: self._teardown_now(c), f"kpod-netdel-{c.short_id}")

        def wait() -> None:
            error = self._join_pending(c)
            if error is not None:
                raise error

        return wait

    def _teardown_now(self, c) -> None:
        state = read_state(c)
        if state is None:
            return
        path = state.get("netns") or os.path.join(self.config.runroot, "netns", self.netns_name(c))
        networks = state.get("networks") or c.config.get("networks") or {self.config.default_network: {}}
        ports = state.get("ports") if "ports" in state else c.config.get("ports") or []
        if len(_dnat_ports(ports)) != len(ports):
            _stop_proxies(c.id)
        hook = self.hook
        errors = []
        try:
            hook.network_teardown(container_id=c.id, netns_path=path, networks=networks,
                                  port_mappings=_dnat_ports(ports))
        except KpodError as exc:
            errors.append(exc.message)
        try:
            hook.network_netns_remove(path=path)
        except KpodError as exc:
            errors.append(exc.message)
        if errors:
            raise NetworkError(f"tearing down the network of container {c.short_id}: {'; '.join(errors)}")
        try:
            os.unlink(os.path.join(c.rundir, STATE_FILE))
        except FileNotFoundError:
            pass

    # -- network connect / disconnect ---------------------------------------------------
    def _connectable(self, c, what: str) -> dict:
        mode = c.config.get("network_mode", "none")
        if mode != "bridge":
            shown = mode.split(":")[0] + (":" if ":" in mode else "")
            raise InvalidArgument(f"cannot {what} container {c.name}: its network mode is {shown}, "
                                  "not bridge networks")
        return {n: dict(o or {}) for n, o in (c.config.get("networks") or {self.config.default_network: {}}).items()}

    def _live_state(self, c) -> dict | None:
        """The network state of a running (or paused) container whose setup completed."""
        if c.sync() not in ("running", "paused"):  # container lock held
            return None
        self._join_pending(c)
        st = read_state(c)
        if not st or st.get("phase") != "up" or not st.get("netns"):
            raise ContainerStateError(f"container {c.name} is running but its network is not set up")
        return st

    def _save_networks(self, c, networks: dict) -> None:
        c.config["networks"] = networks
        c._update(config=json.dumps(c.config))

    def connect(self, c, name: str, ip: str | None = None, aliases: Iterable[str] = ()) -> None:
        """``network connect``: add network *name* to *c*'s networks; a running container is
        attached at once (CNI ADD on the next free interface, eth1, eth2...)."""
        with c.locked():
            networks = self._connectable(c, "connect")
            net = self.network(name)
            name = net.get("name", name)
            if name in networks:
                raise AlreadyExists(f"container {c.name} is already connected to network {name}")
            opts: dict[str, Any] = {}
            if ip:
                try:
                    addr = ipaddress.ip_address(ip)
                except ValueError:
                    raise InvalidArgument(f"invalid --ip {ip!r}: not an IP address") from None
                subnets = [ipaddress.ip_network(s["subnet"], strict=False) for s in net.get("subnets") or []
                           if s.get("subnet")]
                if subnets and not any(addr in sn for sn in subnets):
                    raise InvalidArgument(f"--ip {addr} is not in the subnet of network {name} "
                                          f"({', '.join(str(sn) for sn in subnets)})")
                opts["ip"] = str(addr)
            for a in aliases:
                if not HOSTNAME_RE.match(a):
                    raise InvalidArgument(f"invalid --alias {a!r}: not a host name")
            opts["aliases"] = list(dict.fromkeys([c.short_id, *aliases]))
            st = self._live_state(c)
            if st is not None:
                state_file = os.path.join(c.rundir, STATE_FILE)
                # recorded first: a kpod killed during the ADD leaves it for the next teardown
                st.setdefault("networks", {})[name] = opts
                write_atomic(state_file, json.dumps(st))
                try:
                    results = self.hook.network_setup(container_id=c.id, netns_path=st["netns"],
                                                      networks={name: opts}, port_mappings=[],
                                                      options={"container_name": c.name})
                except BaseException:
                    st["networks"].pop(name, None)
                    write_atomic(state_file, json.dumps(st))
                    raise
                st.setdefault("results", {}).update(results or {})
                write_atomic(state_file, json.dumps(st))
            networks[name] = opts
            self._save_networks(c, networks)
        from .events import network as record

        record(self.config, "connect", c, name)

    def disconnect(self, c, name: str, force: bool = False) -> None:
        """``network disconnect``: remove network *name* from *c*'s networks; a running
        container is detached at once (CNI DEL). With *force* a failing DEL is only logged."""
        with c.locked():
            networks = self._connectable(c, "disconnect")
            if name not in networks:
                self.network(name)  # an unknown network is reported as such
                raise InvalidArgument(f"container {c.name} is not connected to network {name}")
            if len(networks) == 1:
                raise InvalidArgument(f"cannot disconnect container {c.name} from network {name}: it is its only "
                                      "network")
            st = self._live_state(c)
            if st is not None:
                state_file = os.path.join(c.rundir, STATE_FILE)
                opts = (st.get("networks") or {}).get(name, networks[name])
                try:
                    self.hook.network_teardown(container_id=c.id, netns_path=st["netns"], networks={name: opts},
                                               port_mappings=[])
                except KpodError as exc:
                    if not force:
                        raise
                    log.warning("%s: disconnecting network %s: %s", c.short_id, name, exc.message)
                (st.get("networks") or {}).pop(name, None)
                (st.get("results") or {}).pop(name, None)
                write_atomic(state_file, json.dumps(st))
            del networks[name]
            self._save_networks(c, networks)
        from .events import network as record

        record(self.config, "disconnect", c, name)

    # -- pods and removal ---------------------------------------------------------------
    def pod_of(self, c):
        pid = c.config.get("pod")
        if not pid:
            return None
        try:
            return self.rt.pods.get(pid)
        except NotFound:
            return None

    def is_infra(self, c) -> bool:
        pod = self.pod_of(c)
        return pod is not None and pod.infra_id == c.id

    def check_remove(self, c) -> None:
        """An infra container goes only with its pod (``pod rm``)."""
        pod = self.pod_of(c)
        if pod is not None and pod.infra_id == c.id:
            raise ContainerStateError(
                f"container {c.id} is the infra container of pod {pod.id} and cannot be removed without "
                "removing the pod")

    # -- reports ------------------------------------------------------------------------
    def _joined_target(self, c):
        mode = c.config.get("network_mode", "none")
        if mode.startswith("container:"):
            try:
                return c.mgr.get(mode[len("container:"):])
            except NotFound:
                return None
        return None

    def ports_of(self, c) -> list[dict]:
        t = self._joined_target(c)
        if t is not None and t.id != c.id:
            return self.ports_of(t)
        return list(c.config.get("ports") or [])

    def state_of(self, c) -> dict | None:
        t = self._joined_target(c)
        if t is not None and t.id != c.id:
            return self.state_of(t)
        return read_state(c) if c.config.get("network_mode") == "bridge" else None

    def inspect(self, c, data: dict) -> None:
        """Fill inspect's NetworkSettings, Pod, IsInfra and the network parts of HostConfig."""
        st = self.state_of(c)
        running = data.get("State", {}).get("Status") in ("running", "paused")
        if not running:
            st = None
        prim = _primary(st)
        ports = self.ports_of(c)
        ns = data["NetworkSettings"]
        ns.update(Gateway=prim["gateway"], IPAddress=prim["ip"], IPPrefixLen=prim["prefixlen"],
                  IPv6Gateway=prim["gateway6"], GlobalIPv6Address=prim["ip6"], GlobalIPv6PrefixLen=prim["prefixlen6"],
                  MacAddress=prim["mac"], Ports=port_bindings(ports), SandboxKey=(st or {}).get("netns", "") if st else "")
        nets = {}
        conf_nets = c.config.get("networks") or {}
        if c.config.get("network_mode") == "bridge" and not conf_nets:
            conf_nets = {self.config.default_network: {}}
        for name, o in conf_nets.items():
            res = ((st or {}).get("results") or {}).get(name) or {}
            one = _primary({"phase": "up", "results": {name: res}}) if res else _primary(None)
            nets[name] = {"EndpointID": "", "Gateway": one["gateway"], "IPAddress": one["ip"],
                          "IPPrefixLen": one["prefixlen"], "IPv6Gateway": one["gateway6"],
                          "GlobalIPv6Address": one["ip6"], "GlobalIPv6PrefixLen": one["prefixlen6"],
                          "MacAddress": one["mac"], "NetworkID": name, "DriverOpts": None,
                          "IPAMConfig": ({"IPv4Address": o["ip"]} if o.get("ip") else None), "Links": None,
                          "Aliases": list(dict.fromkeys([c.short_id, *(o.get("aliases") or [])]))}
        ns["Networks"] = nets
        hc = data.setdefault("HostConfig", {})
        hc["PortBindings"] = port_bindings(c.config.get("ports") or [])
        mode = c.config.get("network_mode", "none")
        hc["NetworkMode"] = mode if mode != "bridge" else "bridge"
        hc["Dns"] = list(c.config.get("dns") or [])
        hc["DnsSearch"] = list(c.config.get("dns_search") or [])
        hc["DnsOptions"] = list(c.config.get("dns_option") or [])
        hc["ExtraHosts"] = list(c.config.get("add_host") or [])
        hc["PublishAllPorts"] = bool(c.config.get("publish_all"))
        if c.config.get("cgroup_parent"):
            hc["CgroupParent"] = c.config["cgroup_parent"]
        for kind, key in (("ipc", "IpcMode"), ("uts", "UTSMode"), ("pid", "PidMode")):
            hc[key] = c.config.get(kind) or "private"
        if c.config.get("no_hosts"):
            data["HostsPath"] = ""
        pod = self.pod_of(c)
        data["Pod"] = pod.id if pod else ""
        data["IsInfra"] = bool(pod and pod.infra_id == c.id)
        data["Dependencies"] = c.mgr.dependencies(c.id)

    def ps_fields(self, c, js: dict, tpl: dict) -> None:
        """ps's Ports, Pod and PodName."""
        ports = self.ports_of(c)
        js["Ports"] = [{"host_ip": p.get("host_ip") or "", "container_port": int(p["container_port"]),
                        "host_port": int(p.get("host_port") or 0), "range": int(p.get("range") or 1),
                        "protocol": p.get("protocol") or "tcp"} for p in ports] or None
        tpl["Ports"] = ports_text(ports)
        pod = self.pod_of(c)
        if pod is not None:
            js["Pod"], js["PodName"] = pod.id, pod.name
            js["IsInfra"] = pod.infra_id == c.id
            tpl["Pod"], tpl["PodName"], tpl["IsInfra"] = pod.id, pod.name, js["IsInfra"]

    def container_ip(self, c) -> str:
        return _primary(self.state_of(c))["ip"]
